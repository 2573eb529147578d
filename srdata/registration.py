"""Per-window LR↔HR registration (SPEC §2.5): integer shift from the mean TV-L1 optical flow.

For one accepted 640² window, one marker and one scale s: the LR (640/s)² window is upsampled to
640² by pixel repetition (PIL NEAREST for an integer factor), ``skimage.registration.optical_flow_tvl1``
(default parameters) estimates the flow (v, u) from the HR plane (reference) to it, and the shift
is ``(round(mean v), round(mean u))`` in HR pixels. The store keeps the shift in the index;
`srdata.schema.read_lr_patch` applies it exactly as the original warp + crop + downsample did.

TV-L1 in skimage holds the GIL (threads do not help): `register_windows` runs windows in a process
pool (forkserver/spawn), on the active Dask scheduler (a ``dask.distributed`` client), or serially,
and reports each finished window (``on_result``) so a caller can persist it and resume later.
"""

from __future__ import annotations

import logging
import os
from collections.abc import Callable
from typing import Any, Literal

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
    hr: np.ndarray,
    lrs: dict[int, np.ndarray],
    scales: tuple[int, ...] = SCALES,
    markers: tuple[int, ...] | None = None,
) -> np.ndarray:
    """All shifts of one window: (markers, scales, 2) int16.

    Parameters
    ----------
    hr : (c, 640, 640) uint8, HR pixels
    lrs : dict of int to (c, 640/s, 640/s) uint8
    scales : tuple of int
        Scales to register; the others keep shift 0.
    markers : tuple of int, optional
        Channel indices (into `MARKERS`) to register, default all; the others keep shift 0.
        ``hr`` / ``lrs`` may hold only these channels (in this order) or all of them.
    """
    chans = tuple(range(len(MARKERS))) if markers is None else tuple(markers)
    out = np.zeros((len(MARKERS), len(SCALES), 2), np.int16)
    for i, c in enumerate(chans):
        plane = i if hr.shape[0] == len(chans) else c
        for k, s in enumerate(SCALES):
            if s in scales:
                out[c, k] = window_shift(hr[plane], lrs[s][plane], s)
    return out


def _mp_context() -> Any:
    import multiprocessing as mp

    return mp.get_context("forkserver" if "forkserver" in mp.get_all_start_methods() else "spawn")


def register_windows(
    hr: np.ndarray,
    lrs: dict[int, np.ndarray],
    y0: np.ndarray,
    x0: np.ndarray,
    *,
    scales: tuple[int, ...] = SCALES,
    markers: tuple[int, ...] | None = None,
    pool: Literal["processes", "dask", "serial"] = "processes",
    workers: int | None = None,
    known: dict[int, np.ndarray] | None = None,
    on_result: Callable[[int, np.ndarray], None] | None = None,
    progress: Callable[[int], None] | None = None,
) -> np.ndarray:
    """Shifts of many windows of one tile.

    Parameters
    ----------
    hr : (c, H, W) uint8, HR pixels
    lrs : dict of int to (c, H/s, W/s) uint8
        LR acquisitions.
    y0, x0 : (N,) int, HR px
        Window corners (multiples of 8).
    scales : tuple of int
        Scales to register (default all); the others keep shift 0.
    markers : tuple of int, optional
        Channel indices to register (default all); the others keep shift 0.
    pool : {"processes", "dask", "serial"}
        ``processes``: a `concurrent.futures.ProcessPoolExecutor` (forkserver/spawn context;
        skimage's TV-L1 holds the GIL, threads do not help); ``dask``: the active Dask scheduler
        (e.g. a ``dask.distributed`` client), in batches; ``serial``: in this process.
    workers : int, optional
        Process count (default ``os.cpu_count()``).
    known : dict of int to (markers, scales, 2) int16, optional
        Shifts already computed (window position -> shift), e.g. from an interrupted build; not redone.
    on_result : callable, optional
        ``on_result(n, shift)`` for each newly computed window, in completion order (persist it).
    progress : callable, optional
        Called with the number of windows finished so far (known ones included).

    Returns
    -------
    (N, markers, scales, 2) int16
        ``shift[n, marker, scale_i] = (dy, dx)``, HR px.
    """
    n = len(y0)
    out = np.zeros((n, len(MARKERS), len(SCALES), 2), np.int16)
    known = known or {}
    for k, v in known.items():
        out[int(k)] = v
    todo = [k for k in range(n) if k not in known]
    if not todo:
        return out
    chans = tuple(range(len(MARKERS))) if markers is None else tuple(markers)
    scales = tuple(s for s in SCALES if s in scales)
    w = WINDOW_SIZE

    def task(k: int) -> tuple[np.ndarray, dict[int, np.ndarray], tuple[int, ...], tuple[int, ...]]:
        y, x = int(y0[k]), int(x0[k])
        hw = np.ascontiguousarray(hr[list(chans), y : y + w, x : x + w])
        lw = {s: np.ascontiguousarray(lrs[s][list(chans), y // s : (y + w) // s, x // s : (x + w) // s])
              for s in scales}  # fmt: skip
        return hw, lw, scales, chans

    finished = n - len(todo)

    def done(k: int, shift: np.ndarray) -> None:
        nonlocal finished
        out[k] = shift
        finished += 1
        if on_result is not None:
            on_result(k, out[k])
        if progress is not None:
            progress(finished)

    if pool == "serial":
        for k in todo:
            done(k, register_window(*task(k)))
    elif pool == "dask":
        import dask

        batch = 16
        for b in range(0, len(todo), batch):
            part = todo[b : b + batch]
            res = dask.compute(*(dask.delayed(register_window, pure=True)(*task(k)) for k in part))
            for k, r in zip(part, res, strict=True):
                done(k, r)
    elif pool == "processes":
        from concurrent.futures import FIRST_COMPLETED, ProcessPoolExecutor, wait

        nproc = max(1, min(int(workers or os.cpu_count() or 1), len(todo)))
        pending = iter(todo)
        from srdata import _lifeline

        # the lifeline: pool processes exit within seconds if this process dies (even by kill -9)
        with ProcessPoolExecutor(nproc, mp_context=_mp_context(), initializer=_lifeline.initializer()) as ex:
            running = {}
            for k in pending:  # at most 2 windows in flight per process: bounded memory
                running[ex.submit(register_window, *task(k))] = k
                if len(running) >= 2 * nproc:
                    break
            while running:
                ready, _ = wait(running, return_when=FIRST_COMPLETED)
                for fut in ready:
                    done(running.pop(fut), fut.result())
                for k in pending:
                    running[ex.submit(register_window, *task(k))] = k
                    if len(running) >= 2 * nproc:
                        break
    else:
        raise ValueError(f"pool={pool!r}: use 'processes', 'dask' or 'serial'")
    return out
