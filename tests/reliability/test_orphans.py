"""No orphans: the toolkit's child processes exit within seconds when their parent is killed (-9).

The audit found DataLoader workers of a killed ``srtrain fit`` alive 13 minutes later (holding the
terminal's stdout, so ``srtrain fit ... | tail`` hung) and the registration pool of every killed
``srdata build`` running on. Each test starts the real command in a subprocess, waits until its
children run, kills it with SIGKILL, and checks that no descendant is alive 15 s later (and that
the stdout pipe reaches EOF: nobody holds it). Every descendant is reaped in teardown.
"""

from __future__ import annotations

import os
import signal
import subprocess
import sys
import textwrap
import time
from pathlib import Path

import pytest

psutil = pytest.importorskip("psutil")

REPO = Path(__file__).resolve().parents[2]
GRACE_S = 15.0


def _alive(p) -> bool:
    try:
        return p.is_running() and p.status() != psutil.STATUS_ZOMBIE
    except psutil.NoSuchProcess:
        return False


@pytest.fixture
def reaper():
    """Collects processes to kill at teardown, whatever the test's outcome."""
    procs: list = []
    yield procs
    for p in procs:
        try:
            if _alive(p):
                p.kill()
        except psutil.NoSuchProcess:
            pass


def _start(args: list[str], reaper) -> subprocess.Popen:
    env = {**os.environ, "PYTHONPATH": str(REPO), "PYTHONUNBUFFERED": "1"}
    proc = subprocess.Popen(args, env=env, stdout=subprocess.PIPE, stderr=subprocess.DEVNULL, cwd=REPO)
    reaper.append(psutil.Process(proc.pid))
    return proc


def _wait_children(proc: subprocess.Popen, n: int, reaper, timeout: float = 240.0) -> list:
    """Wait until `proc` has at least `n` live descendants (plus 2 s of steady work); return them."""
    me = psutil.Process(proc.pid)
    deadline = time.time() + timeout
    while True:
        assert proc.poll() is None, f"the command exited early with {proc.returncode}"
        kids = [k for k in me.children(recursive=True) if _alive(k)]
        if len(kids) >= n:
            break
        assert time.time() < deadline, f"only {len(kids)} children after {timeout} s"
        time.sleep(0.2)
    time.sleep(2.0)
    kids = [k for k in me.children(recursive=True) if _alive(k)]
    reaper.extend(kids)
    return kids


def _kill_and_check(proc: subprocess.Popen, kids: list) -> None:
    os.kill(proc.pid, signal.SIGKILL)
    proc.wait(timeout=10)
    deadline = time.time() + GRACE_S
    while any(_alive(k) for k in kids) and time.time() < deadline:
        time.sleep(0.2)
    left = [(k.pid, k.name()) for k in kids if _alive(k)]
    assert not left, f"descendants alive {GRACE_S:.0f} s after kill -9 of the parent: {left}"
    # and nobody holds the parent's stdout any more (`srtrain fit ... | tail` ends)
    assert proc.stdout is not None
    t0 = time.time()
    while proc.stdout.read(65536):
        assert time.time() - t0 < GRACE_S
    proc.stdout.close()


@pytest.mark.slow
def test_kill9_of_fit_with_two_loader_workers_leaves_no_descendant(store_small, tmp_path, reaper):
    # batches of 16 crops of 128² (> 64 KiB, a pipe's buffer): when fit dies, a worker's queue feeder
    # blocks on the full result pipe, which its sibling workers keep open (the audit's hang)
    sets = ["data.h_size=128", "data.batch_size=16", "data.samples_per_epoch=100000",
            "model.overrides.num_features=4", "model.overrides.num_trunk_layers=1",
            "train.tensorboard=false", "eval.val_windows=1", "eval.every=100000",
            "train.max_steps=1000000", "data.num_workers=2"]  # fmt: skip
    args = [sys.executable, "-m", "srcaco2.cli.srtrain", "fit", "--store", store_small, "--method", "vdsr",
            "--scale", "4", "--marker", "CELL2", "--device", "cpu",
            "--out", str(tmp_path / "run")]  # fmt: skip
    for s in sets:
        args += ["--set", s]
    proc = _start(args, reaper)
    kids = _wait_children(proc, 2, reaper)
    _kill_and_check(proc, kids)


@pytest.mark.slow
@pytest.mark.parametrize("scheduler", ["threads", "processes"])
def test_kill9_of_build_during_registration_leaves_no_descendant(raw_tiny, tmp_path, reaper, scheduler):
    """threads: skimage's TV-L1 in a forkserver pool; processes: a LocalCluster of 2 workers."""
    store = tmp_path / "s.zarr"
    args = [
        sys.executable,
        "-m",
        "srcaco2.cli.srdata",
        "build",
        raw_tiny,
        str(store),
        "--chunk",
        "256",
        "--workers",
        "2",
        "--registration",  # the reference TV-L1 (~2 s per estimate): the pool is busy when killed
        "skimage",
        "--scheduler",
        scheduler,
    ]
    proc = _start(args, reaper)
    # threads: forkserver (or none under spawn) + 2 pool processes; processes: 2 workers (+ the
    # resource tracker)
    kids = _wait_children(proc, 3, reaper)
    assert not (store / "index").exists()  # killed during the build, not after it
    _kill_and_check(proc, kids)


_BLOCKED_CHILD = textwrap.dedent(
    """
    import multiprocessing as mp, os, sys, time
    from srcaco2.srdata import _lifeline

    def child(anchor):
        _lifeline.child_init(*anchor)
        r, w = os.pipe()
        while True:                  # nobody reads the pipe: this blocks in write() once it is full
            os.write(w, b"x" * 65536)

    if __name__ == "__main__":
        ctx = mp.get_context(sys.argv[1])
        p = ctx.Process(target=child, args=(_lifeline.anchor_args(),))
        p.start()
        print(p.pid, flush=True)
        time.sleep(600)
    """
)


@pytest.mark.parametrize("method", ["fork", "spawn"])
def test_child_blocked_on_a_full_pipe_exits_with_its_parent(tmp_path, reaper, method):
    script = tmp_path / "blocked.py"
    script.write_text(_BLOCKED_CHILD)
    env = {**os.environ, "PYTHONPATH": str(REPO)}
    proc = subprocess.Popen([sys.executable, str(script), method], env=env, stdout=subprocess.PIPE, text=True)
    reaper.append(psutil.Process(proc.pid))
    assert proc.stdout is not None
    child = psutil.Process(int(proc.stdout.readline()))
    reaper.append(child)
    time.sleep(1.5)  # the pipe is full by now and the child sits in write()
    assert _alive(child)
    os.kill(proc.pid, signal.SIGKILL)
    proc.wait(timeout=10)
    deadline = time.time() + 5.0
    while _alive(child) and time.time() < deadline:
        time.sleep(0.1)
    assert not _alive(child), "the blocked child outlived its parent"


def test_pdeathsig_not_armed_for_children_of_a_helper_thread(tmp_path, reaper):
    """PR_SET_PDEATHSIG follows the creating *thread*: a child started from a thread that then ends
    must keep running while its parent process lives."""
    code = textwrap.dedent(
        """
        import multiprocessing as mp, threading, time, sys
        from srcaco2.srdata import _lifeline

        def child(anchor):
            _lifeline.child_init(*anchor)
            time.sleep(600)

        if __name__ == "__main__":
            ctx = mp.get_context("fork")
            box = []
            def start():
                p = ctx.Process(target=child, args=(_lifeline.anchor_args(),))
                p.start()
                box.append(p)
            t = threading.Thread(target=start)
            t.start(); t.join()              # the creating thread is gone now
            time.sleep(2.0)
            print("alive" if box[0].is_alive() else "dead", flush=True)
            box[0].kill()
        """
    )
    script = tmp_path / "thread.py"
    script.write_text(code)
    env = {**os.environ, "PYTHONPATH": str(REPO)}
    out = subprocess.run([sys.executable, str(script)], env=env, capture_output=True, text=True, timeout=60)
    assert out.stdout.strip() == "alive", out.stderr


def test_local_cluster_workers_and_a_forkserver_pool_arm_the_lifeline():
    import dask

    from srcaco2.srdata import _lifeline
    from srcaco2.srdata.registration import _mp_context
    from srcaco2.srdata.schedulers import dask_scheduler

    with dask_scheduler("processes", workers=1):
        (in_dask,) = dask.compute(dask.delayed(_lifeline.armed)())
    from concurrent.futures import ProcessPoolExecutor

    with ProcessPoolExecutor(1, mp_context=_mp_context(), initializer=_lifeline.initializer()) as ex:
        in_pool = ex.submit(_lifeline.armed).result()
    assert in_dask and in_pool and not _lifeline.armed()
