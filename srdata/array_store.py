"""A complete store from in-memory arrays: the small stores tests, benchmarks and examples need.

`srcaco2.srdata.build` is the way from raw tiles; this writes the same contract (root attrs, OME-NGFF images,
ROI, index written last) directly from numpy arrays, with every index column the caller does not
give filled with the contract's default.
"""

from __future__ import annotations

import logging
from collections.abc import Mapping
from typing import Any

import numpy as np

from srcaco2.srdata.lease import leased
from srcaco2.srdata.schema import (
    FORMAT_VERSION,
    MARKERS,
    SCALES,
    STRIDE,
    WINDOW_SIZE,
    StoreAttrs,
    acquisition_name,
    pixel_sizes,
)
from srcaco2.srdata.store import create_store
from srcaco2.srdata.writer import mark_tile_finished, write_image, write_index, write_roi

__all__ = ["write_store_from_arrays"]

log = logging.getLogger(__name__)

_INDEX_DEFAULTS: dict[str, Any] = {
    "size": WINDOW_SIZE,
    "accepted": True,
    "split": -1,
    "official_patch_id": -1,
    "fold_line": -1,
}


@leased("srcaco2.srdata.array_store.write_store_from_arrays", arg="path")  # one writer per store
def write_store_from_arrays(
    path: str,
    tiles: Mapping[int, Mapping[int, np.ndarray]],
    *,
    chunk: int,
    windows: Mapping[str, Any] | None = None,
    pixel_size_um: float | None | Mapping[str, float | None] = 0.1,
    roi_threshold: int = 4,
    roi: Mapping[str, Any] | None = None,
    source: Mapping[str, Any] | None = None,
    n_levels: int | Mapping[str, int] | None = None,
) -> Any:
    """Write a complete store (root attrs, images, ROI masks, finished tiles, index) from numpy arrays.

    The steps of `srdata build` without the reading and registration: for tests, benchmarks and
    small synthetic stores whose exact pixels the caller controls.

    Parameters
    ----------
    path : str
        Local path or fsspec URL of the new store; nothing may exist there (``create_store`` ``w-``).
    tiles : mapping of int to mapping of int to ndarray
        Tile id -> {scale: image}: ``1`` -> HR ``(3, y, x)`` uint8 (c = CELL0..CELL2, HR pixels), and
        each LR scale ``s`` (2, 4, 8) -> ``(3, y/s, x/s)`` uint8 in its own pixels. Every tile must
        hold the same scales; ``attrs.tiles`` follows the mapping's order.
    chunk : int
        HR chunk edge, px; the ``/s`` acquisition gets ``chunk // s`` (``attrs.chunks``).
    windows : mapping of str to array-like, optional
        Index columns (`INDEX_COLUMNS` names, N rows each); ``tile``, ``y0`` and ``x0`` are required
        and rows are written in the order given. Missing columns get: ``size`` 640, ``accepted``
        True, ``split`` -1, ``official_patch_id`` -1, ``shift`` 0 (N, 3, 3, 2) and ``roi_fraction``
        the ROI fraction of each window's central 128² (`srcaco2.srdata.roi.window_roi_fraction`).
        Default: every tile's full stride-256 grid (`srcaco2.srdata.roi.window_grid`) with those defaults.
    pixel_size_um : float, None or mapping of str to float
        HR pixel size in micrometres (``/s`` gets ``s`` times it), or a value per acquisition name
        (``{"hr": 0.1, "x2": 0.2, ...}``); None = unknown (docs/store.md#pixel-size).
    roi_threshold : int
        ROI mask = HR CELL2 >= `roi_threshold`.
    roi : mapping, optional
        ``attrs.roi``; default ``{"threshold": roi_threshold, "method": "fixed"}``. Its
        ``threshold``, when present, must equal `roi_threshold`.
    source : mapping, optional
        ``attrs.source`` (provenance); default ``{"kind": "synth"}``.
    n_levels : int or mapping of str to int, optional
        Multiscale levels, for all arrays or per name (``hr``, ``x2``, ``x4``, ``x8``, ``roi``; a
        name not in the mapping gets the default); default `default_n_levels`.

    Returns
    -------
    Store
        The store, open for writing, with ``index_complete`` True.

    Raises
    ------
    ValueError
        Wrong image shape/dtype, tiles with different scales, window columns of different lengths,
        window tiles not in `tiles`, or `roi` disagreeing with `roi_threshold`.
    KeyError
        `windows` lacks ``tile``, ``y0`` or ``x0`` or names an unknown column.
    StoreFormatError
        Something already exists at `path`.
    """
    from srcaco2.srdata.roi import window_grid, window_roi_fraction

    if not tiles:
        raise ValueError(f"{path}: no tiles given; pass at least one {{tile: {{1: hr, 2: lr, ...}}}}")
    tile_ids = [int(t) for t in tiles]
    scale_sets = {tuple(sorted(int(s) for s in imgs)) for imgs in tiles.values()}
    if len(scale_sets) != 1 or 1 not in next(iter(scale_sets)):
        raise ValueError(
            f"{path}: every tile needs HR (key 1) and the same LR scales, got {sorted(scale_sets)}"
        )
    scales = [s for s in next(iter(scale_sets)) if s != 1]
    if any(s not in SCALES for s in scales):
        raise ValueError(f"{path}: LR scales must be among {list(SCALES)}, got {scales}")
    names = ["hr"] + [acquisition_name(s) for s in scales]
    if isinstance(pixel_size_um, Mapping):
        px = {n: None if pixel_size_um[n] is None else float(pixel_size_um[n]) for n in names}
    else:
        px = pixel_sizes(pixel_size_um, scales)
    roi_attrs = dict(roi) if roi is not None else {"threshold": int(roi_threshold), "method": "fixed"}
    if int(roi_attrs.get("threshold", roi_threshold)) != int(roi_threshold):
        raise ValueError(f"roi['threshold']={roi_attrs['threshold']} but roi_threshold={roi_threshold}")

    def levels(name: str) -> int | None:
        return n_levels.get(name) if isinstance(n_levels, Mapping) else n_levels

    attrs = StoreAttrs(
        format_version=FORMAT_VERSION,
        markers=list(MARKERS),
        scales=scales,
        pixel_size_um=px,
        chunks={"hr": int(chunk)} | {acquisition_name(s): int(chunk) // s for s in scales},
        tiles=tile_ids,
        finished_tiles=[],
        roi=roi_attrs,
        source=dict(source) if source is not None else {"kind": "synth"},
    )
    st = create_store(path, attrs)
    masks = {}
    for t, imgs in zip(tile_ids, tiles.values(), strict=True):
        hr = np.asarray(imgs[1])
        if hr.ndim != 3 or hr.shape[0] != len(MARKERS) or hr.dtype != np.uint8:
            raise ValueError(f"tile {t}: HR must be (3, y, x) uint8, got {hr.dtype}{list(hr.shape)}")
        for s in [1, *scales]:
            name = acquisition_name(s)
            write_image(
                st, t, s, imgs[s], chunk=int(chunk) // s, pixel_size_um=px[name], n_levels=levels(name)
            )
        masks[t] = (hr[MARKERS.index("CELL2")] >= roi_threshold).astype(np.uint8)
        write_roi(st, t, masks[t], chunk=int(chunk), pixel_size_um=px["hr"], n_levels=levels("roi"))
        mark_tile_finished(st, t)
    if windows is None:
        grids = {t: window_grid(*masks[t].shape, stride=STRIDE) for t in tile_ids}
        windows = {
            "tile": np.concatenate([np.full(len(grids[t][0]), t, np.int32) for t in tile_ids]),
            "y0": np.concatenate([grids[t][0] for t in tile_ids]),
            "x0": np.concatenate([grids[t][1] for t in tile_ids]),
        }
    cols = {k: np.asarray(v) for k, v in windows.items()}
    for req in ("tile", "y0", "x0"):
        if req not in cols:
            raise KeyError(f"windows lacks column {req!r}; give at least tile, y0, x0 (N rows each)")
    n = len(cols["tile"])
    if any(len(c) != n for c in cols.values()):
        raise ValueError(f"window columns differ in length: { {k: len(v) for k, v in cols.items()} }")
    unknown = sorted(set(cols["tile"].tolist()) - set(tile_ids))
    if unknown:
        raise ValueError(f"windows name tiles {unknown} that are not in tiles {tile_ids}")
    for name, value in _INDEX_DEFAULTS.items():
        cols.setdefault(name, np.full(n, value))
    cols.setdefault("shift", np.zeros((n, len(MARKERS), len(SCALES), 2), np.int16))
    if "roi_fraction" not in cols:
        frac = np.zeros(n, np.float64)
        for t in tile_ids:
            sel = cols["tile"] == t
            frac[sel] = window_roi_fraction(masks[t], cols["y0"][sel], cols["x0"][sel])
        cols["roi_fraction"] = frac.astype(np.float32)
    write_index(st, cols)  # last: sets index_complete
    log.info("wrote store %s: %d tiles, %d windows", path, len(tile_ids), n)
    return st
