"""ROI mask (HR CELL2 >= threshold, blockwise with Dask) and the candidate-window index (SPEC §2.2-2.3).

Windows are 640² HR squares at stride 256: rows ``i = 0, 256, ...`` while ``i + 640 < H`` (a window
ending exactly at H is excluded), same for columns, row-major. A window is accepted iff its central
128² region (``[256:384]²`` of the window) holds at least ``min_fraction`` ROI pixels.
"""

from __future__ import annotations

from typing import Any, Literal

import numpy as np

from srdata.schema import STRIDE, WINDOW_SIZE

__all__ = ["CENTER", "roi_threshold", "roi_mask", "window_grid", "window_roi_fraction"]

CENTER: int = 128
"""Side of the acceptance region at the centre of a window, HR px (SPEC §2.3)."""


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
        from skimage.filters import threshold_otsu

        return int(np.ceil(threshold_otsu(np.asarray(cell2))))
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
