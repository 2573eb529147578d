"""Registration: the stored integer shift + schema.read_lr_patch reproduce the original's
warp (skimage.transform.warp) + 64 px crop + PIL NEAREST downsample byte for byte, and TV-L1
recovers a known misregistration."""

from __future__ import annotations

import numpy as np
import pytest
from PIL import Image

from srdata.registration import register_windows, upsample_nearest, window_shift
from srdata.schema import read_hr_patch, read_lr_patch


def _original_lr_patch(lr_plane, y0, x0, dy, dx, s):
    """The original's procedure, literally (SPEC §2.5 steps 1, 3, 4)."""
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
    import os

    import zarr

    from srdata.build import _load_partial, _scratch_path

    root = zarr.open_group(str(tmp_path / "s.zarr"), mode="a", zarr_format=3)
    y0, x0 = np.array([0, 256], np.int32), np.array([0, 0], np.int32)
    reg = {"method": "tvl1-mean-rounded", "markers": ["CELL2"], "scales": [8]}
    assert _load_partial(root, 1, y0, x0, reg) == {}
    shift = np.zeros((3, 3, 2), np.int16)
    shift[2, 2] = (3, -1)
    rec = {"y0": [0, 256], "x0": [0, 0], "registration": reg, "shift": {"1": shift.ravel().tolist()}}
    root.create_group(_scratch_path(1)).attrs["partial"] = rec
    got = _load_partial(root, 1, y0, x0, reg)
    assert list(got) == [1] and (got[1] == shift).all() and got[1].dtype == np.int16
    assert _load_partial(root, 1, y0, x0 + 8, reg) == {}
    assert _load_partial(root, 1, y0, x0, {**reg, "scales": [4, 8]}) == {}
    meta = os.path.join(str(tmp_path / "s.zarr"), _scratch_path(1), "zarr.json")
    data = open(meta, "rb").read()
    open(meta, "wb").write(data[: len(data) // 2])  # killed mid-write
    assert _load_partial(root, 1, y0, x0, reg) == {}
    root.create_group(_scratch_path(1), overwrite=True)  # what the build does next
    assert _load_partial(root, 1, y0, x0, reg) == {}
