"""srdata.synth: layout, determinism, marker brightness, ROI pass/fail mix, exact area-mean mode."""

from __future__ import annotations

import json
import os

import numpy as np
import tifffile

from srdata.layout import discover_tiles, tile_path
from srdata.roi import window_grid, window_roi_fraction
from srdata.synth import SynthParams, synth_tile, tile_misregistration


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
    cell = hr[1] > 20  # inside cysts (membranes)
    means = [float(hr[c][hr[2] > 10].mean()) for c in range(3)]
    assert means[0] < means[1] < means[2]  # CELL0 dimmest, CELL2 brightest
    assert 0.01 < cell.mean() < 0.5  # mostly dark background
    assert np.median(hr[2]) <= 2
    y0, x0 = window_grid(2048, 2048)
    frac = window_roi_fraction((hr[2] >= 4).astype(np.uint8), y0, x0)
    acc = (frac >= 0.2).mean()
    assert 0.15 <= acc <= 0.85, acc  # a good fraction passes, a good fraction fails


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
