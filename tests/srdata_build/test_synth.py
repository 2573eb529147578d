"""srcaco2.srdata.synth: layout, determinism, marker brightness, ROI pass/fail mix, separate LR acquisitions,
stage offsets, parameters in synth.json, exact area-mean mode."""

from __future__ import annotations

import json
import os

import numpy as np
import pytest
import tifffile

from srcaco2.srdata.layout import discover_tiles, tile_path
from srcaco2.srdata.roi import window_grid, window_roi_fraction
from srcaco2.srdata.synth import SynthParams, read_synth_params, synth_tile, tile_misregistration


def test_layout_and_json(raw_small):
    assert discover_tiles(raw_small) == [1, 2, 3]
    for s, side in ((1, 1024), (2, 512), (4, 256), (8, 128)):
        with tifffile.TiffFile(tile_path(raw_small, 2, s)) as tif:
            assert tif.series[0].shape == (3, side, side)
            assert tif.series[0].dtype == np.uint8
    meta = json.load(open(os.path.join(raw_small, "synth.json")))
    assert meta["hr_size"] == 1024 and meta["tiles"] == [1, 2, 3]
    assert meta["misregistration_hr_px"]["2"]["4"] == list(
        tile_misregistration(2, SynthParams(hr_size=1024, seed=1))[4]
    )


def test_deterministic_and_seeded():
    p = SynthParams(hr_size=256, seed=5)
    a, b = synth_tile(1, p), synth_tile(1, p)
    for s in a:
        np.testing.assert_array_equal(a[s], b[s])
    assert not np.array_equal(synth_tile(2, p)[1], a[1])
    assert not np.array_equal(synth_tile(1, SynthParams(hr_size=256, seed=6))[1], a[1])


def test_realistic_enough():
    hr = synth_tile(1, SynthParams(hr_size=2048, seed=0))[1]
    nuclei = hr[2] > 20
    means = [float(hr[c][nuclei].mean()) for c in range(3)]
    assert means[0] < means[1] < means[2]  # CELL0 dimmest, CELL2 brightest (docs/protocol.md#raw-tile-files)
    assert 0.05 < nuclei.mean() < 0.6  # cells and background
    assert np.median(hr[2][~nuclei]) == 1  # the detector offset, as the real background (~1)
    assert (hr == 0).mean() < 0.01 and hr.max() < 255  # no floor of zeros, no clipping
    y0, x0 = window_grid(2048, 2048)
    frac = window_roi_fraction((hr[2] >= 4).astype(np.uint8), y0, x0)
    acc = (frac >= 0.2).mean()
    assert 0.15 <= acc <= 0.85, acc  # a good fraction passes, a good fraction fails


def _bg_noise(img: np.ndarray, hr: np.ndarray, s: int) -> float:
    from srcaco2.benchmarks.synth_realism import background_mask

    n = hr.shape[0] // s
    m = background_mask(hr).reshape(n, s, n, s).all(axis=(1, 3)) if s > 1 else background_mask(hr)
    assert m.sum() > 100
    return float(img[m].std())


def test_lr_scans_are_separate_noisier_acquisitions():
    p = SynthParams(hr_size=512, seed=2)
    acq = synth_tile(1, p)
    hr = acq[1][2]
    for s in (2, 4, 8):
        n = 512 // s
        area = hr.astype(np.float64).reshape(n, s, n, s).mean(axis=(1, 3))
        assert not np.array_equal(acq[s][2], np.round(area))  # not a resampling of HR
        assert _bg_noise(acq[s][2], hr, s) > 1.5 * _bg_noise(hr, hr, 1)  # every LR scan noisier than HR
    # without stage offsets the /s scan still follows HR closely (same specimen, gain < 1 and noise)
    aligned = synth_tile(1, SynthParams(hr_size=512, seed=2, misregistration=False))
    area4 = aligned[1][2].astype(np.float64).reshape(128, 4, 128, 4).mean(axis=(1, 3))
    assert np.corrcoef(area4.ravel(), aligned[4][2].astype(np.float64).ravel())[0, 1] > 0.97


def test_stage_offsets_are_one_to_two_and_a_half_lr_px_and_vary():
    p = SynthParams(hr_size=512, seed=0)
    seen = set()
    for t in range(1, 9):
        mis = tile_misregistration(t, p)
        for s, (dy, dx) in mis.items():
            length = np.hypot(dy, dx) / s
            assert p.shift_lr_px[0] - 0.75 / s <= length <= p.shift_lr_px[1] + 0.75 / s, (t, s, dy, dx)
            seen.add((s, dy, dx))
    assert len(seen) >= 20  # by tile and by scan
    assert tile_misregistration(1, SynthParams(misregistration=False)) == {2: (0, 0), 4: (0, 0), 8: (0, 0)}


def test_offset_moves_the_lr_scan():
    """Noise-free, the /4 scan is best explained by the HR scan moved by the recorded stage offset."""
    p = SynthParams(hr_size=512, seed=4, noise=False)
    acq = synth_tile(2, p)
    hr, lr = acq[1][2].astype(np.float64), acq[4][2].astype(np.float64)
    dy, dx = tile_misregistration(2, p)[4]
    target = lr[8:120, 8:120]
    err = {}
    for ty in range(-12, 13):
        for tx in range(-12, 13):
            src = hr[32 + ty : 32 + ty + 448, 32 + tx : 32 + tx + 448]
            src = src.reshape(112, 4, 112, 4).mean(axis=(1, 3))
            g = (src * target).sum() / (src * src).sum()  # the scan's gain
            err[(ty, tx)] = float(np.abs(target - g * src).mean())
    best = min(err, key=err.get)
    assert abs(best[0] - dy) <= 1 and abs(best[1] - dx) <= 1, (best, (dy, dx))
    assert err[best] < 0.5 * err[(0, 0)]


def test_params_in_synth_json_and_validation(tmp_path):
    from srcaco2.srdata.synth import write_synth

    p = SynthParams(hr_size=64, seed=9, haze=0.3, grey_per_photon=(0.3, 0.6, 0.4, 0.3))
    write_synth(tmp_path, n_tiles=1, params=p)
    assert read_synth_params(tmp_path) == p
    with pytest.raises(ValueError, match="grey_per_photon needs one value per scan"):
        SynthParams(grey_per_photon=(1.0, 2.0))
    with pytest.raises(ValueError, match="band must be a positive multiple of 8"):
        SynthParams(band=12)
    with pytest.raises(ValueError, match="cyst_radius"):
        SynthParams(cyst_radius=(100.0, 50.0))


def test_exact_area_mean_mode():
    p = SynthParams(hr_size=328, seed=2, noise=False, misregistration=False, band=64)
    acq = synth_tile(3, p)
    hr = acq[1].astype(np.float64)
    for s in (2, 4, 8):
        n = 328 // s
        mean = hr[:, : n * s, : n * s].reshape(3, n, s, n, s).mean(axis=(2, 4))
        np.testing.assert_array_equal(acq[s], np.round(mean).astype(np.uint8))
    assert tile_misregistration(3, p) == {2: (0, 0), 4: (0, 0), 8: (0, 0)}


def test_banding_does_not_change_the_tile():
    a = synth_tile(4, SynthParams(hr_size=300, seed=1, band=64))
    b = synth_tile(4, SynthParams(hr_size=300, seed=1, band=512))
    # the scene is identical; only noise draws depend on the band order
    p_nn = dict(hr_size=300, seed=1, noise=False)
    c, d = synth_tile(4, SynthParams(**p_nn, band=64)), synth_tile(4, SynthParams(**p_nn, band=512))
    for s in c:
        np.testing.assert_array_equal(c[s], d[s])
    assert a[1].shape == b[1].shape == (3, 300, 300) and a[8].shape == (3, 37, 37)
