"""Per-window LR↔HR registration (docs/protocol.md#registration): integer shift from the mean TV-L1 optical
flow.

For one accepted 640² window, one marker and one scale s: the LR (640/s)² window is upsampled to
640² by pixel repetition (PIL NEAREST for an integer factor), TV-L1 (skimage's algorithm with its
default parameters) estimates the flow (v, u) from the HR plane (reference) to it, and the shift
is ``(round(mean v), round(mean u))`` in HR pixels. The store keeps the shift in the index;
`srcaco2.srdata.schema.read_lr_patch` applies it exactly as the original warp + crop + downsample did.

Two implementations of the same TV-L1 (`IMPLEMENTATIONS`): ``numba`` (default,
`srcaco2.srdata.registration.tvl1`, 13-20x faster on one core, the same flows, releases the GIL)
and ``skimage`` (``skimage.registration.optical_flow_tvl1``, the reference; holds the GIL).

Many windows run as a *stream* (`stream_tasks`): tasks are submitted to a pool - threads, a
process pool (forkserver/spawn), the active ``dask.distributed`` client, or this process - with a
bounded number in flight, and each result is handed back in completion order (``on_result``), so
a caller can persist it at once and resume later. `register_store_windows` is the build's entry:
its tasks read their own windows from the store being written and return only the shifts.
"""

from __future__ import annotations

import functools
import logging
import os
from collections.abc import Callable, Iterable, Iterator
from typing import Any, Literal

import numpy as np

from srcaco2.srdata.schema import MARKERS, SCALES, WINDOW_SIZE

__all__ = [
    "DEFAULT_IMPLEMENTATION",
    "IMPLEMENTATIONS",
    "POOLS",
    "optical_flow",
    "register_store_windows",
    "register_window",
    "register_windows",
    "stream_tasks",
    "upsample_nearest",
    "window_flow_mean",
    "window_shift",
]

log = logging.getLogger(__name__)

IMPLEMENTATIONS: tuple[str, ...] = ("numba", "skimage")
"""TV-L1 implementations: the compiled one (default) and skimage's (the reference)."""
DEFAULT_IMPLEMENTATION = "numba"
POOLS: tuple[str, ...] = ("threads", "processes", "dask", "serial")
"""Where `stream_tasks` runs tasks (see there)."""

Implementation = Literal["numba", "skimage"]
Pool = Literal["threads", "processes", "dask", "serial"]


def _check_implementation(implementation: str) -> None:
    if implementation not in IMPLEMENTATIONS:
        raise ValueError(
            f"registration implementation {implementation!r}: use one of {list(IMPLEMENTATIONS)}"
        )


def upsample_nearest(lr: np.ndarray, scale: int) -> np.ndarray:
    """(y, x) -> (y*s, x*s) by repetition (= PIL NEAREST resize by an integer factor)."""
    return np.repeat(np.repeat(np.asarray(lr), scale, axis=0), scale, axis=1)


def optical_flow(
    reference: np.ndarray, moving: np.ndarray, implementation: str = DEFAULT_IMPLEMENTATION
) -> np.ndarray:
    """TV-L1 flow with skimage's default parameters: (2, M, N) float32 (v rows, u columns), px.

    Parameters
    ----------
    reference, moving : (M, N) uint8
    implementation : {"numba", "skimage"}
    """
    _check_implementation(implementation)
    if implementation == "numba":
        from srcaco2.srdata.registration.tvl1 import optical_flow_tvl1
    else:
        from skimage.registration import optical_flow_tvl1
    return optical_flow_tvl1(reference, moving)


def window_flow_mean(
    hr_win: np.ndarray, lr_win: np.ndarray, scale: int, implementation: str = DEFAULT_IMPLEMENTATION
) -> tuple[np.float32, np.float32]:
    """Unrounded registration shift (dy, dx) of one marker window: the mean TV-L1 flow, HR px.

    Parameters as in `window_shift`. Returns the float32 means of v (rows) and u (columns);
    `window_shift` is their rounding (the store's ``shift``), the sub-pixel alignment
    (``index/shift_subpixel``, `srcaco2.srdata.registration.subpixel`) keeps them as they are.
    """
    up = upsample_nearest(lr_win, scale)
    if up.shape != hr_win.shape:
        raise ValueError(f"LR window {lr_win.shape} x{scale} does not match HR window {hr_win.shape}")
    v, u = optical_flow(hr_win, up, implementation)
    return v.mean(), u.mean()


def window_shift(
    hr_win: np.ndarray, lr_win: np.ndarray, scale: int, implementation: str = DEFAULT_IMPLEMENTATION
) -> tuple[int, int]:
    """Registration shift (dy, dx) of one marker window, HR px.

    Parameters
    ----------
    hr_win : (640, 640) uint8, HR pixels
    lr_win : (640/s, 640/s) uint8, LR pixels of the /`scale` acquisition (same window)
    scale : int
    implementation : {"numba", "skimage"}

    Returns
    -------
    (dy, dx) : tuple of int
        Rounded means of the TV-L1 flow components v (rows) and u (columns) (`window_flow_mean`).
    """
    v, u = window_flow_mean(hr_win, lr_win, scale, implementation)
    return int(np.round(v)), int(np.round(u))


def register_window(
    hr: np.ndarray,
    lrs: dict[int, np.ndarray],
    scales: tuple[int, ...] = SCALES,
    markers: tuple[int, ...] | None = None,
    implementation: str = DEFAULT_IMPLEMENTATION,
    *,
    axes: tuple[int, tuple[int, ...]] | None = None,
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
    implementation : {"numba", "skimage"}
    axes : (n_markers, scales), optional
        The store's shift axes (`srcaco2.srdata.schema.shift_axes`); default SR-CACO-2's.
    """
    n_markers, all_scales = axes or (len(MARKERS), SCALES)
    chans = tuple(range(n_markers)) if markers is None else tuple(markers)
    out = np.zeros((n_markers, len(all_scales), 2), np.int16)
    for i, c in enumerate(chans):
        plane = i if hr.shape[0] == len(chans) else c
        for k, s in enumerate(all_scales):
            if s in scales:
                out[c, k] = window_shift(hr[plane], lrs[s][plane], s, implementation)
    return out


@functools.lru_cache(maxsize=4)
def _open_store(store: str) -> Any:
    from srcaco2.srdata.store import Store

    return Store.open(store)


def _store_window_shift(
    store: str,
    tile: Any,
    y: int,
    x: int,
    scales: tuple[int, ...],
    chans: tuple[int, ...],
    implementation: str,
    axes: tuple[int, tuple[int, ...]],
    w: int,
) -> np.ndarray:
    """Task body: read one window's planes from the store (level 0) and register it.

    Returns (markers, scales, 2) int16 only: the pixels never leave the worker.
    """
    st = _open_store(store)
    hr_arr = st.tile_image(tile, 1)
    hw = np.stack([hr_arr[c, y : y + w, x : x + w] for c in chans])
    lw = {}
    for s in scales:
        arr = st.tile_image(tile, s)
        lw[s] = np.stack([arr[c, y // s : (y + w) // s, x // s : (x + w) // s] for c in chans])
    return register_window(hw, lw, scales, chans, implementation, axes=axes)


def _mp_context() -> Any:
    import multiprocessing as mp

    return mp.get_context("forkserver" if "forkserver" in mp.get_all_start_methods() else "spawn")


def _dask_client() -> Any:
    try:
        from distributed import default_client

        return default_client()
    except (ImportError, ValueError):
        raise ValueError(
            "pool='dask' needs an active dask.distributed Client (e.g. `--scheduler tcp://host:8786`); "
            "use pool='threads' or 'processes' for a local run"
        ) from None


def stream_tasks(
    fn: Callable[..., Any],
    tasks: Iterable[tuple[Any, tuple[Any, ...]]],
    *,
    pool: Pool = "threads",
    workers: int | None = None,
    max_in_flight: int | None = None,
) -> Iterator[tuple[Any, Any]]:
    """Run ``fn(*args)`` for each ``(key, args)`` of `tasks`; yield ``(key, result)`` as they finish.

    Parameters
    ----------
    fn : callable
        Module-level function (pickled for processes and dask).
    tasks : iterable of (key, args)
        Consumed lazily: at most `max_in_flight` tasks are submitted and not yet yielded.
    pool : {"threads", "processes", "dask", "serial"}
        ``threads``: a `concurrent.futures.ThreadPoolExecutor` (for GIL-free work such as the numba
        TV-L1); ``processes``: a `concurrent.futures.ProcessPoolExecutor` (forkserver/spawn);
        ``dask``: futures of the active ``dask.distributed`` client; ``serial``: in this thread.
    workers : int, optional
        Threads/processes of a local pool (default ``os.cpu_count()``).
    max_in_flight : int, optional
        Bound on submitted, unfinished tasks (default twice the pool's threads): memory stays
        bounded and results stream back while later tasks run.

    Yields
    ------
    (key, result)
        In completion order. An exception of a task is raised here (the pool is shut down,
        queued tasks are cancelled).
    """
    it = iter(tasks)
    if pool == "serial":
        for key, args in it:
            yield key, fn(*args)
        return
    if pool == "dask":
        from distributed import as_completed

        client = _dask_client()
        nthreads = max(1, sum(client.nthreads().values()))
        bound = max(1, int(max_in_flight or 2 * nthreads))
        keys: dict[Any, Any] = {}
        first = []
        for key, args in it:
            fut = client.submit(fn, *args, pure=False)
            keys[fut] = key
            first.append(fut)
            if len(first) >= bound:
                break
        if not first:
            return
        queue = as_completed(first)
        try:
            for fut in queue:
                key = keys.pop(fut)
                result = fut.result()
                fut.release()
                for nkey, nargs in it:
                    nfut = client.submit(fn, *nargs, pure=False)
                    keys[nfut] = nkey
                    queue.add(nfut)
                    break
                yield key, result
        finally:
            for fut in keys:
                fut.cancel()
        return
    from concurrent.futures import FIRST_COMPLETED, ProcessPoolExecutor, ThreadPoolExecutor, wait

    nproc = max(1, int(workers or os.cpu_count() or 1))
    bound = max(1, int(max_in_flight or 2 * nproc))
    if pool == "threads":
        ex: Any = ThreadPoolExecutor(nproc, thread_name_prefix="srdata-reg")
    elif pool == "processes":
        from srcaco2.srdata import _lifeline

        # the lifeline: pool processes exit within seconds if this process dies (even by kill -9)
        ex = ProcessPoolExecutor(nproc, mp_context=_mp_context(), initializer=_lifeline.initializer())
    else:
        raise ValueError(f"pool={pool!r}: use one of {list(POOLS)}")
    running: dict[Any, Any] = {}
    try:
        for key, args in it:
            running[ex.submit(fn, *args)] = key
            if len(running) >= bound:
                break
        while running:
            ready, _ = wait(running, return_when=FIRST_COMPLETED)
            for fut in ready:
                key = running.pop(fut)
                result = fut.result()
                for nkey, nargs in it:
                    running[ex.submit(fn, *nargs)] = nkey
                    break
                yield key, result
    finally:
        for fut in running:
            fut.cancel()
        ex.shutdown(wait=True, cancel_futures=True)


def _collect(
    stream: Iterator[tuple[int, np.ndarray]],
    out: np.ndarray,
    finished: int,
    on_result: Callable[[int, np.ndarray], None] | None,
    progress: Callable[[int], None] | None,
) -> np.ndarray:
    for k, shift in stream:
        out[k] = shift
        finished += 1
        if on_result is not None:
            on_result(k, out[k])
        if progress is not None:
            progress(finished)
    return out


def _prepare(
    n: int,
    known: dict[int, np.ndarray] | None,
    markers: tuple[int, ...] | None,
    scales: tuple[int, ...],
    axes: tuple[int, tuple[int, ...]],
) -> tuple[np.ndarray, list[int], tuple[int, ...], tuple[int, ...]]:
    n_markers, all_scales = axes
    out = np.zeros((n, n_markers, len(all_scales), 2), np.int16)
    for k, v in (known or {}).items():
        out[int(k)] = v
    todo = [k for k in range(n) if k not in (known or {})]
    chans = tuple(range(n_markers)) if markers is None else tuple(markers)
    return out, todo, chans, tuple(s for s in all_scales if s in scales)


def register_windows(
    hr: np.ndarray,
    lrs: dict[int, np.ndarray],
    y0: np.ndarray,
    x0: np.ndarray,
    *,
    scales: tuple[int, ...] = SCALES,
    markers: tuple[int, ...] | None = None,
    pool: Pool = "processes",
    workers: int | None = None,
    known: dict[int, np.ndarray] | None = None,
    on_result: Callable[[int, np.ndarray], None] | None = None,
    progress: Callable[[int], None] | None = None,
    implementation: str = DEFAULT_IMPLEMENTATION,
) -> np.ndarray:
    """Shifts of many windows of one in-memory tile (each task gets its window's pixels).

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
    pool : {"threads", "processes", "dask", "serial"}
        See `stream_tasks`.
    workers : int, optional
        Pool size (default ``os.cpu_count()``).
    known : dict of int to (markers, scales, 2) int16, optional
        Shifts already computed (window position -> shift), e.g. from an interrupted build; not redone.
    on_result : callable, optional
        ``on_result(n, shift)`` for each newly computed window, in completion order (persist it).
    progress : callable, optional
        Called with the number of windows finished so far (known ones included).
    implementation : {"numba", "skimage"}

    Returns
    -------
    (N, markers, scales, 2) int16
        ``shift[n, marker, scale_i] = (dy, dx)``, HR px.
    """
    _check_implementation(implementation)
    out, todo, chans, scales = _prepare(len(y0), known, markers, scales, (len(MARKERS), SCALES))
    w = WINDOW_SIZE

    def tasks() -> Iterator[tuple[int, tuple[Any, ...]]]:
        for k in todo:
            y, x = int(y0[k]), int(x0[k])
            hw = np.ascontiguousarray(hr[list(chans), y : y + w, x : x + w])
            lw = {s: np.ascontiguousarray(lrs[s][list(chans), y // s : (y + w) // s, x // s : (x + w) // s])
                  for s in scales}  # fmt: skip
            yield k, (hw, lw, scales, chans, implementation)

    if not todo:
        return out
    stream = stream_tasks(register_window, tasks(), pool=pool, workers=workers)
    return _collect(stream, out, len(y0) - len(todo), on_result, progress)


def register_store_windows(
    store: str,
    tile: int,
    y0: np.ndarray,
    x0: np.ndarray,
    *,
    scales: tuple[int, ...] = SCALES,
    markers: tuple[int, ...] | None = None,
    pool: Pool = "threads",
    workers: int | None = None,
    max_in_flight: int | None = None,
    known: dict[int, np.ndarray] | None = None,
    on_result: Callable[[int, np.ndarray], None] | None = None,
    progress: Callable[[int], None] | None = None,
    implementation: str = DEFAULT_IMPLEMENTATION,
) -> np.ndarray:
    """Shifts of many windows of one tile already written to `store` (level 0 of HR and LR).

    Each task opens the store itself (read only), reads its window's registered planes and returns
    a (markers, scales, 2) int16 shift: no pixel passes through the caller. Parameters as in
    `register_windows`; `store` is the store's path or fsspec URL (as the workers see it).

    Returns
    -------
    (N, markers, scales, 2) int16
    """
    _check_implementation(implementation)
    st = _open_store(str(store))
    axes, w = st.shift_axes, st.geometry.size
    out, todo, chans, scales = _prepare(len(y0), known, markers, scales, axes)
    if not todo:
        return out
    tasks = (
        (k, (str(store), tile, int(y0[k]), int(x0[k]), scales, chans, implementation, axes, w)) for k in todo
    )
    stream = stream_tasks(_store_window_shift, tasks, pool=pool, workers=workers, max_in_flight=max_in_flight)
    return _collect(stream, out, len(y0) - len(todo), on_result, progress)
