"""One writer per store (`srcaco2.srdata.lease`): refusal naming the holder, stale takeover, heartbeat,
URLs."""

from __future__ import annotations

import json
import multiprocessing as mp
import os
import socket
import subprocess
import sys
import time
from pathlib import Path

import pytest

from srcaco2.srdata.lease import (
    LeaseLostError,
    StoreLockedError,
    lease_path,
    read_lease,
    store_lease,
)
from srcaco2.srdata.storefs import StoreNotWritableError

REPO = Path(__file__).resolve().parents[2]


def _dead_pid() -> int:
    """The pid of a process that has exited (and been reaped)."""
    p = subprocess.Popen([sys.executable, "-c", "pass"])
    p.wait()
    return p.pid


def _write_record(store: str, **fields) -> None:
    now = time.time()
    rec = {"token": "old", "host": socket.gethostname(), "pid": os.getpid(), "pid_start": None,
           "operation": "srdata build", "store": store, "started": now, "heartbeat": now}  # fmt: skip
    rec |= fields
    Path(lease_path(store)).write_text(json.dumps(rec))


def test_second_writer_is_refused_with_one_line_naming_the_holder(tmp_path):
    store = str(tmp_path / "s.zarr")
    with store_lease(store, operation="srdata build") as lease:
        rec = read_lease(store)
        assert rec is not None and rec["pid"] == os.getpid() and rec["token"] == lease.record["token"]
        with pytest.raises(StoreLockedError) as err:
            with store_lease(store, operation="srdata import-patches"):
                pass
        msg = str(err.value)
        assert "\n" not in msg
        for word in (store, "another writer holds this store", "srdata build", f"pid {os.getpid()}",
                     socket.gethostname(), "last heartbeat"):  # fmt: skip
            assert word in msg, (word, msg)
        assert read_lease(store)["token"] == lease.record["token"]  # the refusal did not touch it
    assert not Path(lease_path(store)).exists()  # released on exit
    with store_lease(store, operation="again"):  # and free again
        pass


def test_lease_released_when_the_body_raises(tmp_path):
    store = str(tmp_path / "s.zarr")
    with pytest.raises(RuntimeError, match="boom"):
        with store_lease(store, operation="x"):
            raise RuntimeError("boom")
    assert read_lease(store) is None


def test_stale_lease_of_a_dead_process_is_taken_over(tmp_path):
    store = str(tmp_path / "s.zarr")
    _write_record(store, pid=_dead_pid())
    with store_lease(store, operation="srdata build") as lease:
        assert read_lease(store)["token"] == lease.record["token"]


def test_pid_reused_by_another_process_is_stale(tmp_path):
    store = str(tmp_path / "s.zarr")
    _write_record(store, pid=os.getpid(), pid_start=1)  # our pid, but "started" at another time
    with store_lease(store, operation="x") as lease:
        assert read_lease(store)["token"] == lease.record["token"]


def test_other_host_live_until_its_heartbeat_times_out(tmp_path):
    store = str(tmp_path / "s.zarr")
    _write_record(store, host="elsewhere", pid=1)
    with pytest.raises(StoreLockedError, match="host elsewhere"):
        with store_lease(store, operation="x", timeout_s=60):
            pass
    _write_record(store, host="elsewhere", pid=1, heartbeat=time.time() - 61)
    with store_lease(store, operation="x", timeout_s=60) as lease:
        assert read_lease(store)["token"] == lease.record["token"]


def test_heartbeat_refreshes_and_a_lost_lease_stops_the_writer(tmp_path):
    store = str(tmp_path / "s.zarr")
    with pytest.raises(LeaseLostError, match="lost its lease"):
        with store_lease(store, operation="x", timeout_s=0.6, heartbeat_s=0.1) as lease:
            first = read_lease(store)["heartbeat"]
            time.sleep(0.35)
            assert read_lease(store)["heartbeat"] > first  # refreshed
            # while refreshed, it is never stale, although older than timeout_s in total
            time.sleep(0.4)
            with pytest.raises(StoreLockedError):
                with store_lease(store, operation="y", timeout_s=0.6):
                    pass
            # another process takes the store over (as if this one had stalled past the timeout)
            _write_record(store, token="thief", pid=os.getpid())
            time.sleep(0.3)
            lease.check()
    assert read_lease(store)["token"] == "thief"  # the loser does not delete the winner's lease


def _contend(store: str, start: float, q) -> None:
    time.sleep(max(0.0, start - time.time()))
    try:
        with store_lease(store, operation="contender"):
            time.sleep(1.5)
        q.put("won")
    except StoreLockedError:
        q.put("refused")


def test_concurrent_takeover_of_a_stale_lease_has_one_winner(tmp_path):
    store = str(tmp_path / "s.zarr")
    _write_record(store, pid=_dead_pid())
    ctx = mp.get_context("spawn")
    q = ctx.Queue()
    start = time.time() + 3.0
    procs = [ctx.Process(target=_contend, args=(store, start, q)) for _ in range(4)]
    for p in procs:
        p.start()
    try:
        got = sorted(q.get(timeout=60) for _ in procs)
    finally:
        for p in procs:
            p.join(timeout=30)
            if p.is_alive():
                p.kill()
    assert got == ["refused"] * 3 + ["won"], got


@pytest.mark.parametrize("scheme", ["file", "memory"])
def test_lease_on_fsspec_urls(tmp_path, scheme):
    store = (
        f"file://{tmp_path}/a/b/s.zarr" if scheme == "file" else f"memory://lease-test-{os.getpid()}/s.zarr"
    )
    with store_lease(store, operation="srdata build"):
        assert read_lease(store)["operation"] == "srdata build"
        with pytest.raises(StoreLockedError, match="another writer holds this store"):
            with store_lease(store, operation="y"):
                pass
    assert read_lease(store) is None
    if scheme == "file":
        assert (tmp_path / "a" / "b").is_dir()


def test_unwritable_folder_names_the_cause(tmp_path):
    blocker = tmp_path / "afile"
    blocker.write_text("x")
    with pytest.raises(StoreNotWritableError, match="folder that holds STORE must be writable") as err:
        with store_lease(str(blocker / "s.zarr"), operation="x"):
            pass
    assert "\n" not in str(err.value)


# --- two concurrent builds -------------------------------------------------------------------------


@pytest.mark.slow
def test_two_concurrent_builds_one_refused_store_verifies(raw_tiny, tmp_path):
    """The audit's case: two builds on one store. One is refused naming the other; the store verifies."""
    from click.testing import CliRunner

    from srcaco2.cli.srdata import main
    from srcaco2.srdata.verify import verify_store

    store = tmp_path / "s.zarr"
    env = {**os.environ, "PYTHONPATH": str(REPO)}
    first = subprocess.Popen(
        [sys.executable, "-m", "srcaco2.cli.srdata", "build", raw_tiny, str(store), "--chunk", "256",
         "--no-register"],
        env=env, stdout=subprocess.PIPE, stderr=subprocess.PIPE, text=True,
    )  # fmt: skip
    try:
        deadline = time.time() + 60
        while read_lease(str(store)) is None:
            assert first.poll() is None, first.communicate()
            assert time.time() < deadline, "the first build never took the lease"
            time.sleep(0.05)
        res = CliRunner().invoke(main, ["build", raw_tiny, str(store), "--chunk", "256", "--no-register"])
        assert res.exit_code == 1, res.output
        lines = [ln for ln in res.output.splitlines() if ln.startswith("Error")]
        assert len(lines) == 1 and "another writer holds this store" in lines[0], res.output
        assert f"pid {first.pid}" in lines[0] and "srdata build" in lines[0]
        assert "Traceback" not in res.output
        out, errs = first.communicate(timeout=600)
    finally:
        if first.poll() is None:
            first.kill()
            first.wait()
    assert first.returncode == 0, errs
    assert verify_store(str(store)) == []
    assert read_lease(str(store)) is None


def test_a_record_being_written_is_not_mistaken_for_a_stale_one(tmp_path):
    import threading

    store = str(tmp_path / "s.zarr")
    Path(lease_path(store)).write_bytes(b"")  # a writer between create and write
    filler = threading.Timer(0.5, lambda: _write_record(store))  # ... which then completes its record
    filler.start()
    with pytest.raises(StoreLockedError, match="another writer holds this store"):
        with store_lease(store, operation="x"):
            pass
    filler.join()
    Path(lease_path(store)).write_bytes(b"{")  # a writer that died mid-write: stale after a grace
    t0 = time.monotonic()
    with store_lease(store, operation="x") as lease:
        assert read_lease(store)["token"] == lease.record["token"]
    assert time.monotonic() - t0 >= 1.9


@pytest.mark.parametrize(
    "fields",
    [{"heartbeat": None}, {"pid": "abc"}, {"heartbeat": "yesterday"}, {"pid": 1.5}, {"heartbeat": True}],
)
def test_a_record_with_wrong_types_is_stale_not_a_traceback(tmp_path, fields):
    store = str(tmp_path / "s.zarr")
    _write_record(store, host="elsewhere", **fields)  # another host: only the record's own fields decide
    with store_lease(store, operation="x", timeout_s=60) as lease:
        assert read_lease(store)["token"] == lease.record["token"]


def test_future_heartbeat_is_believed_only_within_clock_skew(tmp_path):
    store = str(tmp_path / "s.zarr")
    _write_record(store, host="elsewhere", pid=1, heartbeat=time.time() + 30)  # skew: live
    with pytest.raises(StoreLockedError, match=r"last heartbeat 0 s ago; lease .*s\.zarr\.lease\)"):
        with store_lease(store, operation="x", timeout_s=60):
            pass
    _write_record(store, host="elsewhere", pid=1, heartbeat=time.time() + 3600)  # an hour ahead: stale
    with store_lease(store, operation="x", timeout_s=60) as lease:
        assert read_lease(store)["token"] == lease.record["token"]


def test_a_lease_path_that_is_a_folder_gives_one_line(tmp_path):
    store = str(tmp_path / "s.zarr")
    Path(lease_path(store)).mkdir()
    with pytest.raises(StoreLockedError, match=r"lease path .*s\.zarr\.lease is a folder, not a lease file"):
        with store_lease(store, operation="x"):
            pass


def test_two_fits_into_one_run_folder_the_second_is_refused(tmp_path):
    """The run folder's lease is taken before any decision about reusing --out: the second `fit` is
    refused with one line naming the holder, and the first one's files are untouched."""
    from srcaco2.trainers.fit import fit

    run = tmp_path / "run"
    run.mkdir()
    (run / "config.yaml").write_text("first run's config\n")
    with store_lease(run, operation="srtrain fit", what="run folder"):
        with pytest.raises(StoreLockedError) as err:
            fit(None, run, resume=True)
    msg = str(err.value)
    assert (
        "another writer holds this run folder (srtrain fit" in msg and "run.lease" in msg and "\n" not in msg
    )
    assert (run / "config.yaml").read_text() == "first run's config\n"
    assert not Path(lease_path(run)).exists()
