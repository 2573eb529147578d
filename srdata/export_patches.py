"""Store -> the released-patch layout (docs/protocol.md#patch-names to #split): 2-D uint8 TIFF patches and
fold lists.

For every accepted window (``index.accepted``) of the chosen split, marker and scale::

    OUT/hr_div_1/tile_HighRes1024-{t}_{pid}_{i}_{ii}_{j}_{jj}_{CELLk}.tif  = read_hr_patch (512², uint8)
    OUT/hr_div_{s}/tile_LowRes{1024/s}-{t}_{pid}_{i/s}..._{CELLk}.tif      = read_lr_patch ((512/s)²)
    OUT/folds/caco2_{split}_X_{s}_in_{512/s}_out_512_cell_{CELLk}/h_l.txt  lines "HR,LR"
    OUT/folds/caco2_{split}_X_{s}_in_{512/s}_out_512_cell_{CELLk}/l_h.txt  lines "LR,HR"

``i, ii, j, jj`` are the 640² window's rows and columns (HR px), ``pid`` is the window's
``official_patch_id`` when >= 0, else its per-tile acceptance order (rank among the tile's
accepted windows in row-major (y0, x0) order, counted over all splits, as the original's
sliding window numbered them). The LR patch applies the window's stored registration shift for
that marker and scale (`srcaco2.srdata.schema.read_lr_patch`).

Line order of the fold lists (deterministic, identical for all markers and scales of a split):
the official fold-list order where the index has it (``fold_line``: a store built from the real
tiles with the official split, or imported from the released patches), then (tile, y0, x0) for
windows without a fold line (`srcaco2.srdata.split.fold_order`).

Nothing half-written: every file is first written into a temporary folder beside OUT
(``.<OUT name>.export-<pid>.tmp``); only when every patch has been read and encoded is that folder
renamed to OUT (or, when OUT already exists, its files moved into OUT). A failed export (a damaged
chunk: `srcaco2.srdata.integrity.ChunkError`, a full disk, Ctrl-C) removes the temporary folder and leaves
OUT as it was.
"""

from __future__ import annotations

import logging
import os
import shutil
from collections.abc import Callable, Sequence
from concurrent.futures import ThreadPoolExecutor
from typing import Any

import numpy as np

from srcaco2.srdata.atomic import write_bytes_atomic
from srcaco2.srdata.integrity import CheckedReader
from srcaco2.srdata.patches import fold_dir_name, patch_relpath
from srcaco2.srdata.schema import (
    MARKERS,
    SCALES,
    SPLITS,
    read_hr_patch,
    read_lr_patch,
    split_code,
)
from srcaco2.srdata.split import fold_order

__all__ = ["export_patches", "window_pids"]

log = logging.getLogger(__name__)


def _tiff_bytes(plane: np.ndarray) -> bytes:
    import io

    import tifffile

    buf = io.BytesIO()
    tifffile.imwrite(buf, np.ascontiguousarray(plane), photometric="minisblack")  # the store's dtype
    return buf.getvalue()


def window_pids(index: dict[str, np.ndarray]) -> np.ndarray:
    """Patch id of every row: ``official_patch_id`` if >= 0, else the per-tile acceptance order.

    Parameters
    ----------
    index : dict of str to ndarray
        The window table (`srcaco2.srdata.schema.read_index`).

    Returns
    -------
    (N,) int64
        -1 for rejected windows.
    """
    n = len(index["tile"])
    pid = np.full(n, -1, dtype=np.int64)
    acc = np.flatnonzero(index["accepted"])
    tile = index["tile"] if index["tile"].dtype != object else index["tile"].astype(str)  # named tiles
    order = acc[np.lexsort((index["x0"][acc], index["y0"][acc], tile[acc]))]
    tiles = index["tile"][order]
    for t in np.unique(tiles):
        rows = order[tiles == t]
        pid[rows] = np.arange(len(rows))
    off = index["official_patch_id"].astype(np.int64)
    use = index["accepted"] & (off >= 0)
    pid[use] = off[use]
    return pid


def _check_choice(name: str, given: Sequence[Any] | None, allowed: Sequence[Any]) -> list[Any]:
    if given is None or len(given) == 0:
        return list(allowed)
    bad = [g for g in given if g not in allowed]
    if bad:
        raise ValueError(f"{name} {bad} not in this store; the store has {name} {list(allowed)}")
    return [a for a in allowed if a in given]


def export_patches(
    store: str | Any,
    out: str | os.PathLike,
    *,
    split: str | None = None,
    markers: Sequence[str] | None = None,
    scales: Sequence[int] | None = None,
    workers: int = 4,
    progress: Callable[[int], None] | None = None,
    overwrite: bool = False,
) -> dict[str, Any]:
    """Write the store's accepted windows in the released-patch layout.

    Parameters
    ----------
    store : str or path-like
        Store path or fsspec URL.
    out : str or path-like
        Output folder: created, or an existing empty folder; a non-empty one only with `overwrite`
        (then replaced as a whole, never merged). Written only when the whole export succeeded (see the
        module docstring).
    split : {"train", "val", "test"}, optional
        Only windows of this split (default: every accepted window; fold lists for each split
        that has windows; accepted windows with split -1 get patch files but no fold line).
    markers : sequence of str, optional
        Subset of the store's markers (default all).
    scales : sequence of int, optional
        Subset of the store's LR scales (default all); HR patches are always written.
    workers : int
        Threads over windows.
    progress : callable, optional
        Called with the number of windows finished since the last call.
    overwrite : bool
        Replace a non-empty `out` (refused otherwise, before any work).

    Returns
    -------
    dict
        ``out``, ``windows`` (exported), ``files`` (TIFFs written), ``fold_lists`` (relative paths).

    Raises
    ------
    StoreFormatError
        `store` is not a store of this version or has no complete index;
        `srcaco2.srdata.integrity.ChunkError` (a subclass): a chunk read is missing or damaged (one line
        naming array and chunk; OUT is left untouched).
    OSError
        OUT's folder cannot be written (OUT is left untouched); `FileExistsError`: OUT is a file, or a
        non-empty folder without `overwrite`.
    ValueError
        Unknown split, or a marker / scale that the store does not hold.
    """
    from srcaco2.srdata.store import Store

    final = os.fspath(out).rstrip("/") or "/"
    if os.path.exists(final) and (not os.path.isdir(final) or (os.listdir(final) and not overwrite)):
        what = "a file" if not os.path.isdir(final) else "a folder that is not empty"
        raise FileExistsError(
            f"{final} is {what}; export into a new or empty folder"
            + (", or pass --overwrite to replace it" if os.path.isdir(final) else "")
        )
    st = Store.open(store)
    attrs = st.attrs
    if split is not None:
        split_code(split)  # raises with the list of splits
    markers = _check_choice("markers", markers, attrs.markers)
    scales = _check_choice(
        "scales", [int(s) for s in scales] if scales else None, [int(s) for s in attrs.scales]
    )
    index = st.index()
    pids = window_pids(index)
    sel = index["accepted"].copy()
    if split is not None:
        sel &= index["split"] == split_code(split)
    rows = np.flatnonzero(sel)
    rows = rows[np.lexsort((index["x0"][rows], index["y0"][rows], index["tile"][rows]))]
    parent, name = os.path.split(os.path.abspath(final))
    os.makedirs(parent, exist_ok=True)
    tmp = os.path.join(parent, f".{name}.export-{os.getpid()}.tmp")
    shutil.rmtree(tmp, ignore_errors=True)
    os.makedirs(tmp)
    try:
        files, fold_lists = _export_into(
            tmp, st, index, pids, rows, split, markers, scales, workers, progress, str(store)
        )
        _publish(tmp, final)
    except BaseException:
        shutil.rmtree(tmp, ignore_errors=True)
        raise
    out = final
    log.info("exported %d windows (%d files) to %s", len(rows), files, out)
    return {"out": out, "windows": int(len(rows)), "files": files, "fold_lists": fold_lists}


def _key(index: dict[str, np.ndarray], pids: np.ndarray, r: int) -> tuple[Any, int, int, int]:
    t = index["tile"][r]
    return (t if isinstance(t, str) else int(t)), int(pids[r]), int(index["y0"][r]), int(index["x0"][r])


def _names(st: Any) -> tuple[Callable[..., str], Callable[[str, int, str], str]]:
    """(patch path, fold folder) naming of a store: the benchmark's for SR-CACO-2 stores; for your own
    data the same layout with the store's names,
    ``hr_div_<s>/tile_<id>_<pid>_<r0>_<r1>_<c0>_<c1>_<marker>.tif`` (window corners in that scale's
    pixels) and ``folds/<split>_x<s>_in_<lr>_out_<hr>_<marker>/``."""
    geo = st.geometry
    if st.shift_axes == (len(MARKERS), SCALES) and st.dtype == np.uint8 and geo.patch == 512:
        return patch_relpath, fold_dir_name

    def relpath(t: Any, pid: int, y0: int, x0: int, m: str, s: int) -> str:
        r0, r1, c0, c1 = y0 // s, (y0 + geo.size) // s, x0 // s, (x0 + geo.size) // s
        return f"hr_div_{s}/tile_{t}_{pid}_{r0}_{r1}_{c0}_{c1}_{m}.tif"

    def folds(sp: str, s: int, m: str) -> str:
        return f"{sp}_x{s}_in_{geo.patch // s}_out_{geo.patch}_{m}"

    return relpath, folds


def _export_into(
    out: str,
    st: Any,
    index: dict[str, np.ndarray],
    pids: np.ndarray,
    rows: np.ndarray,
    split: str | None,
    markers: list[str],
    scales: list[int],
    workers: int,
    progress: Callable[[int], None] | None,
    where: str,
) -> tuple[int, list[str]]:
    """Write every patch and fold list of `rows` under `out` (a fresh folder); (files, fold lists)."""
    checked = CheckedReader(where)
    for s in (1, *scales):
        os.makedirs(os.path.join(out, f"hr_div_{s}"), exist_ok=True)
    chan = {m: st.marker_index(m) for m in markers}
    geo, (relpath, folds) = st.geometry, _names(st)
    slot = {(m, s): st.shift_slot(m, s) for m in markers for s in scales}  # the store's shift axes
    arrays: dict[tuple[int, int], Any] = {}
    for t in np.unique(index["tile"][rows]):
        for s in (1, *scales):
            arrays[(t, s)] = st.tile_image(t, s)

    def job(r: int) -> int:
        t, pid, y0, x0 = _key(index, pids, r)
        size = int(index["size"][r])
        n = 0
        for s in (1, *scales):
            arr = arrays[(t, s)]
            for m in markers:
                c = chan[m]
                box = (c, slice(y0 // s, (y0 + size) // s), slice(x0 // s, (x0 + size) // s))
                block = checked.read(arr, box)
                if s == 1:
                    patch = read_hr_patch(block, 0, 0, size=geo.patch, margin=geo.margin)
                else:
                    i, k = slot[(m, s)]
                    dy, dx = (int(v) for v in index["shift"][r, i, k])
                    patch = read_lr_patch(block, 0, 0, dy, dx, s, size=geo.patch, margin=geo.margin)
                with open(os.path.join(out, relpath(t, pid, y0, x0, m, s)), "wb") as f:
                    f.write(_tiff_bytes(patch))
                n += 1
        return n

    files = 0
    pool = ThreadPoolExecutor(max_workers=max(1, workers))
    try:
        for k in pool.map(job, rows):
            files += k
            if progress is not None:
                progress(1)
    finally:  # on a failure, do not read the remaining windows first
        pool.shutdown(wait=True, cancel_futures=True)
    fold_lists = []
    for sp in [split] if split is not None else list(SPLITS):
        srows, _official = fold_order(index, rows[index["split"][rows] == split_code(sp)])
        if len(srows) == 0:
            continue
        for s in scales:
            for m in markers:
                d = os.path.join("folds", folds(sp, s, m))
                os.makedirs(os.path.join(out, d), exist_ok=True)
                hr = [relpath(*_key(index, pids, r), m, 1) for r in srows]
                lr = [relpath(*_key(index, pids, r), m, s) for r in srows]
                h_l = "".join(f"{a},{b}\n" for a, b in zip(hr, lr, strict=True))
                l_h = "".join(f"{b},{a}\n" for a, b in zip(hr, lr, strict=True))
                write_bytes_atomic(os.path.join(out, d, "h_l.txt"), h_l.encode())
                write_bytes_atomic(os.path.join(out, d, "l_h.txt"), l_h.encode())
                fold_lists += [os.path.join(d, "h_l.txt"), os.path.join(d, "l_h.txt")]
    return files, fold_lists


def _publish(tmp: str, final: str) -> None:
    """Make the finished export `tmp` visible as `final` by renames: an existing `final` (empty, or
    replaced under ``overwrite``) is moved aside first and removed after."""
    if not os.path.exists(final):
        os.rename(tmp, final)
        return
    old = f"{tmp}.old"
    os.rename(final, old)
    try:
        os.rename(tmp, final)
    except BaseException:
        os.rename(old, final)
        raise
    shutil.rmtree(old, ignore_errors=True)
