"""srdata build end to end: store content, resume after SIGKILL, registration, bad input (CLI)."""

from __future__ import annotations

import json
import os
import subprocess
import sys
from unittest.mock import ANY

import numpy as np
import pytest
import tifffile
from click.testing import CliRunner

from srcaco2.cli.srdata import main
from srcaco2.srdata.inspect import store_info
from srcaco2.srdata.layout import tile_path
from srcaco2.srdata.roi import window_grid
from srcaco2.srdata.schema import read_lr_patch
from srcaco2.srdata.store import Store, open_root, roi_path

REPO = os.path.dirname(os.path.dirname(os.path.dirname(os.path.abspath(__file__))))
FAST = ["--no-register", "--chunk", "256"]


def _build(raw, store, *extra):
    res = CliRunner().invoke(main, ["build", raw, store, *extra])
    return res


def _files(store):
    """Every file of a store (relative path -> bytes), except the root zarr.json (it holds the build date)."""
    out = {}
    for d, _, names in os.walk(store):
        for n in names:
            rel = os.path.relpath(os.path.join(d, n), store)
            if rel != "zarr.json":
                out[rel] = open(os.path.join(d, n), "rb").read()
    return out


@pytest.fixture(scope="session")
def reference_store(raw_cache, tmp_path_factory):
    """An uninterrupted --no-register build of the small set."""
    store = str(tmp_path_factory.mktemp("ref") / "ref.zarr")
    res = _build(raw_cache["small"], store, *FAST)
    assert res.exit_code == 0, res.output
    return store


def test_store_content(raw_small, reference_store):
    root = open_root(reference_store)
    attrs = Store.of_root(root).attrs
    assert attrs.tiles == attrs.finished_tiles == [1, 2, 3] and attrs.index_complete
    assert attrs.chunks == {"hr": 256, "x2": 128, "x4": 64, "x8": 32}
    assert attrs.source["kind"] == "synth"
    for t in (1, 3):
        for s in (1, 2, 4, 8):
            arr = root[f"tiles/{t}/{'hr' if s == 1 else f'x{s}'}/0"]
            np.testing.assert_array_equal(arr[...], tifffile.imread(tile_path(raw_small, t, s)))
            assert arr.chunks == (1, 256 // s, 256 // s)  # aligned grids: HR chunk = s x LR chunk
    idx = Store.of_root(root).index()
    assert len(idx["tile"]) == 12 and (idx["size"] == 640).all()
    for n in range(12):
        t, y0, x0 = int(idx["tile"][n]), int(idx["y0"][n]), int(idx["x0"][n])
        hr2 = tifffile.imread(tile_path(raw_small, t, 1))[2]
        frac = (hr2[y0 + 256 : y0 + 384, x0 + 256 : x0 + 384] >= 4).mean()
        assert idx["roi_fraction"][n] == np.float32(frac)
        assert idx["accepted"][n] == (frac >= 0.2)
        roi = root[roi_path(t)][y0 : y0 + 640, x0 : x0 + 640]
        np.testing.assert_array_equal(roi, (hr2[y0 : y0 + 640, x0 : x0 + 640] >= 4).astype(np.uint8))
    y0, x0 = window_grid(1024, 1024)
    np.testing.assert_array_equal(idx["y0"][idx["tile"] == 2], y0)
    assert 0 < idx["accepted"].sum() < 12
    np.testing.assert_array_equal(idx["split"] >= 0, idx["accepted"])
    per_tile = {int(t): set(idx["split"][(idx["tile"] == t) & idx["accepted"]].tolist()) for t in (1, 2, 3)}
    assert all(len(v) <= 1 for v in per_tile.values())  # split by tile
    assert (idx["official_patch_id"] == -1).all() and (idx["shift"] == 0).all()


def test_rerun_is_idempotent(raw_small, reference_store, tmp_path):
    before = _files(reference_store)
    res = _build(raw_small, reference_store, *FAST, "--json")
    assert res.exit_code == 0, res.output
    summary = json.loads(res.stdout.strip().splitlines()[-1])
    assert summary["built"] == [] and summary["skipped"] == [1, 2, 3]
    assert _files(reference_store) == before
    res = _build(raw_small, reference_store, "--no-register", "--chunk", "128")
    assert res.exit_code != 0 and "--overwrite" in res.output


KILLER = """
import os, signal, sys
from srcaco2.srdata.build import BuildConfig, build_store
stage, tile, done = sys.argv[3], int(sys.argv[4]), int(sys.argv[5])
def cb(ev):
    if ev.stage == stage and ev.tile == tile and ev.done >= done:
        os.kill(os.getpid(), signal.SIGKILL)
build_store(sys.argv[1], sys.argv[2], BuildConfig(chunk=256, register=False), progress=cb)
"""


@pytest.mark.parametrize("point", [("write", 2, 2), ("roi", 1, 0), ("finished", 3, 3)])
def test_sigkill_then_resume_equals_uninterrupted(raw_small, reference_store, tmp_path, point):
    store = str(tmp_path / "killed.zarr")
    proc = subprocess.run(
        [sys.executable, "-c", KILLER, raw_small, store, *map(str, point)],
        cwd=REPO,
        capture_output=True,
        timeout=300,
    )
    assert proc.returncode == -9, proc.stderr.decode()[-2000:]
    attrs = Store.of_root(open_root(store)).attrs
    assert not attrs.index_complete
    assert point[1] not in attrs.finished_tiles or point[0] == "finished"
    with pytest.raises(Exception, match="index"):
        Store.of_root(open_root(store)).index()
    res = _build(raw_small, store, *FAST)
    assert res.exit_code == 0, res.output
    ref, got = _files(reference_store), _files(store)
    assert sorted(got) == sorted(ref)
    assert [k for k in ref if ref[k] != got[k]] == []


def test_build_with_registration(raw_tiny, tmp_path):
    for s in (1, 2, 4, 8):  # keep tile 1 only: one accepted window; CELL2 at x2 and x4: 2 TV-L1 estimates
        os.remove(tile_path(raw_tiny, 2, s))
    store = str(tmp_path / "reg.zarr")
    sub = ["--register-markers", "CELL2", "--register-scales", "4,2"]
    res = _build(raw_tiny, store, "--scheduler", "threads", "--workers", "2", *sub)  # numba, thread pool
    assert res.exit_code == 0, res.output
    root = open_root(store)
    reg = {"method": "tvl1-mean-rounded", "implementation": "numba", "markers": ["CELL2"], "scales": [2, 4]}
    assert Store.of_root(root).attrs.source["registration"] == reg
    assert store_info(store)["registration"] == reg
    assert "_build" not in root  # registration progress is removed once the tile is finished
    idx = Store.of_root(root).index()
    assert idx["accepted"].tolist() == [True] and idx["split"].tolist() == [0]
    shift = idx["shift"][0]  # (marker, scale, 2)
    assert (shift[:2] == 0).all() and (shift[2, 2] == 0).all()  # unregistered pairs keep shift 0
    mis = json.load(open(os.path.join(raw_tiny, "synth.json")))["misregistration_hr_px"]["1"]
    for k, s in enumerate((2, 4)):
        expected = -np.array(mis[str(s)])
        assert np.abs(shift[2, k] - expected).max() <= (s + 1) // 2, (s, shift[2, k], expected)
    # the stored shift registers the LR patch better than no shift (CELL2, x2)
    hr = root["tiles/1/hr/0"][2]
    lr = root["tiles/1/x2/0"][2]
    ref = hr[64:576, 64:576].astype(float).reshape(256, 2, 256, 2).mean(axis=(1, 3))
    err = {
        name: np.abs(read_lr_patch(lr, 0, 0, int(d[0]), int(d[1]), 2).astype(float) - ref).mean()
        for name, d in (("reg", shift[2, 0]), ("none", (0, 0)))
    }
    assert err["reg"] < err["none"]
    skimage = [*sub, "--registration", "skimage"]
    other_options = (["--no-register"], [], ["--register-markers", "CELL2"], skimage)
    for other in other_options:
        res = _build(raw_tiny, store, *other)
        assert res.exit_code != 0 and "registration" in res.output and "--overwrite" in res.output


@pytest.mark.parametrize(
    "args, words",
    [
        (["--register-markers", "CELL9"], "CELL9"),
        (["--register-scales", "3"], "register_scales=[3]"),
        (["--register-scales", "x"], "invalid literal"),
        (["--scheduler", "thread"], "give threads, processes, sync, or the address"),
    ],
)
def test_register_subset_bad_values(raw_tiny, tmp_path, args, words):
    store = str(tmp_path / "s.zarr")
    res = _build(raw_tiny, store, *args)
    assert res.exit_code != 0 and words in res.output and "Traceback" not in res.output, res.output
    assert not os.path.exists(store)


def test_info_registration_none(reference_store):
    assert store_info(reference_store)["registration"] == {"method": "none", "markers": [], "scales": []}


REG_KILLER = """
import os, signal, sys
from srcaco2.srdata.build import BuildConfig, build_store
def cb(ev):
    if ev.stage == "register" and ev.done >= 1:
        os.kill(os.getpid(), signal.SIGKILL)
cfg = BuildConfig(chunk=256, register_markers=("CELL2",), register_scales=(8,))
build_store(sys.argv[1], sys.argv[2], cfg, scheduler="sync", progress=cb)
"""


def test_sigkill_during_registration_resumes_per_window(raw_cache, tmp_path):
    """Tile 1 of the small set has 2 accepted windows: kill after the first one's shift is persisted."""
    import shutil

    from srcaco2.srdata.build import BuildConfig, build_store

    raw = str(tmp_path / "raw")
    shutil.copytree(raw_cache["small"], raw, ignore=shutil.ignore_patterns("*-[23].tif"))
    cfg = BuildConfig(chunk=256, register_markers=("CELL2",), register_scales=(8,))
    store = str(tmp_path / "killed.zarr")
    proc = subprocess.run(
        [sys.executable, "-c", REG_KILLER, raw, store], cwd=REPO, capture_output=True, timeout=300
    )
    assert proc.returncode == -9, proc.stderr.decode()[-2000:]
    root = open_root(store)
    assert Store.of_root(root).attrs.finished_tiles == [] and "_build/registration/1" in root
    events = []
    build_store(raw, store, cfg, scheduler="sync", progress=lambda ev: events.append(ev))
    reg = [(ev.done, ev.total, ev.detail) for ev in events if ev.stage == "register"]
    assert reg == [(1, 2, "resumed"), (2, 2, "")]  # window 1 came from the killed run, only window 2 ran
    ref = str(tmp_path / "ref.zarr")
    build_store(raw, ref, cfg, scheduler="sync")
    a, b = _files(ref), _files(store)
    assert sorted(a) == sorted(b) and [k for k in a if a[k] != b[k]] == []
    assert Store.of_root(open_root(store)).attrs.source == {
        **Store.of_root(open_root(ref)).attrs.source,
        "date": ANY,
    }
    idx = Store.of_root(open_root(store)).index()
    assert idx["accepted"].sum() == 2 and (idx["shift"][:, :, :2] == 0).all()


def _corrupt(raw, kind):
    p1 = tile_path(raw, 2, 1)
    if kind == "truncated":
        data = open(p1, "rb").read()
        open(p1, "wb").write(data[: len(data) // 2])
        return p1
    if kind == "not_tiff":
        open(p1, "wb").write(b"this is a text file, not an image\n" * 10)
        return p1
    if kind in ("two_channels", "four_channels"):
        c = 2 if kind == "two_channels" else 4
        tifffile.imwrite(p1, np.zeros((c, 768, 768), np.uint8), photometric="minisblack")
        return p1
    if kind == "uint16":
        tifffile.imwrite(p1, np.zeros((3, 768, 768), np.uint16), photometric="minisblack")
        return p1
    if kind == "lr_size":
        p = tile_path(raw, 2, 4)
        tifffile.imwrite(p, np.zeros((3, 96, 96), np.uint8), photometric="minisblack")
        return p
    if kind == "missing_lr":
        p = tile_path(raw, 2, 8)
        os.remove(p)
        return p
    if kind == "ids_mismatch":
        p = tile_path(raw, 7, 2)
        tifffile.imwrite(p, np.zeros((3, 384, 384), np.uint8), photometric="minisblack")
        return p
    raise AssertionError(kind)


@pytest.mark.parametrize(
    "kind, words",
    [
        ("truncated", "truncated"),
        ("not_tiff", "not a readable TIFF"),
        ("two_channels", "expected (3, y, x)"),
        ("four_channels", "expected (3, y, x)"),
        ("uint16", "expected uint8"),
        ("lr_size", "not the LowRes256 scan"),
        ("missing_lr", "missing LowRes128 scan"),
        ("ids_mismatch", "tile ids must match"),
    ],
)
def test_bad_raw_input(raw_tiny, tmp_path, kind, words):
    path = _corrupt(raw_tiny, kind)
    store = str(tmp_path / "s.zarr")
    res = _build(raw_tiny, store, *FAST)
    assert res.exit_code != 0
    assert words in res.output and os.path.basename(path) in res.output, res.output
    assert (
        "Traceback" not in res.output and sum(ln.startswith("Error:") for ln in res.output.splitlines()) == 1
    )
    assert not os.path.exists(store)  # nothing written, nothing looks finished


def test_bad_store_paths(raw_tiny, tmp_path):
    import zarr

    other = str(tmp_path / "v99.zarr")
    zarr.open_group(other, mode="w", zarr_format=3).attrs["srcaco2"] = {"format_version": 99}
    res = _build(raw_tiny, other, *FAST)
    assert res.exit_code != 0 and "format_version 99" in res.output and "--overwrite" in res.output
    junk = tmp_path / "junk"
    junk.mkdir()
    (junk / "thesis.tex").write_text("keep me")
    for extra in ([], ["--overwrite"]):
        res = _build(raw_tiny, str(junk), *FAST, *extra)
        assert res.exit_code != 0 and "not a srcaco2 store" in res.output, res.output
    assert (junk / "thesis.tex").read_text() == "keep me"
    res = _build(raw_tiny, other, *FAST, "--overwrite")  # a store of another version may be replaced
    assert res.exit_code == 0, res.output


def test_oserror_mid_write(raw_tiny, tmp_path, monkeypatch):
    import srcaco2.srdata.build as b

    real = b.write_image
    calls = []

    def flaky(root, tile, scale, *a, **k):
        calls.append((tile, scale))
        if tile == 2 and scale == 4:
            raise OSError(28, "No space left on device")
        return real(root, tile, scale, *a, **k)

    monkeypatch.setattr(b, "write_image", flaky)
    store = str(tmp_path / "s.zarr")
    res = _build(raw_tiny, store, *FAST)
    assert res.exit_code != 0
    assert "No space left on device" in res.output and "rerun" in res.output and "Traceback" not in res.output
    attrs = Store.of_root(open_root(store)).attrs
    assert attrs.finished_tiles == [1] and not attrs.index_complete
    monkeypatch.setattr(b, "write_image", real)
    res = _build(raw_tiny, store, *FAST, "--json")
    assert res.exit_code == 0, res.output
    assert json.loads(res.stdout.strip().splitlines()[-1])["built"] == [2]
    clean = str(tmp_path / "clean.zarr")
    assert _build(raw_tiny, clean, *FAST).exit_code == 0
    assert _files(clean) == _files(store)


def test_synth_cli(tmp_path):
    out = str(tmp_path / "raw")
    res = CliRunner().invoke(main, ["synth", out, "--tiles", "2", "--hr-size", "200", "--seed", "4"])
    assert res.exit_code == 0, res.output
    assert tifffile.imread(tile_path(out, 2, 8)).shape == (3, 25, 25)
    assert json.load(open(os.path.join(out, "synth.json")))["seed"] == 4


def test_fsspec_url_and_distributed_scheduler(raw_tiny, tmp_path):
    from dask.distributed import LocalCluster

    from srcaco2.srdata.build import BuildConfig, build_store

    local = str(tmp_path / "local.zarr")
    assert _build(raw_tiny, local, *FAST).exit_code == 0
    cfg = BuildConfig(chunk=256, register=False)
    summary = build_store(raw_tiny, "memory://srdata-test/s.zarr", cfg)
    assert summary["built"] == [1, 2]
    mem, ref = open_root("memory://srdata-test/s.zarr"), open_root(local)
    np.testing.assert_array_equal(mem["tiles/2/x4/0"][...], ref["tiles/2/x4/0"][...])
    dist = str(tmp_path / "dist.zarr")
    with LocalCluster(n_workers=1, threads_per_worker=2, processes=False, dashboard_address=None) as cluster:
        res = _build(raw_tiny, dist, *FAST, "--scheduler", cluster.scheduler_address)
    assert res.exit_code == 0, res.output
    assert _files(dist) == _files(local)


def test_external_sigkill_during_chunk_writes(raw_small, reference_store, tmp_path):
    """Kill from outside as soon as tile 2's HR chunks start to appear (inside a Dask store)."""
    import signal
    import time

    store = str(tmp_path / "killed.zarr")
    code = KILLER.replace("progress=cb", "progress=None")
    proc = subprocess.Popen([sys.executable, "-c", code, raw_small, store, "none", "0", "0"], cwd=REPO)
    probe = os.path.join(store, "tiles", "2", "hr", "0", "c")
    deadline = time.monotonic() + 240
    while not os.path.exists(probe) and proc.poll() is None and time.monotonic() < deadline:
        time.sleep(0.002)
    proc.send_signal(signal.SIGKILL)
    proc.wait(timeout=60)
    if proc.returncode != -9:
        pytest.skip("the build finished before it could be killed")
    if 2 in Store.of_root(open_root(store)).attrs.finished_tiles:
        pytest.skip("the kill came after tile 2 was finished")
    assert _build(raw_small, store, *FAST).exit_code == 0
    ref, got = _files(reference_store), _files(store)
    assert sorted(got) == sorted(ref) and [k for k in ref if ref[k] != got[k]] == []
