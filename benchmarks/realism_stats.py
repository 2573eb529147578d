"""Statistics of texture, cell scale and noise that the realism benchmark compares (issue 23).

Each function measures one property of one scan of a region the same way on the real sample and on
synthetic regions; `benchmarks/synth_realism.py` turns them into goals. Every estimator is defined
here and tested on data with a known answer (``tests/srdata_build/test_synth_stats.py``).

* `lag1_autocorrelation` — lag-1 correlation of background pixels along y and x (noise texture:
  white noise 0, a line scanner's detector afterpulses > 0 along its fast axis x, slow background
  variations > 0 along both), specks left out (`without_specks`);
* `mode_fraction` — fraction of background pixels at their most frequent value (the shape of the
  background noise: a detector offset with rare photon events gives a tall mode, symmetric read
  noise of the same std a low one);
* `laplacian_noise` — Immerkær's noise std from the 3 × 3 second-difference mask (insensitive to
  slow variations, lowered by noise correlated between neighbours);
* `nuclei_maxima`, `nearest_neighbour_spacing` — cell scale: maxima of the HR scan smoothed at
  the scale of a nucleus, their median nearest-neighbour distance and their density;
* `tail_ratio` — p90 / p50 of the HR pixels in the ROI (>= 4 grey levels): the bright tail;
* `variance_mean_slope` — slope of the local noise variance against the local mean (shot noise:
  grey levels per photon), from the same Laplacian, robust to edges (per-bin medians).
"""

from __future__ import annotations

import numpy as np

__all__ = [
    "lag1_autocorrelation",
    "mode_fraction",
    "laplacian_noise",
    "nuclei_maxima",
    "nearest_neighbour_spacing",
    "tail_ratio",
    "variance_mean_slope",
    "without_specks",
    "scan_texture_stats",
    "cell_scale_stats",
]

_LAPLACE = np.array([[1.0, -2.0, 1.0], [-2.0, 4.0, -2.0], [1.0, -2.0, 1.0]])
"""Immerkær's mask: zero response to planes, ``sum(mask²) = 36``."""

_CHI2_MEDIAN = 0.454936
"""Median of a χ² variable with one degree of freedom (variance = median of squares / this)."""


def lag1_autocorrelation(img: np.ndarray, mask: np.ndarray) -> tuple[float, float]:
    """Lag-1 autocorrelation of the masked pixels along y and along x.

    Parameters
    ----------
    img : (H, W) array, grey levels
    mask : (H, W) bool
        Pixels to use (background); a pair counts when both of its pixels are in the mask.

    Returns
    -------
    (r_y, r_x) : float
        ``sum(a_i a_j) / sqrt(sum a_i² sum a_j²)`` over the vertical (horizontal) neighbour pairs,
        with ``a`` the image minus the mean of the masked pixels; nan if no pair. AR(1) noise of
        coefficient φ along an axis gives φ along it.
    """
    a = np.asarray(img, np.float64)
    m = np.asarray(mask, bool)
    if not m.any():
        return float("nan"), float("nan")
    a = a - a[m].mean()
    out = []
    for p, q, pm in ((a[:-1], a[1:], m[:-1] & m[1:]), (a[:, :-1], a[:, 1:], m[:, :-1] & m[:, 1:])):
        u, v = p[pm], q[pm]
        den = np.sqrt((u * u).sum() * (v * v).sum())
        out.append(float((u * v).sum() / den) if den > 0 else float("nan"))
    return out[0], out[1]


def mode_fraction(img: np.ndarray, mask: np.ndarray) -> float:
    """Fraction of the masked pixels (integer grey levels) equal to their most frequent value."""
    v = np.asarray(img)[np.asarray(mask, bool)]
    if not v.size:
        return float("nan")
    _, counts = np.unique(v, return_counts=True)
    return float(counts.max() / v.size)


def _laplace_sq(img: np.ndarray) -> np.ndarray:
    """(H-2, W-2) float64: squared Laplacian response / 36 (= the noise variance for white noise)."""
    from scipy.ndimage import correlate

    r = correlate(np.asarray(img, np.float64), _LAPLACE, mode="nearest")[1:-1, 1:-1]
    return r * r / 36.0


def laplacian_noise(img: np.ndarray, mask: np.ndarray) -> float:
    """Immerkær's noise std over the masked pixels (3 × 3 neighbourhood inside the mask), grey levels.

    ``sqrt(mean((L ⊛ img)²) / 36)`` with the second-difference mask L; exact for white noise of any
    distribution, blind to planes, lower than the std for noise correlated between neighbours.
    """
    from scipy.ndimage import binary_erosion

    m = binary_erosion(np.asarray(mask, bool), np.ones((3, 3), bool))[1:-1, 1:-1]
    if not m.any():
        return float("nan")
    return float(np.sqrt(_laplace_sq(img)[m].mean()))


def nuclei_maxima(
    hr: np.ndarray, *, sigma: float = 3.0, size: int = 7, threshold: float = 10.0
) -> np.ndarray:
    """Local maxima of the HR scan smoothed at the scale of a nucleus (one per nucleus, ideally).

    Parameters
    ----------
    hr : (H, W) array, grey levels, HR px
    sigma : float
        Gaussian smoothing, HR px (removes chromatin texture and noise, keeps nuclei apart).
    size : int
        Side of the square neighbourhood a maximum dominates, HR px.
    threshold : float
        Minimum smoothed value of a maximum, grey levels (excludes background and haze).

    Returns
    -------
    (n, 2) int64
        y, x of each maximum.
    """
    from scipy import ndimage as ndi

    g = ndi.gaussian_filter(np.asarray(hr, np.float64), sigma)
    peaks = (g == ndi.maximum_filter(g, size)) & (g >= threshold)
    return np.argwhere(peaks)


def nearest_neighbour_spacing(points: np.ndarray) -> float:
    """Median distance from each point to its nearest neighbour, in the points' unit; nan if < 2."""
    from scipy.spatial import cKDTree

    pts = np.asarray(points, np.float64).reshape(-1, 2)
    if len(pts) < 2:
        return float("nan")
    d, _ = cKDTree(pts).query(pts, k=2)
    return float(np.median(d[:, 1]))


def tail_ratio(hr: np.ndarray, *, roi_threshold: float = 4.0, q: float = 90.0) -> float:
    """p`q` / p50 of the HR pixels >= `roi_threshold` grey levels (the ROI); nan if the ROI is empty."""
    v = np.asarray(hr, np.float64)
    v = v[v >= roi_threshold]
    if not v.size:
        return float("nan")
    return float(np.percentile(v, q) / np.percentile(v, 50))


def variance_mean_slope(img: np.ndarray, *, bins: int = 12, min_count: int = 50) -> float:
    """Slope of local noise variance against local mean (grey levels per photon for shot noise).

    Local mean: 3 × 3 box mean; local variance: ``(L ⊛ img)² / 36`` (Immerkær). Pixels are binned
    by local mean into `bins` quantile bins between the 2nd and the 99th percentile; each bin gives
    its median variance / 0.455 (the median of χ²₁, so Gaussian noise of variance v gives v; the
    median ignores the rare edge pixels where structure leaks into the Laplacian); a straight line
    fitted to (bin mean, bin variance) gives the slope. Structure the Laplacian sees (texture finer
    than 3 px) inflates it alike on real and synthetic scans.

    Parameters
    ----------
    img : (H, W) array, grey levels
    bins : int
    min_count : int
        Bins with fewer pixels are dropped.

    Returns
    -------
    float
        Variance per grey level of mean; nan if fewer than 3 bins.
    """
    from scipy.ndimage import uniform_filter

    a = np.asarray(img, np.float64)
    mean = uniform_filter(a, 3, mode="nearest")[1:-1, 1:-1].ravel()
    var = _laplace_sq(a).ravel()
    edges = np.unique(np.percentile(mean, np.linspace(2, 99, bins + 1)))
    idx = np.digitize(mean, edges[1:-1])
    inside = (mean >= edges[0]) & (mean <= edges[-1])
    xs, ys = [], []
    for b in range(len(edges) - 1):
        sel = inside & (idx == b)
        if sel.sum() >= min_count:
            xs.append(mean[sel].mean())
            ys.append(np.median(var[sel]) / _CHI2_MEDIAN)
    if len(xs) < 3:
        return float("nan")
    return float(np.polyfit(xs, ys, 1)[0])


def without_specks(img: np.ndarray, background: np.ndarray, *, speck: float = 4.0) -> np.ndarray:
    """(n, n) bool: `background` less the pixels within 1 px of a speck (> median + `speck` grey levels).

    Specks (debris, a stray punctum) are rare, bright and a few pixels wide; one speck of two
    pixels side by side in the real /4 scan (22 and 16 grey levels on a background of 1) makes the
    lag-1 correlation along x 0.198 instead of 0.062, so the texture statistics leave them out.
    """
    from scipy.ndimage import binary_dilation

    m = np.asarray(background, bool)
    if not m.any():
        return m
    a = np.asarray(img, np.float64)
    bright = m & (a > np.median(a[m]) + speck)
    return m & ~binary_dilation(bright, np.ones((3, 3), bool))


def scan_texture_stats(img: np.ndarray, background: np.ndarray) -> dict[str, float]:
    """The noise-texture statistics of one scan of a region (background without specks).

    Parameters
    ----------
    img : (n, n) uint8, grey levels
    background : (n, n) bool
        The scan's background pixels; `without_specks` removes the specks first.

    Returns
    -------
    dict
        ``lag1_y``, ``lag1_x``, ``lag1`` (their mean), ``lag1_x_minus_y``, ``mode_fraction``,
        ``laplacian_noise`` (grey levels), ``var_mean_slope`` (grey levels, whole scan) and
        ``texture_px`` (background pixels used).
    """
    background = without_specks(img, background)
    ry, rx = lag1_autocorrelation(img, background)
    return {
        "lag1_y": ry,
        "lag1_x": rx,
        "lag1": (ry + rx) / 2,
        "lag1_x_minus_y": rx - ry,
        "mode_fraction": mode_fraction(img, background),
        "laplacian_noise": laplacian_noise(img, background),
        "var_mean_slope": variance_mean_slope(img),
        "texture_px": int(background.sum()),
    }


def cell_scale_stats(hr: np.ndarray, *, roi_threshold: float = 4.0) -> dict[str, float]:
    """The cell-scale statistics of an HR region: nuclei spacing and density, bright tail.

    Returns
    -------
    dict
        ``nuclei_nn_px`` (median nearest-neighbour distance of `nuclei_maxima`, HR px),
        ``nuclei_per_1e4_roi_px`` (maxima per 100 × 100 HR px of ROI), ``roi_p90_p50``
        (`tail_ratio`).
    """
    pts = nuclei_maxima(hr)
    roi_px = int((np.asarray(hr) >= roi_threshold).sum())
    return {
        "nuclei_nn_px": nearest_neighbour_spacing(pts),
        "nuclei_per_1e4_roi_px": len(pts) / roi_px * 1e4 if roi_px else float("nan"),
        "roi_p90_p50": tail_ratio(hr, roi_threshold=roi_threshold),
    }
