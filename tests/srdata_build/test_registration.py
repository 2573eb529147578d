"""Registration: the stored integer shift + schema.read_lr_patch reproduce the original's
warp (skimage.transform.warp) + 64 px crop + PIL NEAREST downsample byte for byte, and TV-L1
recovers a known misregistration."""

from __future__ import annotations

import os

import numpy as np
import pytest
from PIL import Image

from srcaco2.srdata.registration import register_windows, upsample_nearest, window_shift
from srcaco2.srdata.schema import read_hr_patch, read_lr_patch

REPO = os.path.dirname(os.path.dirname(os.path.dirname(os.path.abspath(__file__))))


def _original_lr_patch(lr_plane, y0, x0, dy, dx, s):
    """The original's procedure, literally (docs/protocol.md#registration steps 1, 3, 4)."""
    from skimage.transform import warp

    lrwin = np.asarray(lr_plane[y0 // s : (y0 + 640) // s, x0 // s : (x0 + 640) // s])
    up = np.asarray(Image.fromarray(lrwin).resize((640, 640), Image.NEAREST))
    shifted = warp(
        up, lambda xy: xy + np.array([dx, dy]), mode="constant", cval=0, preserve_range=True
    ).astype(np.uint8)
    crop = shifted[64:576, 64:576]
    return np.asarray(Image.fromarray(crop).resize((512 // s, 512 // s), Image.NEAREST))


@pytest.mark.parametrize("s", [2, 4, 8])
def test_read_rule_matches_original_warp(s):
    rng = np.random.default_rng(s)
    hr_h, hr_w = 1536, 1280
    lr = rng.integers(1, 256, (hr_h // s, hr_w // s), dtype=np.uint8)  # no zeros: fill is visible
    windows = [(0, 0), (256, 512), (768, 512), (512, 256)]
    shifts = [
        (0, 0),
        (1, -1),
        (-3, 2),
        (s // 2, -s // 2),
        (s - 1, 1 - s),
        (5, 7),
        (-13, 9),
        (70, -2),
        (-90, 150),
    ]
    for y0, x0 in windows:
        for dy, dx in shifts:
            ref = _original_lr_patch(lr, y0, x0, dy, dx, s)
            got = read_lr_patch(lr, y0, x0, dy, dx, s)
            assert got.dtype == np.uint8 and got.shape == (512 // s, 512 // s)
            np.testing.assert_array_equal(got, ref, err_msg=f"window {(y0, x0)} shift {(dy, dx)} x{s}")
    hr = rng.integers(0, 256, (hr_h, hr_w), dtype=np.uint8)
    np.testing.assert_array_equal(read_hr_patch(hr, 256, 512), hr[320:832, 576:1088])


def test_upsample_nearest_is_pil_nearest():
    lr = np.random.default_rng(0).integers(0, 256, (80, 80), dtype=np.uint8)
    pil = np.asarray(Image.fromarray(lr).resize((640, 640), Image.NEAREST))
    np.testing.assert_array_equal(upsample_nearest(lr, 8), pil)


def test_tvl1_recovers_known_shift():
    # a textured HR window; the /2 scan sees it displaced by (+3, -2) HR px
    from scipy.ndimage import gaussian_filter

    rng = np.random.default_rng(0)
    scene = gaussian_filter(rng.random((700, 700)), 2.0) * 255 * 6
    scene = np.clip(scene - scene.mean() + 100, 0, 255)
    hr = np.round(scene[20:660, 20:660]).astype(np.uint8)
    moved = scene[23:663, 18:658]
    lr = np.round(moved.reshape(320, 2, 320, 2).mean(axis=(1, 3))).astype(np.uint8)
    dy, dx = window_shift(hr, lr, 2)
    assert (dy, dx) in {(-3, 2), (-3, 1), (-4, 2), (-4, 1)}  # -(3, -2) minus the 0.5 px integration centre
    # the shift re-aligns the released pair: read_lr_patch(...) ≈ area mean of the HR patch
    got = read_lr_patch(lr, 0, 0, dy, dx, 2).astype(float)
    ref = hr[64:576, 64:576].reshape(256, 2, 256, 2).mean(axis=(1, 3))
    unreg = read_lr_patch(lr, 0, 0, 0, 0, 2).astype(float)
    assert np.abs(got - ref).mean() < 0.5 * np.abs(unreg - ref).mean()


def test_register_windows_shapes():
    rng = np.random.default_rng(3)
    hr = rng.integers(0, 5, (3, 640, 640), dtype=np.uint8)
    lrs = {s: hr[:, ::s, ::s].copy() for s in (2, 4, 8)}
    out = register_windows(hr, lrs, np.array([], np.int32), np.array([], np.int32))
    assert out.shape == (0, 3, 3, 2) and out.dtype == np.int16


def test_partial_registration_record_is_checked(tmp_path):
    """A progress record of other windows/options or a half-written one is ignored (recomputed)."""
    import zarr

    from srcaco2.srdata.build import _load_partial, _scratch_path

    root = zarr.open_group(str(tmp_path / "s.zarr"), mode="a", zarr_format=3)
    y0, x0 = np.array([0, 256], np.int32), np.array([0, 0], np.int32)
    reg = {"method": "tvl1-mean-rounded", "markers": ["CELL2"], "scales": [8]}
    assert _load_partial(root, 1, y0, x0, reg, (3, 3, 2)) == {}
    shift = np.zeros((3, 3, 2), np.int16)
    shift[2, 2] = (3, -1)
    rec = {"y0": [0, 256], "x0": [0, 0], "registration": reg, "shift": {"1": shift.ravel().tolist()}}
    root.create_group(_scratch_path(1)).attrs["partial"] = rec
    got = _load_partial(root, 1, y0, x0, reg, (3, 3, 2))
    assert list(got) == [1] and (got[1] == shift).all() and got[1].dtype == np.int16
    assert _load_partial(root, 1, y0, x0 + 8, reg, (3, 3, 2)) == {}
    assert _load_partial(root, 1, y0, x0, {**reg, "scales": [4, 8]}, (3, 3, 2)) == {}
    meta = os.path.join(str(tmp_path / "s.zarr"), _scratch_path(1), "zarr.json")
    data = open(meta, "rb").read()
    open(meta, "wb").write(data[: len(data) // 2])  # killed mid-write
    assert _load_partial(root, 1, y0, x0, reg, (3, 3, 2)) == {}
    root.create_group(_scratch_path(1), overwrite=True)  # what the build does next
    assert _load_partial(root, 1, y0, x0, reg, (3, 3, 2)) == {}


# --- the numba TV-L1 against skimage's (the reference) -------------------------------------------

REAL_SAMPLE = os.path.join(os.path.dirname(REPO), "shared", "reference", "real_sample")
if not os.path.isdir(REAL_SAMPLE):
    REAL_SAMPLE = "/work/shared/reference/real_sample"


def test_warp_matches_skimage_warp_edge():
    from skimage.transform import warp

    from srcaco2.srdata.registration.tvl1 import warp_edge_bilinear

    rng = np.random.default_rng(7)
    img = rng.random((57, 64)).astype(np.float32)
    flow = (rng.standard_normal((2, 57, 64)) * 4).astype(np.float32)  # many points fall outside
    flow[:, :5, :5] = 0.5  # exact half-pixel positions
    grid = np.meshgrid(np.arange(57, dtype=np.float32), np.arange(64, dtype=np.float32), indexing="ij")
    ref = warp(img, flow + np.stack(grid), mode="edge")
    got = warp_edge_bilinear(img, flow)
    assert got.dtype == np.float32
    np.testing.assert_array_equal(got, ref)


def _synth_pairs(raw, n=20, size=192):
    """(hr, upsampled lr, scale) crops of the small synthetic set, LR displaced by 1-2 LR px."""
    import tifffile

    from srcaco2.srdata.layout import tile_path

    rng = np.random.default_rng(11)
    tiles = {s: tifffile.imread(tile_path(raw, 1, s)) for s in (1, 2, 4, 8)}
    out = []
    while len(out) < n:
        s = int(rng.choice([2, 4, 8]))
        c = int(rng.integers(0, 3))
        y, x = (int(v) * 8 for v in rng.integers(4, (1024 - size) // 8 - 4, 2))
        dy, dx = (int(v) for v in rng.choice([-2, -1, 1, 2], 2))
        hr = tiles[1][c, y : y + size, x : x + size]
        lr = tiles[s][c, y // s + dy : (y + size) // s + dy, x // s + dx : (x + size) // s + dx]
        out.append((hr, upsample_nearest(lr, s), s))
    return out


def test_numba_tvl1_matches_skimage_on_synthetic_windows(raw_small):
    from skimage.registration import optical_flow_tvl1 as reference

    from srcaco2.srdata.registration import optical_flow

    for k, (hr, up, s) in enumerate(_synth_pairs(raw_small)):
        ref = reference(hr, up)
        got = optical_flow(hr, up, "numba")
        assert got.dtype == np.float32 and got.shape == ref.shape
        np.testing.assert_allclose(got, ref, rtol=0, atol=1e-5, err_msg=f"pair {k} x{s}")
        assert np.round(got.reshape(2, -1).mean(1)).tolist() == np.round(ref.reshape(2, -1).mean(1)).tolist()


@pytest.mark.skipif(not os.path.isdir(REAL_SAMPLE), reason="real sample not available")
def test_numba_tvl1_on_the_real_sample():
    """All three scales of the real sample: same flow as skimage and the documented shifts."""
    import tifffile

    hr = tifffile.imread(os.path.join(REAL_SAMPLE, "div1.tif"))
    documented = {2: (2, -5), 4: (1, -7), 8: (3, -12)}  # real_sample/README.md
    for s, expected in documented.items():
        lr = tifffile.imread(os.path.join(REAL_SAMPLE, f"div{s}.tif"))
        got = window_shift(hr, lr, s, "numba")
        assert got == expected, (s, got)
        if s == 8:  # one full skimage run keeps the test short; the benchmark runs them all
            assert window_shift(hr, lr, s, "skimage") == got


def test_register_windows_pools_and_implementations_agree(raw_small):
    import tifffile

    from srcaco2.srdata.layout import tile_path

    hr = tifffile.imread(tile_path(raw_small, 1, 1))
    lrs = {s: tifffile.imread(tile_path(raw_small, 1, s)) for s in (2, 4, 8)}
    y0, x0 = np.array([0, 256], np.int32), np.array([256, 0], np.int32)
    kw = {"markers": (2,), "scales": (8,)}
    serial = register_windows(hr, lrs, y0, x0, pool="serial", **kw)
    threads = register_windows(hr, lrs, y0, x0, pool="threads", workers=2, **kw)
    sk = register_windows(hr, lrs, y0[:1], x0[:1], pool="serial", implementation="skimage", **kw)
    np.testing.assert_array_equal(threads, serial)
    np.testing.assert_array_equal(sk, serial[:1])
    assert (serial[:, :2] == 0).all() and (serial[:, 2, :2] == 0).all()
    with pytest.raises(ValueError, match="implementation"):
        register_windows(hr, lrs, y0, x0, implementation="opencv")


@pytest.mark.parametrize("pool", ["threads", "serial"])
def test_stream_is_bounded(pool):
    """At most `max_in_flight` tasks are taken from the iterator ahead of the results."""
    import time

    from srcaco2.srdata.registration import stream_tasks

    taken = []

    def tasks():
        for k in range(12):
            taken.append(k)
            yield k, (k,)

    ahead = []
    got = {}
    for key, val in stream_tasks(_slow_square, tasks(), pool=pool, workers=2, max_in_flight=3):
        ahead.append(len(taken) - len(got) - 1)  # submitted, not finished (the one in hand is)
        got[key] = val
        time.sleep(0.001)
    assert got == {k: k * k for k in range(12)}
    assert max(ahead) <= 3 and (pool == "serial" or max(ahead) >= 2)


def _slow_square(k):
    import time

    time.sleep(0.005)
    return k * k


def test_numba_cache_dir_fallback(monkeypatch, tmp_path):
    import srcaco2.srdata.registration.tvl1 as tvl1

    monkeypatch.delenv("NUMBA_CACHE_DIR", raising=False)
    monkeypatch.setattr(tvl1.os, "access", lambda path, mode: False)  # read-only package dir and home
    monkeypatch.setattr(tvl1.tempfile, "gettempdir", lambda: str(tmp_path))
    from numba.core import config

    monkeypatch.setattr(config, "CACHE_DIR", config.CACHE_DIR)
    tvl1._ensure_cache_dir()
    assert os.environ["NUMBA_CACHE_DIR"] == str(tmp_path / "srcaco2-numba-cache") == config.CACHE_DIR
    assert os.path.isdir(config.CACHE_DIR)
