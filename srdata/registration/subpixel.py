"""Sub-pixel registration shifts of a built store: the index column ``shift_subpixel`` (beyond the paper).

The benchmark keeps, per window, marker and scale, the *rounded* mean TV-L1 flow (``index/shift``,
integer HR px) and then moves the LR patch only by whole LR pixels
(`srcaco2.srdata.schema.lr_patch_origin`), so up to s/2 + 1/2 HR px of misalignment stay in every
score. This module estimates the same quantity with the same algorithm (`window_flow_mean`: the
upsampled LR window against the HR window, TV-L1 with skimage's defaults) but keeps it unrounded,
float32 HR px, in ``index/shift_subpixel`` (shape (N, markers, scales, 2), NaN = not estimated).
``shift`` is never touched: the paper's rule stays byte-identical.
`srcaco2.trainers.alignment` applies the column (``--alignment subpixel``).

Only the windows one evaluates need it (a split, some markers and scales): `write_subpixel_shifts`
estimates the missing entries of the chosen windows (one TV-L1 per window, marker and scale; the
numba implementation takes ~0.1-0.3 s per 640² estimate on one core) and rewrites the column,
keeping what was estimated before. ``srdata register-subpixel STORE`` is its command.
"""

from __future__ import annotations

import dataclasses
import logging
import os
from collections.abc import Callable, Iterator, Sequence
from typing import Any

import numpy as np

from srcaco2.srdata.lease import leased
from srcaco2.srdata.registration import (
    DEFAULT_IMPLEMENTATION,
    Pool,
    _check_implementation,
    _open_store,
    stream_tasks,
    window_flow_mean,
)
from srcaco2.srdata.schema import (
    SPLITS,
    split_code,
)

__all__ = ["SUBPIXEL_COLUMN", "SubpixelReport", "store_window_flows", "write_subpixel_shifts"]

log = logging.getLogger(__name__)

SUBPIXEL_COLUMN: str = "shift_subpixel"
"""Index column of the unrounded shifts (`srcaco2.srdata.schema.INDEX_COLUMNS`)."""


@dataclasses.dataclass(frozen=True)
class SubpixelReport:
    """What `write_subpixel_shifts` did.

    Attributes
    ----------
    windows : int
        Windows selected (split(s), accepted).
    estimated : int
        TV-L1 estimates run now (window × marker × scale entries that were NaN).
    kept : int
        Entries of the selection already estimated before (not redone).
    """

    windows: int
    estimated: int
    kept: int


def store_window_flows(
    store: str,
    tile: int,
    y0: int,
    x0: int,
    pairs: tuple[tuple[str, int], ...],
    implementation: str = DEFAULT_IMPLEMENTATION,
) -> np.ndarray:
    """Task body: unrounded shifts of one window of `store`, for the (marker, scale) `pairs`.

    Parameters
    ----------
    store : path or URL of the store (opened read only, cached per process)
    tile, y0, x0 : the window (top-left in HR px)
    pairs : tuple of (marker name, scale)
    implementation : {"numba", "skimage"}

    Returns
    -------
    (markers, scales, 2) float32, on the store's shift axes (`Store.shift_slot`)
        (dy, dx) HR px for the requested pairs, NaN elsewhere.
    """
    st = _open_store(store)
    w = st.geometry.size
    n_markers, axis = st.shift_axes
    out = np.full((n_markers, len(axis), 2), np.nan, np.float32)
    hr_arr = st.tile_image(tile, 1)
    for m, s in pairs:
        c, (i, k) = st.marker_index(m), st.shift_slot(m, s)
        hw = np.asarray(hr_arr[c, y0 : y0 + w, x0 : x0 + w])
        lw = np.asarray(st.tile_image(tile, s)[c, y0 // s : (y0 + w) // s, x0 // s : (x0 + w) // s])
        out[i, k] = window_flow_mean(hw, lw, s, implementation)
    return out


def _selection(
    st: Any, splits: Sequence[str] | None, markers: Sequence[str] | None, scales: Sequence[int] | None
) -> tuple[list[int], list[tuple[str, int]], str]:
    """(split codes, (marker, scale) pairs, text) of a request, checked against the store."""
    splits = list(splits) if splits else ["val", "test"]
    for sp in splits:
        if sp not in SPLITS:
            raise ValueError(f"split {sp!r} is not one of {', '.join(SPLITS)}")
    markers = list(markers) if markers else list(st.markers)
    for m in markers:
        if m not in st.markers:
            raise ValueError(f"marker {m!r} is not in the store; it holds {', '.join(st.markers)}")
    scales = [int(s) for s in scales] if scales else list(st.scales)
    for s in scales:
        if s not in st.scales:
            raise ValueError(f"scale {s} is not in the store; it holds scales {list(st.scales)}")
    text = (
        f"split(s) {','.join(splits)}, marker(s) {','.join(markers)}, scale(s) {','.join(map(str, scales))}"
    )
    return [split_code(sp) for sp in splits], [(m, s) for m in markers for s in scales], text


def _write_column(root: Any, col: np.ndarray) -> None:
    """(Re)write ``index/shift_subpixel`` as the writer writes index columns (one chunk, checksummed)."""
    from srcaco2.srdata.integrity import record_manifest
    from srcaco2.srdata.store import ARRAY_CONFIG, compressors, index_path

    chunks = (max(len(col), 1), *col.shape[1:])
    arr = root.create_array(
        index_path(SUBPIXEL_COLUMN), shape=col.shape, dtype=col.dtype, chunks=chunks,
        compressors=compressors(), overwrite=True, config=ARRAY_CONFIG,
    )  # fmt: skip
    arr[...] = col
    record_manifest(arr)


@leased("srdata register-subpixel")  # one writer per store
def write_subpixel_shifts(
    store: str,
    *,
    splits: Sequence[str] | None = None,
    markers: Sequence[str] | None = None,
    scales: Sequence[int] | None = None,
    overwrite: bool = False,
    pool: Pool = "threads",
    workers: int | None = None,
    implementation: str = DEFAULT_IMPLEMENTATION,
    progress: Callable[[int, int], None] | None = None,
) -> SubpixelReport:
    """Estimate the unrounded shifts of a store's windows and write ``index/shift_subpixel``.

    Parameters
    ----------
    store : path or fsspec URL of a built store (its index complete)
    splits : split names, default ``("val", "test")`` (what `srtrain fit` validates on and
        `srtrain eval` scores); only accepted windows of these splits are estimated
    markers : marker names, default all of the store's
    scales : scales, default all of the store's
    overwrite : bool
        Re-estimate entries that already hold a value (default: keep them, estimate the NaN ones).
    pool, workers : where the TV-L1 tasks run (`srcaco2.srdata.registration.stream_tasks`)
    implementation : {"numba", "skimage"}
        The TV-L1 implementation (the build's default, numba, gives skimage's flows).
    progress : callable, optional
        ``progress(done, total)`` windows, after each one.

    Returns
    -------
    SubpixelReport

    Raises
    ------
    StoreFormatError
        Not a store, or its index is incomplete.
    ValueError
        A split / marker / scale the store does not hold, or no accepted window in the splits.
    """
    from srcaco2.srdata.store import Store

    _check_implementation(implementation)
    st = Store.open(store, mode="r+")
    index = st.index()
    codes, wanted_pairs, text = _selection(st, splits, markers, scales)
    slots = {p: st.shift_slot(*p) for p in wanted_pairs}
    col = np.array(index[SUBPIXEL_COLUMN], np.float32, copy=True)
    rows = np.flatnonzero(np.isin(index["split"], codes) & index["accepted"])
    if not len(rows):
        raise ValueError(f"{store}: no accepted window in {text}; nothing to register")
    if overwrite:
        for i, k in slots.values():
            col[rows, i, k] = np.nan
    todo: list[tuple[int, tuple[tuple[str, int], ...]]] = []
    kept = 0
    for r in rows:
        pairs = tuple(p for p, (i, k) in slots.items() if np.isnan(col[r, i, k]).any())
        kept += len(slots) - len(pairs)
        if pairs:
            todo.append((int(r), pairs))
    n_est = sum(len(p) for _, p in todo)
    log.info("%s: %d windows of %s, %d estimates to run, %d kept", store, len(rows), text, n_est, kept)
    url = str(store) if "://" in str(store) else os.path.abspath(str(store))
    wanted = dict(todo)

    def tasks() -> Iterator[tuple[int, tuple[Any, ...]]]:
        for r, pairs in todo:
            args = (
                url,
                index["tile"][r].item() if hasattr(index["tile"][r], "item") else index["tile"][r],
                int(index["y0"][r]),
                int(index["x0"][r]),
                pairs,
                implementation,
            )
            yield r, args

    done = 0
    for r, got in stream_tasks(store_window_flows, tasks(), pool=pool, workers=workers):
        for p in wanted[r]:
            i, k = slots[p]
            col[r, i, k] = got[i, k]
        done += 1
        if progress is not None:
            progress(done, len(todo))
    if todo or not st.has_index_column(SUBPIXEL_COLUMN):
        _write_column(st.root, col)
    return SubpixelReport(windows=len(rows), estimated=n_est, kept=kept)
