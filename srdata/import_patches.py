"""The released-patch layout (docs/protocol.md#patch-names to #split) -> a store of the same contract as
`srdata build`.

Patches are mosaicked back into sparse tile arrays at the coordinates their names give:

- HR patch of window (i, j) -> ``hr[c, i+64 : i+576, j+64 : j+576]``.
- LR patch at scale s -> ``x{s}[c, oy : oy+512/s, ox : ox+512/s]`` with
  ``(oy, ox) = lr_patch_origin(i, j, dy, dx, s)``. The released data does not record its
  registration shift, so ``(dy, dx) = (0, 0)`` unless the patch disagrees with LR pixels already
  placed by an overlapping window (adjacent windows overlap by 256 HR px and were shifted
  independently). Then the smallest LR offset ``(ky, kx)``, ``|ky|, |kx| <= 64/s``, at which the
  patch agrees with every pixel already placed is used and ``(dy, dx) = (ky*s, kx*s)`` is stored,
  which `lr_patch_origin` maps back to that exact offset. Either way `read_lr_patch` of every
  imported window returns its patch exactly; a window for which no offset agrees is kept in the
  index, placed only where nothing was placed before, and reported in ``conflicts``.
- Tile extents = the largest window end seen, rounded up to the HR chunk edge (a multiple of
  every scale, so HR extent = s × LR extent). Pixels no patch covers are 0.
- ``tiles/<t>/hr/labels/roi`` (`roi_path`) = mosaicked HR CELL2 >= 4 (docs/protocol.md#roi-rule threshold;
  zeros if CELL2 is absent).
- ``tiles/<t>/coverage/0`` (uint8, HR px, OME-NGFF single level): 1 where an HR patch was placed;
  not part of a built store, it tells real zeros from pixels the release does not hold.
- Index: one row per window (sorted by tile, y0, x0), ``official_patch_id`` = the name's pid,
  ``accepted`` True, ``split`` from the fold lists (-1 for a window in no fold list),
  ``fold_line`` = the window's line in its split's fold list (-1 if none; validation order),
  ``roi_fraction`` over the central 128² of the window (the acceptance region, docs/protocol.md#roi-rule).
"""

from __future__ import annotations

import datetime
import logging
import os
from collections import defaultdict
from concurrent.futures import ThreadPoolExecutor
from pathlib import Path
from typing import Any

import numpy as np

from srcaco2.srdata.lease import leased
from srcaco2.srdata.patches import (
    PatchesInputError,
    PatchName,
    find_fold_root,
    read_fold_order,
    scan_patches,
    window_key,
)
from srcaco2.srdata.schema import (
    FORMAT_VERSION,
    MARGIN,
    MARKERS,
    PATCH_SIZE,
    SCALES,
    STRIDE,
    WINDOW_SIZE,
    StoreAttrs,
    StoreFormatError,
    pixel_sizes,
)
from srcaco2.srdata.store import COVERAGE, Store, coverage_path, create_store, remove_store

__all__ = ["PatchesInputError", "import_patches", "ROI_THRESHOLD"]

log = logging.getLogger(__name__)

ROI_THRESHOLD = 4
"""HR CELL2 >= this is cell (docs/protocol.md#roi-rule)."""


def _place(
    mosaic: np.ndarray, covered: np.ndarray, patch: np.ndarray, oy: int, ox: int, k: int
) -> tuple[int, int] | None:
    """Smallest offset (ky, kx), |ky|,|kx| <= k, at which `patch` agrees with placed pixels; write it."""
    n0, n1 = patch.shape
    cands = [(ky, kx) for ky in range(-k, k + 1) for kx in range(-k, k + 1)]
    cands.sort(key=lambda c: (max(abs(c[0]), abs(c[1])), abs(c[0]) + abs(c[1]), c))
    for ky, kx in cands:
        ys, xs = oy + ky, ox + kx
        if ys < 0 or xs < 0 or ys + n0 > mosaic.shape[0] or xs + n1 > mosaic.shape[1]:
            continue
        cov = covered[ys : ys + n0, xs : xs + n1]
        if cov.any():
            region = mosaic[ys : ys + n0, xs : xs + n1]
            idx = np.flatnonzero(cov)
            probe = idx[:: max(1, len(idx) // 64)]
            if not np.array_equal(region.flat[probe], patch.flat[probe]):
                continue
            if not np.array_equal(region[cov], patch[cov]):
                continue
        mosaic[ys : ys + n0, xs : xs + n1] = patch
        cov[...] = True
        return ky, kx
    cov = covered[oy : oy + n0, ox : ox + n1]
    region = mosaic[oy : oy + n0, ox : ox + n1]
    region[~cov] = patch[~cov]
    cov[...] = True
    return None


def _read_tif(path: Path, shape: tuple[int, int]) -> np.ndarray:
    import tifffile

    try:
        arr = tifffile.imread(path)
    except (tifffile.TiffFileError, ValueError, OSError) as exc:
        raise PatchesInputError(
            f"{path}: not a readable TIFF patch ({type(exc).__name__}: {exc}); the file is truncated or "
            "of another format: copy it again from the release, or remove the window's files"
        ) from None
    if arr.dtype != np.uint8 or arr.shape != shape:
        raise PatchesInputError(
            f"{path}: {arr.dtype}{list(arr.shape)}, expected a 2-D uint8 {list(shape)} patch"
        )
    return arr


@leased("srdata import-patches")  # one writer per store
def import_patches(
    patches: str | os.PathLike,
    store: str,
    *,
    folds: str | os.PathLike | None = None,
    chunk: int = 512,
    pixel_size_um: float | None = None,
    overwrite: bool = False,
    workers: int = 4,
) -> dict[str, Any]:
    """Build a store from a released-patch folder (see the module docstring for the mapping).

    Parameters
    ----------
    patches : str or path-like
        Folder holding ``hr_div_1/``, ``hr_div_{2,4,8}/`` and usually ``folds/``.
    store : str
        New store path or fsspec URL.
    folds : str or path-like, optional
        Folder holding the ``caco2_*`` fold folders (or ``folds/super-resolution`` above them);
        default: searched under `patches`. Without fold lists every window gets split -1.
    chunk : int
        HR chunk edge in pixels; a multiple of the largest scale (LR chunk = chunk / s).
    pixel_size_um : float, optional
        HR pixel size in micrometres (LR: × s). The release does not record it (its TIFFs say
        "no unit"), so None (default) stores it as unknown (docs/store.md#pixel-size).
    overwrite : bool
        Replace an existing store at `store`.
    workers : int
        Threads reading TIFFs.

    Returns
    -------
    dict
        ``store``, ``tiles``, ``windows``, ``markers``, ``scales``, ``splits`` ({split: count}),
        ``shifted`` (LR patches placed with a non-zero offset), ``conflicts`` (list of patch paths
        that disagree with overlapping patches at every offset).

    Raises
    ------
    PatchesInputError, PatchNameError
        Bad patches folder (see `scan_patches`, `read_fold_order`).
    StoreFormatError
        `store` exists (without `overwrite`); `srcaco2.srdata.lease.StoreLockedError` (a subclass): another
        process writes `store`.
    """
    from srcaco2.srdata import writer

    base = Path(patches)
    windows, markers, scales = scan_patches(base)
    if chunk <= 0 or chunk % max(scales):
        raise ValueError(f"chunk={chunk} must be a positive multiple of the largest scale {max(scales)}")
    fold_root = find_fold_root(folds if folds is not None else base)
    if folds is not None and fold_root is None:
        raise PatchesInputError(
            f"{folds}: holds no caco2_<split>_X_<s>_in_<n>_out_512_cell_<CELLk>/ fold folders"
        )
    if fold_root is None:
        log.warning("%s: no fold lists found; every window gets split -1 (pass --folds DIR)", base)
        order: dict[window_key, tuple[int, int]] = {}
    else:
        order = read_fold_order(fold_root, windows, markers, scales)
    splits = {k: code for k, (code, _line) in order.items()}
    fold_lines = {k: line for k, (_code, line) in order.items()}
    if overwrite:
        remove_store(store)
    tiles = sorted({k[0] for k in windows})
    attrs = StoreAttrs(
        format_version=FORMAT_VERSION,
        markers=markers,
        scales=scales,
        pixel_size_um=pixel_sizes(pixel_size_um, scales),
        chunks={"hr": chunk} | {f"x{s}": chunk // s for s in scales},
        tiles=tiles,
        finished_tiles=[],
        roi={
            "threshold": ROI_THRESHOLD,
            "min_fraction": 0.2,
            "method": "fixed",
            "marker": "CELL2",
            "center": 128,
            "window": WINDOW_SIZE,
            "stride": STRIDE,
        },
        source={
            "kind": "patches",
            "input": os.path.abspath(base),
            "folds": None if fold_root is None else os.path.abspath(fold_root),
            "tool": "srcaco2 srdata import-patches",
            "registration": "none",
            "date": datetime.datetime.now(datetime.timezone.utc).isoformat(timespec="seconds"),
        },
    )
    try:
        st = create_store(store, attrs, mode="w-")
    except StoreFormatError as exc:
        if "already exists" not in str(exc):
            raise
        raise StoreFormatError(
            f"{store}: a srcaco2 store already exists; pass --overwrite to replace it (an import is not "
            "resumed) or choose a new STORE path"
        ) from None
    try:
        rows: list[dict[str, Any]] = []
        shifted, conflicts = 0, []
        for t in tiles:
            keys = sorted(k for k in windows if k[0] == t)
            H = -(-max(k[1] + WINDOW_SIZE for k in keys) // chunk) * chunk
            W = -(-max(k[2] + WINDOW_SIZE for k in keys) // chunk) * chunk
            shift = np.zeros((len(keys), len(MARKERS), len(SCALES), 2), dtype=np.int16)
            hr = np.zeros((len(markers), H, W), dtype=np.uint8)
            order = _placement_order(keys)
            with ThreadPoolExecutor(max_workers=max(1, workers)) as pool:
                for s in (1, *scales):
                    mosaic = hr if s == 1 else np.zeros((len(markers), H // s, W // s), dtype=np.uint8)
                    placed = np.zeros(mosaic.shape, dtype=bool)
                    for w, c, path, got in _mosaic(
                        pool, base, windows, keys, order, markers, s, mosaic, placed
                    ):
                        if got is None:
                            conflicts.append(str(path.relative_to(base)))
                            log.warning("%s disagrees with overlapping patches at every offset", path)
                        elif got != (0, 0):
                            shifted += 1
                            shift[w, MARKERS.index(markers[c]), SCALES.index(s)] = (got[0] * s, got[1] * s)
                    if s == 1:
                        cover = placed.any(axis=0)
                    px = attrs.pixel_size_um["hr" if s == 1 else f"x{s}"]
                    writer.write_image(st, t, s, mosaic, chunk=chunk // s, pixel_size_um=px)
            roi = (
                (hr[markers.index("CELL2")] >= ROI_THRESHOLD)
                if "CELL2" in markers
                else np.zeros((H, W), bool)
            )
            writer.write_roi(
                st, t, roi.astype(np.uint8), chunk=chunk, pixel_size_um=attrs.pixel_size_um["hr"]
            )
            _write_coverage(
                st, t, cover.astype(np.uint8), chunk=chunk, pixel_size_um=attrs.pixel_size_um["hr"]
            )
            writer.mark_tile_finished(st, t)
            c0, c1 = WINDOW_SIZE // 2 - 64, WINDOW_SIZE // 2 + 64
            for w, (_t, y0, x0) in enumerate(keys):
                frac = float(roi[y0 + c0 : y0 + c1, x0 + c0 : x0 + c1].mean())
                rows.append(
                    {
                        "tile": t,
                        "y0": y0,
                        "x0": x0,
                        "roi_fraction": frac,
                        "pid": windows[(t, y0, x0)],
                        "split": splits.get((t, y0, x0), -1),
                        "fold_line": fold_lines.get((t, y0, x0), -1),
                        "shift": shift[w],
                    }
                )
            log.info("tile %d: %d windows, extent %dx%d", t, len(keys), H, W)
        n = len(rows)
        writer.write_index(
            st,
            {
                "tile": np.array([r["tile"] for r in rows]),
                "y0": np.array([r["y0"] for r in rows]),
                "x0": np.array([r["x0"] for r in rows]),
                "size": np.full(n, WINDOW_SIZE),
                "roi_fraction": np.array([r["roi_fraction"] for r in rows]),
                "accepted": np.ones(n, bool),
                "split": np.array([r["split"] for r in rows]),
                "official_patch_id": np.array([r["pid"] for r in rows]),
                "fold_line": np.array([r["fold_line"] for r in rows]),
                "shift": np.stack([r["shift"] for r in rows]).reshape(n, len(MARKERS), len(SCALES), 2),
            },
        )
    except BaseException:
        # a failed import leaves nothing half-written: the store was created above, by this call
        log.info("%s: import failed; removing the partial store", store)
        remove_store(store)
        raise
    counts = defaultdict(int)
    for r in rows:
        counts["none" if r["split"] < 0 else ("train", "val", "test")[r["split"]]] += 1
    return {
        "store": store,
        "tiles": tiles,
        "windows": n,
        "markers": markers,
        "scales": scales,
        "splits": dict(counts),
        "shifted": shifted,
        "conflicts": conflicts,
    }


def _placement_order(keys: list[window_key]) -> list[int]:
    """Breadth-first order over the overlap graph of the windows' 512² patches (from the first
    window in (y0, x0) order), so that every window but one per connected group is placed next
    to a placed neighbour and its LR offset is fixed by real overlap, not chosen in isolation."""
    order: list[int] = []
    seen = [False] * len(keys)
    for start in range(len(keys)):
        if seen[start]:
            continue
        seen[start] = True
        queue = [start]
        while queue:
            w = queue.pop(0)
            order.append(w)
            for v in range(len(keys)):
                if (
                    not seen[v]
                    and abs(keys[v][1] - keys[w][1]) < PATCH_SIZE
                    and abs(keys[v][2] - keys[w][2]) < PATCH_SIZE
                ):
                    seen[v] = True
                    queue.append(v)
    return order


def _mosaic(
    pool: ThreadPoolExecutor,
    base: Path,
    windows: dict[window_key, int],
    keys: list[window_key],
    order: list[int],
    markers: list[str],
    s: int,
    mosaic: np.ndarray,
    placed: np.ndarray,
) -> Any:
    """Read the patches of one scale (threads) and place them; yield (window, channel, path, offset)."""
    n = PATCH_SIZE // s
    jobs = [(w, c) for w in order for c in range(len(markers))]
    paths = [
        base
        / PatchName(keys[w][0], windows[keys[w]], keys[w][1], keys[w][2], WINDOW_SIZE, markers[c], s).relpath
        for w, c in jobs
    ]
    data = pool.map(lambda p: _read_tif(p, (n, n)), paths)
    for (w, c), path, patch in zip(jobs, paths, data, strict=True):
        _t, y0, x0 = keys[w]
        oy, ox = (y0 + MARGIN) // s, (x0 + MARGIN) // s
        yield w, c, path, _place(mosaic[c], placed[c], patch, oy, ox, 0 if s == 1 else MARGIN // s)


def _write_coverage(st: Store, tile: int, mask: np.ndarray, *, chunk: int, pixel_size_um: float) -> None:
    """``tiles/<tile>/coverage/0``: uint8 (y, x) HR px, 1 = covered by a released HR patch."""
    from srcaco2.srdata.ome import ome_multiscales
    from srcaco2.srdata.store import ARRAY_CONFIG, compressors

    grp = st.root.create_group(coverage_path(tile), overwrite=True)
    arr = grp.create_array(
        "0",
        shape=mask.shape,
        dtype="uint8",
        chunks=(chunk, chunk),
        compressors=compressors(),
        fill_value=0,
        dimension_names=("y", "x"),
        config=ARRAY_CONFIG,
    )
    arr[...] = mask
    grp.attrs["ome"] = ome_multiscales(f"{tile}/{COVERAGE}", ("y", "x"), 1, pixel_size_um, kind="max")
