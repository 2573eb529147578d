"""ROI mask (HR CELL2 >= threshold, blockwise with Dask) and the candidate-window index
(docs/protocol.md#sliding-window to #roi-rule).

Everything has a lazy (Dask) form for the build, whose pixels stay on the workers: `roi_mask`
(blockwise comparison), `roi_threshold_lazy` (Otsu from a Dask histogram: 256 counts reach the
caller) and `window_roi_fraction_lazy` (ROI counts per aligned cell, then per window: one small
grid of counts reaches the caller).

Windows are 640² HR squares at stride 256: rows ``i = 0, 256, ...`` while ``i + 640 < H`` (a window
ending exactly at H is excluded), same for columns, row-major. A window is accepted iff its central
128² region (``[256:384]²`` of the window) holds at least ``min_fraction`` ROI pixels.
"""

from __future__ import annotations

from typing import Any, Literal

import numpy as np

from srcaco2.srdata.schema import STRIDE, WINDOW_SIZE

__all__ = [
    "CENTER",
    "roi_threshold",
    "roi_threshold_lazy",
    "roi_mask",
    "window_grid",
    "window_roi_fraction",
    "window_roi_fraction_lazy",
]

CENTER: int = 128
"""Side of the acceptance region at the centre of a window, HR px (docs/protocol.md#roi-rule)."""


def roi_threshold(
    cell2: np.ndarray, *, method: Literal["fixed", "otsu"] = "fixed", threshold: int = 4
) -> int:
    """Integer threshold t such that ROI = ``cell2 >= t``.

    Parameters
    ----------
    cell2 : (y, x) uint8, HR pixels
        The CELL2 plane of a tile (only read for ``method="otsu"``).
    method : {"fixed", "otsu"}
        ``fixed`` returns `threshold` (SR-CACO-2: 4). ``otsu`` uses
        ``skimage.filters.threshold_otsu`` on the plane and keeps ``cell2 >= otsu``, as the
        benchmark's automatic threshold does; for integer images that is ``cell2 >= ceil(otsu)``
        (an integral Otsu value, the usual case for uint8, is itself in the ROI).
    """
    if method == "fixed":
        return int(threshold)
    if method == "otsu":
        return _otsu_from_counts(np.bincount(np.asarray(cell2, dtype=np.uint8).ravel(), minlength=256))
    raise ValueError(f"roi method must be 'fixed' or 'otsu', got {method!r}")


def roi_mask(cell2: Any, threshold: int, *, chunk: int = 512) -> Any:
    """Lazy ROI mask: (y, x) uint8 dask array, 1 where ``cell2 >= threshold`` (computed per block).

    Parameters
    ----------
    cell2 : (y, x) uint8 numpy or dask array, HR pixels
    threshold : int
    chunk : int
        Block edge, HR px (for a numpy input).
    """
    import dask.array as da

    arr = cell2 if isinstance(cell2, da.Array) else da.from_array(np.asarray(cell2), chunks=(chunk, chunk))
    t = int(threshold)
    return arr.map_blocks(lambda b: (b >= t).astype(np.uint8), dtype=np.uint8)


def window_grid(
    height: int, width: int, *, size: int = WINDOW_SIZE, stride: int = STRIDE
) -> tuple[np.ndarray, np.ndarray]:
    """Top-left corners of all candidate windows of an HR tile, row-major.

    Returns
    -------
    y0, x0 : (N,) int32, HR px
        ``y0 = i`` for ``i = 0, stride, ...`` while ``i + size < height``; same for x.
    """
    ys = np.arange(0, max(height - size, 0), stride, dtype=np.int32)
    xs = np.arange(0, max(width - size, 0), stride, dtype=np.int32)
    yy, xx = np.meshgrid(ys, xs, indexing="ij")
    return yy.ravel(), xx.ravel()


def window_roi_fraction(
    mask: np.ndarray, y0: np.ndarray, x0: np.ndarray, *, size: int = WINDOW_SIZE, center: int = CENTER
) -> np.ndarray:
    """Fraction of ROI pixels in the central ``center``² region of each window.

    Parameters
    ----------
    mask : (y, x) uint8 in {0, 1}, HR pixels
    y0, x0 : (N,) int, HR px
        Window corners (`window_grid`).

    Returns
    -------
    (N,) float64
        ``count / center**2`` (compare with the acceptance fraction in float64, store as float32).
    """
    off = (size - center) // 2
    out = np.empty(len(y0), np.float64)
    for n, (y, x) in enumerate(zip(y0, x0, strict=True)):
        region = mask[y + off : y + off + center, x + off : x + off + center]
        out[n] = np.count_nonzero(region) / float(center * center)
    return out


def _otsu_from_counts(counts: np.ndarray) -> int:
    """`roi_threshold` ``method="otsu"`` from the 256-bin histogram of a uint8 plane: ``ceil(otsu)``.

    The one home of the rule, for the in-memory plane and the lazy (Dask) one alike.
    """
    from skimage.filters import threshold_otsu

    nz = np.flatnonzero(counts)
    if len(nz) == 0:
        raise ValueError("empty CELL2 plane: no Otsu threshold")
    lo, hi = int(nz[0]), int(nz[-1])
    if lo == hi:  # a constant image: skimage returns its value, and ``>= otsu`` keeps it
        return lo
    # skimage histograms an integer image over [min, max] with one bin per value
    t = threshold_otsu(hist=(counts[lo : hi + 1], np.arange(lo, hi + 1)))
    return int(np.ceil(t))  # ROI = cell2 >= otsu, as the benchmark's automatic threshold


def roi_threshold_lazy(cell2: Any, *, method: Literal["fixed", "otsu"] = "fixed", threshold: int = 4) -> int:
    """`roi_threshold` of a (y, x) uint8 Dask array: for ``otsu`` only a 256-bin histogram is computed
    (per block, on the workers) and brought back."""
    if method == "fixed":
        return int(threshold)
    if method != "otsu":
        raise ValueError(f"roi method must be 'fixed' or 'otsu', got {method!r}")
    import dask.array as da

    top = 256 if np.dtype(cell2.dtype).itemsize == 1 else 65536  # every grey level of uint8 / uint16
    counts = da.bincount(cell2.ravel(), minlength=top).compute()
    return _otsu_from_counts(np.asarray(counts))


def _block_counts(b: np.ndarray, cell: int) -> np.ndarray:
    h, w = b.shape[0] // cell, b.shape[1] // cell
    v = b[: h * cell, : w * cell].reshape(h, cell, w, cell)
    return np.count_nonzero(v, axis=(1, 3)).astype(np.int64)


def window_roi_fraction_lazy(
    mask: Any, y0: np.ndarray, x0: np.ndarray, *, size: int = WINDOW_SIZE, center: int = CENTER
) -> np.ndarray:
    """`window_roi_fraction` of a (y, x) Dask mask, counted blockwise where the blocks live.

    The central regions ``[y0 + off, y0 + off + center)`` (``off = (size - center) / 2``) are unions
    of ``cell``² cells with ``cell = gcd(off, center, y0's and x0's spacing)``: each block counts the
    ROI pixels of its cells, only that grid of counts (H/cell x W/cell int64) is computed, and
    each window's count is a sum of (center/cell)² cells.

    Returns
    -------
    (N,) float64
        Equal to `window_roi_fraction` on the computed mask.
    """
    import math

    import dask.array as da

    off = (size - center) // 2
    y0 = np.asarray(y0, np.int64)
    x0 = np.asarray(x0, np.int64)
    cell = math.gcd(off, center, *(int(v) for v in np.unique(np.concatenate([y0, x0]))))
    if len(y0) == 0:
        return np.zeros(0, np.float64)
    h, w = mask.shape
    hc, wc = h // cell * cell, w // cell * cell
    m = mask[:hc, :wc]
    step = max(cell, max(m.chunksize) // cell * cell)
    m = m.rechunk((step, step))
    counts = np.asarray(
        da.map_blocks(_block_counts, m, cell, dtype=np.int64, chunks=tuple(
            tuple(c // cell for c in ch) for ch in m.chunks
        )).compute()
    )  # fmt: skip
    k = center // cell
    csum = np.zeros((counts.shape[0] + 1, counts.shape[1] + 1), np.int64)
    csum[1:, 1:] = counts.cumsum(0).cumsum(1)
    iy = (y0 + off) // cell
    ix = (x0 + off) // cell
    tot = csum[iy + k, ix + k] - csum[iy, ix + k] - csum[iy + k, ix] + csum[iy, ix]
    return tot / float(center * center)
