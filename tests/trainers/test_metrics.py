"""srcaco2.trainers.metrics against scikit-image and hand-computed values (docs/protocol.md#evaluation)."""

from __future__ import annotations

import math

import numpy as np
import pytest
import torch
from skimage.metrics import normalized_root_mse, peak_signal_noise_ratio, structural_similarity

from srcaco2.trainers.metrics import (
    ROI_THRESHOLDS,
    bicubic_upsample,
    frc_resolution,
    mean_metrics,
    patch_metrics,
    quantize_8bit,
)


def _microscopy_pair(rng: np.random.Generator, n: int = 96) -> tuple[np.ndarray, np.ndarray]:
    """Dark background with bright blobs (GT) and a noisy, blurred estimate, both k/255."""
    yy, xx = np.mgrid[:n, :n]
    hr = np.zeros((n, n))
    for _ in range(6):
        cy, cx, r = rng.uniform(10, n - 10, 2).tolist() + [rng.uniform(3, 9)]
        hr += rng.uniform(40, 200) * np.exp(-((yy - cy) ** 2 + (xx - cx) ** 2) / (2 * r**2))
    hr = np.clip(np.round(hr + rng.poisson(1.0, hr.shape)), 0, 255)
    sr = np.clip(hr + rng.normal(0, 6, hr.shape), 0, 255)
    return sr / 255.0, hr / 255.0


@pytest.mark.parametrize("scale", [2, 4, 8])
@pytest.mark.parametrize("kind", ["random", "microscopy"])
def test_full_image_metrics_match_skimage(scale: int, kind: str) -> None:
    rng = np.random.default_rng(scale)
    if kind == "random":
        hr = rng.integers(0, 256, (80, 72)) / 255.0
        sr = np.clip(hr + rng.normal(0, 0.05, hr.shape), -0.1, 1.1)  # out of range: clamped
    else:
        sr, hr = _microscopy_pair(rng)
    m = patch_metrics(sr, hr, scale)
    e = np.round(np.clip(sr, 0, 1) * 255)[scale:-scale, scale:-scale]
    h = np.round(np.clip(hr, 0, 1) * 255)[scale:-scale, scale:-scale]
    assert m["psnr"] == pytest.approx(peak_signal_noise_ratio(h, e, data_range=255), abs=1e-9)
    assert m["nrmse"] == pytest.approx(normalized_root_mse(h, e, normalization="min-max"), abs=1e-12)
    ref_ssim = structural_similarity(
        h / 255, e / 255, gaussian_weights=True, sigma=1.5, use_sample_covariance=False, data_range=1.0
    )
    assert m["ssim"] == pytest.approx(ref_ssim, abs=1e-10)


def test_roi_metrics_hand_computed() -> None:
    # 40x40 GT: background 0, a 20x20 square of value 100; estimate = GT + 3 inside the square,
    # + 1 on the background. Thresholds 4..10 all select exactly the square.
    hr = np.zeros((40, 40))
    hr[10:30, 10:30] = 100
    sr = hr + 1
    sr[10:30, 10:30] += 2
    m = patch_metrics(sr / 255, hr / 255, scale=2)
    # inside the ROI the error is 3 -> masked MSE 9; NRMSE denominator = 100 - max(0, 0)
    assert m["roi_psnr"] == pytest.approx(20 * math.log10(255 / 3), abs=1e-12)
    assert m["roi_nrmse"] == pytest.approx(3 / 100, abs=1e-12)
    # full image after the 2-px crop: 36x36 pixels, 400 with error 3, the rest error 1
    mse = (400 * 9 + (36 * 36 - 400) * 1) / (36 * 36)
    assert m["psnr"] == pytest.approx(20 * math.log10(255 / math.sqrt(mse)), abs=1e-12)
    assert m["nrmse"] == pytest.approx(math.sqrt(mse) / 100, abs=1e-12)


def test_roi_thresholds_are_averaged_per_image() -> None:
    # GT pixel values 4..10 in bands: threshold t keeps the bands >= t, so each threshold sees a
    # different ROI; the result must be the mean of the 7 single-threshold values.
    hr = np.zeros((64, 64))
    for k, v in enumerate(range(4, 11)):
        hr[8 + 6 * k : 14 + 6 * k, 8:56] = v
    rng = np.random.default_rng(0)
    sr = np.clip(hr + rng.integers(-2, 3, hr.shape), 0, 255)
    m = patch_metrics(sr / 255, hr / 255, 4)
    singles = [patch_metrics(sr / 255, hr / 255, 4, roi_thresholds=[t]) for t in ROI_THRESHOLDS]
    for key in ("roi_psnr", "roi_nrmse", "roi_ssim"):
        assert m[key] == pytest.approx(np.mean([s[key] for s in singles]), abs=1e-12)
    assert len({round(s["roi_psnr"], 9) for s in singles}) > 1  # thresholds really differ


def test_masked_ssim_uses_map_aligned_crop() -> None:
    rng = np.random.default_rng(3)
    sr, hr = _microscopy_pair(rng, 64)
    m = patch_metrics(sr, hr, 2, roi_thresholds=[4])
    # independent computation with skimage's full SSIM map (same Gaussian, valid region)
    e = np.round(np.clip(sr, 0, 1) * 255)[2:-2, 2:-2] / 255
    h = np.round(np.clip(hr, 0, 1) * 255)[2:-2, 2:-2] / 255
    _, smap = structural_similarity(
        h, e, gaussian_weights=True, sigma=1.5, use_sample_covariance=False, data_range=1.0, full=True
    )
    mask = (np.round(np.clip(hr, 0, 1) * 255) >= 4)[2:-2, 2:-2]
    inner = (slice(5, -5), slice(5, -5))
    expected = (smap[inner] * mask[inner]).sum() / mask[inner].sum()
    assert m["roi_ssim"] == pytest.approx(expected, abs=1e-10)


def test_empty_roi_and_identical_images_hit_the_psnr_cap() -> None:
    hr = np.full((32, 32), 2 / 255)  # below every threshold: empty ROI
    sr = hr + 0.3 / 255  # rounds back to the same 8-bit values
    m = patch_metrics(sr, hr, 2)
    cap = 20 * math.log10(255 / math.sqrt(1e-45))
    assert m["psnr"] == pytest.approx(cap) and m["roi_psnr"] == pytest.approx(cap)
    assert m["nrmse"] == 0.0  # flat GT: denominator 0 -> 1, numerator 0
    assert m["roi_ssim"] == 0.0  # empty mask: sum 0 / 1


def test_torch_inputs_and_shapes() -> None:
    rng = np.random.default_rng(1)
    sr, hr = _microscopy_pair(rng, 48)
    a = patch_metrics(torch.from_numpy(sr).float()[None, None], torch.from_numpy(hr).float()[None], 2)
    b = patch_metrics(sr.astype(np.float32), hr.astype(np.float32), 2)
    assert a == pytest.approx(b)
    with pytest.raises(ValueError, match="same shape"):
        patch_metrics(sr[:40], hr, 2)
    with pytest.raises(ValueError, match="one \\(H, W\\) image"):
        patch_metrics(np.stack([sr, sr]), np.stack([hr, hr]), 2)


def test_quantize_rounds_half_to_even_like_torch() -> None:
    x = np.array([[0.5 / 255, 1.5 / 255, 2.5 / 255, 1.2, -0.2]], dtype=np.float32)
    assert quantize_8bit(x).tolist() == [torch.round(torch.tensor(x).clamp(0, 1) * 255).tolist()[0]]


def test_quantize_in_float32_as_the_benchmark() -> None:
    # model outputs are float32 tensors; the benchmark quantises them in float32 (clamp * 255, round)
    ties = (np.arange(255, dtype=np.float64) + 0.5) / 255
    x = torch.tensor(np.stack([ties, np.nextafter(ties, 1), np.nextafter(ties, 0)]), dtype=torch.float32)
    want = torch.round(x.clamp(0, 1) * 255).double().numpy()
    np.testing.assert_array_equal(quantize_8bit(x), want)
    np.testing.assert_array_equal(quantize_8bit(x.numpy()), want)
    np.testing.assert_array_equal(
        quantize_8bit(x.to(torch.bfloat16)),
        torch.round(x.to(torch.bfloat16).float().clamp(0, 1) * 255).double().numpy(),
    )
    as_float64 = np.round(np.clip(x.double().numpy(), 0, 1) * 255.0)
    assert (as_float64 != want).any()  # the float64 path differs on some ties: the fix matters


def test_mean_metrics() -> None:
    rows = [{"psnr": 30.0, "ssim": 0.5, "tile": 1}, {"psnr": 40.0, "ssim": 0.7, "tile": 2}]
    mean = mean_metrics(rows)
    assert mean["psnr"] == 35.0 and mean["ssim"] == pytest.approx(0.6)
    with pytest.raises(ValueError):
        mean_metrics([])


def test_frc_resolution_orders_noise() -> None:
    # FRC is blind to linear filtering (it normalises each ring) but not to noise: a smooth GT with
    # a decaying spectrum plus white noise decorrelates first at high frequencies.
    from scipy.ndimage import gaussian_filter

    rng = np.random.default_rng(5)
    hr = gaussian_filter(rng.random((128, 128)), 1.5)
    assert frc_resolution(hr, hr) == 2.0
    res = [frc_resolution(hr + rng.normal(0, sd, hr.shape), hr) for sd in (0.002, 0.01, 0.05)]
    assert 2.0 <= res[0] < res[1] < res[2]


def _keys_a05_renormalised(lr: np.ndarray, s: int) -> np.ndarray:
    """Independent separable a=-0.5 bicubic, out-of-image taps dropped, weights renormalised."""

    def w(t: np.ndarray) -> np.ndarray:
        a, t = -0.5, np.abs(t)
        return np.where(
            t <= 1,
            (a + 2) * t**3 - (a + 3) * t**2 + 1,
            np.where(t < 2, a * t**3 - 5 * a * t**2 + 8 * a * t - 4 * a, 0),
        )

    def along(x: np.ndarray, axis: int) -> np.ndarray:
        n = x.shape[axis]
        mat = np.zeros((n * s, n))
        for i in range(n * s):
            c = (i + 0.5) / s - 0.5
            js = np.arange(math.floor(c) - 1, math.floor(c) + 3)
            js = js[(js >= 0) & (js < n)]
            wt = w(c - js)
            mat[i, js] = wt / wt.sum()
        return np.moveaxis(np.tensordot(mat, np.moveaxis(x, axis, 0), axes=1), 0, axis)

    return np.clip(along(along(lr, 0), 1), 0, 1)


@pytest.mark.parametrize("scale", [2, 4])
def test_bicubic_baseline_is_antialiased_keys_a_minus_half(scale: int) -> None:
    rng = np.random.default_rng(scale)
    lr = rng.integers(0, 256, (9, 11)) / 255.0
    ours = bicubic_upsample(torch.from_numpy(lr)[None, None], scale)[0, 0].numpy()
    assert ours.shape == (9 * scale, 11 * scale)
    np.testing.assert_allclose(ours, _keys_a05_renormalised(lr, scale), atol=2e-6)
