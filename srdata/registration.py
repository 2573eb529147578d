"""Per-window LR↔HR registration (SPEC §2.5): integer shift from the mean TV-L1 optical flow.

For one accepted 640² window, one marker and one scale s: the LR (640/s)² window is upsampled to
640² by pixel repetition (PIL NEAREST for an integer factor), ``skimage.registration.optical_flow_tvl1``
(default parameters) estimates the flow (v, u) from the HR plane (reference) to it, and the shift
is ``(round(mean v), round(mean u))`` in HR pixels. The store keeps the shift in the index;
`srdata.schema.read_lr_patch` applies it exactly as the original warp + crop + downsample did.
"""

from __future__ import annotations

import logging
from collections.abc import Callable

import numpy as np

from srdata.schema import MARKERS, SCALES, WINDOW_SIZE

__all__ = ["upsample_nearest", "window_shift", "register_window", "register_windows"]

log = logging.getLogger(__name__)


def upsample_nearest(lr: np.ndarray, scale: int) -> np.ndarray:
    """(y, x) -> (y*s, x*s) by repetition (= PIL NEAREST resize by an integer factor)."""
    return np.repeat(np.repeat(np.asarray(lr), scale, axis=0), scale, axis=1)


def window_shift(hr_win: np.ndarray, lr_win: np.ndarray, scale: int) -> tuple[int, int]:
    """Registration shift (dy, dx) of one marker window, HR px.

    Parameters
    ----------
    hr_win : (640, 640) uint8, HR pixels
    lr_win : (640/s, 640/s) uint8, LR pixels of the /`scale` acquisition (same window)
    scale : int

    Returns
    -------
    (dy, dx) : tuple of int
        Rounded means of the TV-L1 flow components v (rows) and u (columns).
    """
    from skimage.registration import optical_flow_tvl1

    up = upsample_nearest(lr_win, scale)
    if up.shape != hr_win.shape:
        raise ValueError(f"LR window {lr_win.shape} x{scale} does not match HR window {hr_win.shape}")
    v, u = optical_flow_tvl1(hr_win, up)
    return int(np.round(v.mean())), int(np.round(u.mean()))


def register_window(
    hr: np.ndarray, lrs: dict[int, np.ndarray], scales: tuple[int, ...] = SCALES
) -> np.ndarray:
    """All shifts of one window: (markers, scales, 2) int16 from (c, 640, 640) HR and (c, 640/s, 640/s) LR."""
    out = np.zeros((len(MARKERS), len(SCALES), 2), np.int16)
    for c in range(hr.shape[0]):
        for k, s in enumerate(SCALES):
            if s in scales:
                out[c, k] = window_shift(hr[c], lrs[s][c], s)
    return out


def register_windows(
    hr: np.ndarray,
    lrs: dict[int, np.ndarray],
    y0: np.ndarray,
    x0: np.ndarray,
    *,
    scales: tuple[int, ...] = SCALES,
    progress: Callable[[int], None] | None = None,
) -> np.ndarray:
    """Shifts of many windows of one tile, computed in parallel with the active Dask scheduler.

    Parameters
    ----------
    hr : (c, H, W) uint8, HR pixels
    lrs : dict of int to (c, H/s, W/s) uint8
        LR acquisitions.
    y0, x0 : (N,) int, HR px
        Window corners (multiples of 8).
    progress : callable, optional
        Called with the number of windows finished so far (in batches).

    Returns
    -------
    (N, markers, scales, 2) int16
        ``shift[n, marker, scale_i] = (dy, dx)``, HR px.
    """
    import dask

    n = len(y0)
    out = np.zeros((n, len(MARKERS), len(SCALES), 2), np.int16)
    if n == 0:
        return out
    w = WINDOW_SIZE
    tasks = []
    for y, x in zip(y0, x0, strict=True):
        y, x = int(y), int(x)
        hw = np.ascontiguousarray(hr[:, y : y + w, x : x + w])
        lw = {
            s: np.ascontiguousarray(lrs[s][:, y // s : (y + w) // s, x // s : (x + w) // s]) for s in scales
        }
        tasks.append(dask.delayed(register_window, pure=True)(hw, lw, scales))
    batch = 16
    for b in range(0, n, batch):
        res = dask.compute(*tasks[b : b + batch])
        out[b : b + len(res)] = np.stack(res)
        if progress is not None:
            progress(b + len(res))
    return out
