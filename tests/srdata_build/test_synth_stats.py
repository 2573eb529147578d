"""The estimators of the realism goals (``benchmarks/realism_stats.py``) on data with known answers,
and the simulator's noise texture against its own parameters."""

from __future__ import annotations

import numpy as np
import pytest

from srcaco2.benchmarks import realism_stats as rs
from srcaco2.srdata.synth import SynthParams, synth_tile


def _ar1(rng: np.random.Generator, shape: tuple[int, int], phi: float, axis: int) -> np.ndarray:
    """Unit-variance AR(1) noise of coefficient `phi` along `axis`, white along the other."""
    e = rng.standard_normal(shape)
    e = np.moveaxis(e, axis, -1)
    out = np.empty_like(e)
    out[..., 0] = e[..., 0]
    for i in range(1, e.shape[-1]):
        out[..., i] = phi * out[..., i - 1] + np.sqrt(1 - phi * phi) * e[..., i]
    return np.moveaxis(out, -1, axis)


@pytest.mark.parametrize("phi", [0.0, 0.2, 0.5])
def test_lag1_of_ar1_noise_along_x_and_y(phi):
    rng = np.random.default_rng(0)
    mask = np.ones((256, 256), bool)
    mask[100:150, 60:200] = False  # a hole (a cell) the estimator must step around
    ry, rx = rs.lag1_autocorrelation(10 + 3 * _ar1(rng, (256, 256), phi, axis=1), mask)
    assert abs(rx - phi) < 0.02 and abs(ry) < 0.02, (ry, rx)
    ry, rx = rs.lag1_autocorrelation(_ar1(rng, (256, 256), phi, axis=0), mask)
    assert abs(ry - phi) < 0.02 and abs(rx) < 0.02, (ry, rx)


def test_lag1_ignores_pixels_outside_the_mask():
    rng = np.random.default_rng(1)
    img = rng.standard_normal((128, 128))
    img[:, 64:] = np.arange(64)[None, :] * 10.0  # a strong ramp: correlated, but masked out
    mask = np.zeros((128, 128), bool)
    mask[:, :64] = True
    ry, rx = rs.lag1_autocorrelation(img, mask)
    assert abs(ry) < 0.04 and abs(rx) < 0.04
    assert np.isnan(rs.lag1_autocorrelation(img, np.zeros_like(mask))[0])


def test_specks_are_left_out_of_the_texture_statistics():
    """A two-pixel speck in white noise fakes a correlation along x; `without_specks` removes it."""
    rng = np.random.default_rng(5)
    img = 1 + rng.poisson(0.3, (64, 64))
    img[30, 40:42] = (22, 16)
    mask = np.ones(img.shape, bool)
    ry, rx = rs.lag1_autocorrelation(img, mask)
    assert rx - ry > 0.1
    clean = rs.without_specks(img, mask)
    assert clean.sum() == img.size - 12  # the speck and its neighbours (3 × 4 px)
    stats = rs.scan_texture_stats(img, mask)
    assert abs(stats["lag1_x"]) < 0.05 and abs(stats["lag1_y"]) < 0.05 and stats["texture_px"] == clean.sum()


def test_mode_fraction_and_laplacian_noise():
    img = np.ones((50, 40), np.uint8)
    img[:10] = 2
    assert rs.mode_fraction(img, np.ones_like(img, bool)) == pytest.approx(0.8)
    rng = np.random.default_rng(2)
    noise = 2.0 * rng.standard_normal((300, 300))
    yy, xx = np.mgrid[:300, :300]
    mask = np.ones((300, 300), bool)
    assert rs.laplacian_noise(noise, mask) == pytest.approx(2.0, rel=0.03)
    # planes do not count; noise correlated between neighbours reads lower than its std
    assert rs.laplacian_noise(noise + 0.5 * yy - 0.3 * xx, mask) == pytest.approx(2.0, rel=0.03)
    assert rs.laplacian_noise(2 * _ar1(rng, (300, 300), 0.5, axis=1), mask) < 1.6


def test_nuclei_spacing_and_density_of_a_lattice_of_blobs():
    """Smooth discs of radius 8 on a square lattice of 25 px: one maximum each, spacing 25."""
    from scipy.ndimage import gaussian_filter

    img = np.zeros((512, 512))
    centres = [(y, x) for y in range(40, 480, 25) for x in range(40, 480, 25)]
    yy, xx = np.mgrid[:512, :512]
    for y, x in centres:
        img[(yy - y) ** 2 + (xx - x) ** 2 <= 64] = 60
    img = gaussian_filter(img, 1.5) + 1
    pts = rs.nuclei_maxima(img)
    assert len(pts) == len(centres)
    assert rs.nearest_neighbour_spacing(pts) == pytest.approx(25, abs=0.5)
    stats = rs.cell_scale_stats(img)
    assert stats["nuclei_nn_px"] == pytest.approx(25, abs=0.5)
    assert stats["nuclei_per_1e4_roi_px"] == pytest.approx(len(centres) / (img >= 4).sum() * 1e4)
    assert np.isnan(rs.nearest_neighbour_spacing(pts[:1]))


def test_tail_ratio():
    img = np.concatenate([np.full(100, 2.0), np.arange(10, 110, dtype=np.float64)])  # ROI: 10..109
    assert rs.tail_ratio(img) == pytest.approx(np.percentile(np.arange(10, 110), 90) / 59.5)
    assert np.isnan(rs.tail_ratio(np.ones(10)))


@pytest.mark.parametrize("g", [0.5, 1.0, 2.0])
def test_variance_mean_slope_of_shot_noise(g):
    """``g · Poisson(mean / g)`` on a smooth ramp has variance ``g · mean``: the slope is g."""
    rng = np.random.default_rng(3)
    mean = np.tile(np.linspace(2, 60, 400), (400, 1))
    img = g * rng.poisson(mean / g)
    assert rs.variance_mean_slope(img) == pytest.approx(g, rel=0.1)


def test_afterpulses_correlate_the_noise_along_the_fast_axis_only():
    """The simulator's afterpulses: shot noise of lag-1 ``q / (1 + q)`` along the fast axis, 0 across it."""
    kw = dict(hr_size=256, seed=3, nucleus_brightness=(0.0, 0.0), membrane_brightness=(0.0, 0.0),
              puncta_brightness=(0.0, 0.0), cytoplasm=(0.0, 0.0, 0.0), haze=0.0, read_noise=(0, 0, 0, 0),
              autofluorescence=(0, 0, 0, 0), dark=(20.0,) * 4, grey_per_photon=(1, 1, 1, 1))  # fmt: skip
    for q in (0.0, 0.3):
        lr = synth_tile(1, SynthParams(**kw, afterpulse=(0, 0, q, 0)))[4][0].astype(np.float64)
        ry, rx = rs.lag1_autocorrelation(lr, np.ones(lr.shape, bool))
        assert abs(rx - q / (1 + q)) < 0.05 and abs(ry) < 0.05, (q, ry, rx)
        assert lr.mean() == pytest.approx(21.0, rel=0.01)  # offset 1 + dark 20: afterpulses keep the mean
    # a scan whose fast axis is y (the /8 scan by default): the same along y, across band boundaries
    p = SynthParams(**kw, afterpulse=(0, 0, 0, 0.3), band=64)
    assert p.fast_axis_y == (8,)
    lr = synth_tile(1, p)[8][0].astype(np.float64)
    ry, rx = rs.lag1_autocorrelation(lr, np.ones(lr.shape, bool))
    assert abs(ry - 0.3 / 1.3) < 0.06 and abs(rx) < 0.06, (ry, rx)
    band_rows = lr[7:-1:8].ravel() - lr.mean(), lr[8::8].ravel() - lr.mean()  # rows 7|8, 15|16, ...
    assert np.corrcoef(*band_rows)[0, 1] > 0.1


def test_autofluorescence_correlates_the_background_along_both_axes():
    p = SynthParams(hr_size=256, seed=4, colony_density=0.0, cysts_per_colony=(0, 0), read_noise=(0, 0, 0, 0),
                    dark=(5.0, 5.0, 5.0, 5.0), grey_per_photon=(0.01, 0.01, 0.01, 0.01))  # fmt: skip
    flat = synth_tile(1, p)[1][2].astype(np.float64)
    smooth = synth_tile(1, SynthParams(**{**p.to_json(), "autofluorescence": (2.0, 2.0, 2.0, 2.0)}))[1][2]
    mask = np.ones(flat.shape, bool)
    assert max(np.abs(rs.lag1_autocorrelation(flat, mask))) < 0.1
    assert min(rs.lag1_autocorrelation(smooth.astype(np.float64), mask)) > 0.8
