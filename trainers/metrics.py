"""Evaluation metrics exactly as the SR-CACO-2 benchmark defines them (docs/protocol.md#evaluation).

One documented convention, applied per image (per 512² test patch):

1. Quantise: ``E = round(clamp(sr, 0, 1) · 255)``, ``H = round(clamp(hr, 0, 1) · 255)``, computed in
   float32 as the benchmark does on its float32 tensors (float64 differs on rounding ties: up to
   0.02 dB on tie-heavy inputs), then held as float64 for every metric.
2. Border crop = scale: ``s`` pixels off every side of E, H and the ROI masks (508² / 504² / 496²).
3. Full image: ``MSE = mean((E − H)²)``; ``PSNR = 20·log10(255 / √max(MSE, 1e−45))`` (≈ 498.13 dB
   cap); ``NRMSE = √MSE / (max H − min H)`` (a zero denominator becomes 1); ``SSIM`` on ``E/255``,
   ``H/255`` with an 11×11 Gaussian (σ 1.5, normalised), VALID convolution (map (h−10)²),
   C1 = 0.01², C2 = 0.03², variances from E[x²] − μ², value = mean of the map.
4. ROI (the paper's Table 4): for each threshold t in 4..10, ``mask = H_full ≥ t`` computed on the
   uncropped GT of the evaluated marker, then border-cropped; masked MSE = Σ mask·(E−H)² / Σ mask
   (Σ mask = 0 → 1, so an empty ROI gives MSE 0 and PSNR ≈ 498 dB); masked NRMSE = masked RMSE /
   (max(H·mask) − max(min H, min(H·mask))) (zero → 1); masked SSIM = Σ(map · mask cropped by 5 px
   more on each side, aligned to the map centres) / Σ that mask (zero → 1). Each ROI metric is
   the mean over the 7 thresholds.
5. A split's score is the arithmetic mean of the per-patch values (PSNR averaged in dB).

`patch_metrics` is the reference implementation (numpy float64). `frc_resolution` adds a Fourier
ring correlation resolution (1/7 threshold) as an extra column. `bicubic_upsample` is the
benchmark's bicubic baseline (docs/protocol.md#bicubic-baseline).
"""

from __future__ import annotations

import math
from collections.abc import Iterable, Mapping
from typing import Any

import numpy as np
from scipy.ndimage import correlate1d

__all__ = [
    "ROI_THRESHOLDS",
    "SSIM_WINDOW",
    "SSIM_SIGMA",
    "METRIC_NAMES",
    "quantize_8bit",
    "gaussian_window_1d",
    "ssim_map_valid",
    "patch_metrics",
    "mean_metrics",
    "frc_curve",
    "frc_resolution",
    "bicubic_upsample",
]

ROI_THRESHOLDS: tuple[int, ...] = (4, 5, 6, 7, 8, 9, 10)
"""8-bit GT thresholds whose ROI metrics are averaged per image (docs/protocol.md#roi-metrics)."""

SSIM_WINDOW: int = 11
SSIM_SIGMA: float = 1.5
_C1 = 0.01**2
_C2 = 0.03**2
_MSE_FLOOR = 1e-45

METRIC_NAMES: tuple[str, ...] = ("psnr", "nrmse", "ssim", "roi_psnr", "roi_nrmse", "roi_ssim")
"""Keys of `patch_metrics`; higher is better except for the NRMSE columns."""


def _as_2d_float(a: Any, name: str) -> np.ndarray:
    if hasattr(a, "detach"):  # torch tensor
        a = a.detach().to("cpu").double().numpy()
    arr = np.asarray(a, dtype=np.float64)
    while arr.ndim > 2 and arr.shape[0] == 1:  # (1, 1, H, W) / (1, H, W) -> (H, W)
        arr = arr[0]
    if arr.ndim != 2:
        raise ValueError(f"{name} must be one (H, W) image (singleton dims allowed), got shape {np.shape(a)}")
    return arr


def quantize_8bit(img: Any) -> np.ndarray:
    """``round(clamp(img, 0, 1) · 255)`` — the benchmark's 8-bit quantisation, in float32.

    The product and the rounding are done in float32, as the benchmark does on its float32 output
    tensors (``tensor2uint82float``): a value such as ``0.5/255`` lands on the other side of a rounding
    tie in float64. bf16/fp16 inputs are widened to float32 first.

    Parameters
    ----------
    img : (H, W) float array (numpy or torch) nominally in [0, 1]

    Returns
    -------
    (H, W) float64 with integer values in [0, 255] (round half to even, as torch.round).
    """
    if hasattr(img, "detach"):  # torch tensor
        img = img.detach().to("cpu").float().numpy()
    arr = _as_2d_float(np.asarray(img, dtype=np.float32), "img").astype(np.float32)
    return np.round(np.clip(arr, np.float32(0.0), np.float32(1.0)) * np.float32(255.0)).astype(np.float64)


def gaussian_window_1d(window: int = SSIM_WINDOW, sigma: float = SSIM_SIGMA) -> np.ndarray:
    """Normalised 1-D Gaussian over offsets ``k − window//2``, (window,) float64."""
    k = np.arange(window, dtype=np.float64) - window // 2
    g = np.exp(-(k**2) / (2.0 * sigma**2))
    return g / g.sum()


def _blur_valid(img: np.ndarray, g: np.ndarray) -> np.ndarray:
    """Separable Gaussian correlation keeping only fully-covered pixels ('valid')."""
    r = len(g) // 2
    out = correlate1d(img, g, axis=0, mode="constant")
    out = correlate1d(out, g, axis=1, mode="constant")
    return out[r : img.shape[0] - r, r : img.shape[1] - r]


def ssim_map_valid(
    x: np.ndarray, y: np.ndarray, *, window: int = SSIM_WINDOW, sigma: float = SSIM_SIGMA
) -> np.ndarray:
    """SSIM map of two images in [0, 1] with valid convolution.

    Parameters
    ----------
    x, y : (H, W) float64 in [0, 1]

    Returns
    -------
    (H − window + 1, W − window + 1) float64
    """
    if min(x.shape) < window:
        raise ValueError(f"images of shape {x.shape} are smaller than the SSIM window {window}")
    g = gaussian_window_1d(window, sigma)
    mu_x, mu_y = _blur_valid(x, g), _blur_valid(y, g)
    sxx = _blur_valid(x * x, g) - mu_x**2
    syy = _blur_valid(y * y, g) - mu_y**2
    sxy = _blur_valid(x * y, g) - mu_x * mu_y
    num = (2 * mu_x * mu_y + _C1) * (2 * sxy + _C2)
    den = (mu_x**2 + mu_y**2 + _C1) * (sxx + syy + _C2)
    return num / den


def _psnr(mse: float) -> float:
    return 20.0 * math.log10(255.0 / math.sqrt(max(mse, _MSE_FLOOR)))


def _crop(a: np.ndarray, b: int) -> np.ndarray:
    return a[b : a.shape[0] - b, b : a.shape[1] - b] if b > 0 else a


def patch_metrics(
    sr: Any, hr: Any, scale: int, *, roi_thresholds: Iterable[int] = ROI_THRESHOLDS
) -> dict[str, float]:
    """Full-image and ROI metrics of one patch, docs/protocol.md#evaluation to the letter.

    Parameters
    ----------
    sr : (H, W) float array (numpy or torch) in [0, 1]
        Model output for one marker (clamped and rounded here, as the benchmark does).
    hr : (H, W) float array in [0, 1]
        Ground truth (k/255 values, as the loader returns them).
    scale : int
        The SR factor; also the border crop in pixels.
    roi_thresholds : iterable of int
        8-bit GT thresholds averaged for the ROI metrics (default 4..10).

    Returns
    -------
    dict
        ``psnr`` (dB), ``nrmse``, ``ssim``, ``roi_psnr``, ``roi_nrmse``, ``roi_ssim`` as floats.

    Examples
    --------
    >>> import numpy as np
    >>> hr = np.zeros((64, 64)); hr[20:40, 20:40] = 0.5
    >>> m = patch_metrics(hr, hr, 2)
    >>> round(m["psnr"], 2), m["ssim"] == 1.0, round(m["roi_psnr"], 2)
    (498.13, True, 498.13)
    """
    e_full, h_full = quantize_8bit(sr), quantize_8bit(hr)
    if e_full.shape != h_full.shape:
        raise ValueError(f"sr {e_full.shape} and hr {h_full.shape} must have the same shape")
    b = int(scale)
    e, h = _crop(e_full, b), _crop(h_full, b)
    diff2 = (e - h) ** 2
    mse = float(diff2.mean())
    rmse = math.sqrt(mse)
    den = float(h.max() - h.min())
    smap = ssim_map_valid(e / 255.0, h / 255.0)
    out = {"psnr": _psnr(mse), "nrmse": rmse / (den if den != 0 else 1.0), "ssim": float(smap.mean())}

    r = SSIM_WINDOW // 2
    roi: dict[str, list[float]] = {"roi_psnr": [], "roi_nrmse": [], "roi_ssim": []}
    h_min = float(h.min())
    for t in roi_thresholds:
        mask = _crop(h_full >= t, b).astype(np.float64)
        n = float(mask.sum())
        m_mse = float((diff2 * mask).sum()) / (n if n != 0 else 1.0)
        hm = h * mask
        m_den = float(hm.max()) - max(h_min, float(hm.min()))
        m_mask = _crop(mask, r)
        n_s = float(m_mask.sum())
        roi["roi_psnr"].append(_psnr(m_mse))
        roi["roi_nrmse"].append(math.sqrt(m_mse) / (m_den if m_den != 0 else 1.0))
        roi["roi_ssim"].append(float((smap * m_mask).sum()) / (n_s if n_s != 0 else 1.0))
    out.update({k: float(np.mean(v)) for k, v in roi.items()})
    return out


def mean_metrics(rows: Iterable[Mapping[str, float]]) -> dict[str, float]:
    """Split score: arithmetic mean of per-patch values per key (PSNR averaged in dB,
    docs/protocol.md#aggregation)."""
    rows = list(rows)
    if not rows:
        raise ValueError("no per-patch metrics to average (empty split?)")
    keys = [k for k in rows[0] if isinstance(rows[0][k], (int, float))]
    return {k: float(np.mean([float(r[k]) for r in rows], dtype=np.float64)) for k in keys}


def frc_curve(a: Any, b: Any, *, n_bins: int | None = None) -> tuple[np.ndarray, np.ndarray]:
    """Fourier ring correlation between two images.

    Parameters
    ----------
    a, b : (H, W) float arrays (cropped to a square of the smaller side; Hann-apodised)
    n_bins : int, optional
        Number of rings up to Nyquist (default side // 2).

    Returns
    -------
    freq : (n_bins,) float64, spatial frequency of each ring centre in cycles per pixel (0..0.5]
    frc : (n_bins,) float64 in [−1, 1]
    """
    x, y = _as_2d_float(a, "a"), _as_2d_float(b, "b")
    n = min(x.shape + y.shape)
    x, y = x[:n, :n], y[:n, :n]
    win = np.outer(np.hanning(n), np.hanning(n))
    fx = np.fft.fftshift(np.fft.fft2((x - x.mean()) * win))
    fy = np.fft.fftshift(np.fft.fft2((y - y.mean()) * win))
    k = np.arange(n) - n // 2
    radius = np.hypot(*np.meshgrid(k, k, indexing="ij")) / n  # cycles / pixel
    n_bins = n_bins or n // 2
    edges = np.linspace(0.0, 0.5, n_bins + 1)
    idx = np.digitize(radius.ravel(), edges) - 1
    valid = (idx >= 0) & (idx < n_bins)
    idx = idx[valid]
    num = np.bincount(idx, (fx * np.conj(fy)).real.ravel()[valid], minlength=n_bins)
    pa = np.bincount(idx, (np.abs(fx) ** 2).ravel()[valid], minlength=n_bins)
    pb = np.bincount(idx, (np.abs(fy) ** 2).ravel()[valid], minlength=n_bins)
    den = np.sqrt(pa * pb)
    frc = np.divide(num, den, out=np.zeros_like(num), where=den > 0)
    return 0.5 * (edges[:-1] + edges[1:]), frc


def frc_resolution(sr: Any, hr: Any, *, threshold: float = 1.0 / 7.0) -> float:
    """FRC resolution of ``sr`` against ``hr``, in HR pixels (lower is finer).

    The resolution is 1 / f where f is the first ring frequency (cycles/pixel) at which the FRC
    falls below `threshold` (1/7); 2.0 (Nyquist) when it never does.
    """
    freq, frc = frc_curve(sr, hr)
    below = np.nonzero(frc[1:] < threshold)[0]  # ring 0 (DC) is meaningless after mean removal
    if below.size == 0:
        return 2.0
    return float(1.0 / freq[below[0] + 1])


def bicubic_upsample(lr: Any, scale: int) -> Any:
    """The benchmark's bicubic baseline (docs/protocol.md#bicubic-baseline), clamped to [0, 1].

    ``F.interpolate(lr, scale_factor=s, mode="bicubic", antialias=True)``: Keys a = −0.5 with
    out-of-image taps dropped and weights renormalised, half-pixel centres.

    Parameters
    ----------
    lr : (B, C, h, w) float tensor in [0, 1]

    Returns
    -------
    (B, C, s·h, s·w) float tensor in [0, 1]
    """
    from srcaco2.trainers.models._interp import antialiased_bicubic

    return antialiased_bicubic(lr, int(scale))
