"""Inspect a store: `store_info` (what is in it) and `list_predictions` (its whole-tile predictions).

Both need nothing but the store (docs/store.md#building: "the store is self-describing");
`srcaco2.srdata.verify.verify_store` checks that it keeps the contract.
"""

from __future__ import annotations

import dataclasses
import logging
import os
from collections.abc import Iterator
from typing import Any

import numpy as np

from srcaco2.srdata.schema import PREDICTION_ATTRS, PREDICTIONS, SPLITS, StoreAttrs
from srcaco2.srdata.store import Store, level_count

__all__ = ["checksummed", "store_info", "store_bytes", "list_predictions", "prediction_groups"]

log = logging.getLogger(__name__)


def _is_url(path: str) -> bool:
    return "://" in path


def checksummed(attrs: StoreAttrs) -> bool:
    """Whether a store's chunks carry checksums and are all written (format version >= 2)."""
    return int(attrs.format_version) >= 2


def store_bytes(path: str | Any) -> int:
    """Total size in bytes of the files under a store (local path or fsspec URL)."""
    p = os.fspath(path) if not isinstance(path, str) else path
    if not _is_url(p):
        total = 0
        for dirpath, _dirs, files in os.walk(p):
            total += sum(os.path.getsize(os.path.join(dirpath, f)) for f in files)
        return total
    import fsspec

    fs, fpath = fsspec.core.url_to_fs(p)
    return int(fs.du(fpath, total=True))


def _array_info(arr: Any, levels: int) -> dict[str, Any]:
    shards = getattr(arr, "shards", None)
    return {
        "shape": [int(n) for n in arr.shape],
        "chunks": [int(n) for n in arr.chunks],
        "shards": None if shards is None else [int(n) for n in shards],
        "dtype": str(arr.dtype),
        "levels": levels,
    }


def _registration(attrs: Any) -> dict[str, Any]:
    """``source["registration"]`` as a dict (older stores hold a method string: all pairs registered)."""
    reg = attrs.source.get("registration", "none")
    if isinstance(reg, dict):
        return dict(reg)
    if reg in (None, "none"):
        return {"method": "none", "markers": [], "scales": []}
    return {"method": str(reg), "markers": list(attrs.markers), "scales": list(attrs.scales)}


def store_info(path: str | Any) -> dict[str, Any]:
    """Summary of a store as a JSON-ready dict.

    Returns
    -------
    dict
        ``path``, ``format_version``, ``markers``, ``scales``, ``pixel_size_um``, ``chunks`` (the
        attribute), ``source``, ``registration`` (``{"method", "markers", "scales"}`` registered;
        unlisted marker/scale pairs have shift 0; method ``"none"`` without registration),
        ``roi`` (parameters), ``index_complete``, ``checksums`` (chunks carry crc32c checksums and
        are all written: format 2; False for format 1), ``finished_tiles``;
        ``tiles``: list of ``{"tile", "finished", "acquisitions": {acq: {"shape", "chunks",
        "shards", "dtype", "levels"}}, "roi_fraction"}`` (fraction of ROI = 1 pixels of level 0,
        None without ROI); ``windows``: ``{split: {"accepted", "total"}}`` for each split, ``none``
        (split -1) and ``all`` (empty without a complete index); ``predictions``: see
        `list_predictions`; ``store_bytes``.

    Raises
    ------
    StoreFormatError
        See `Store.open`.
    """
    import dask.array as da

    p = os.fspath(path) if not isinstance(path, str) else path
    st = Store.open(p)
    root, attrs = st.root, st.attrs
    tiles = []
    roi_sums = {}
    for tile in attrs.tiles:
        entry: dict[str, Any] = {"tile": tile, "finished": tile in attrs.finished_tiles}
        acqs: dict[str, Any] = {}
        for name, group in st.tile_groups(tile).items():
            if group in root and "0" in root[group]:
                acqs[name] = _array_info(root[group]["0"], level_count(root[group]))
        entry["acquisitions"] = acqs
        if "roi" in acqs:
            arr = st.roi(tile)
            roi_sums[tile] = (da.from_zarr(arr).astype(np.int64).sum(), int(np.prod(arr.shape)))
        tiles.append(entry)
    if roi_sums:
        sums = da.compute(*(s for s, _ in roi_sums.values()))
        fractions = {t: float(s) / max(n, 1) for (t, (_, n)), s in zip(roi_sums.items(), sums, strict=True)}
    else:
        fractions = {}
    for entry in tiles:
        entry["roi_fraction"] = fractions.get(entry["tile"])
    windows: dict[str, dict[str, int]] = {}
    if attrs.index_complete:
        index = st.index()
        for code, name in [(i, s) for i, s in enumerate(SPLITS)] + [(-1, "none")]:
            sel = index["split"] == code
            windows[name] = {"accepted": int(index["accepted"][sel].sum()), "total": int(sel.sum())}
        windows["all"] = {"accepted": int(index["accepted"].sum()), "total": len(index["accepted"])}
    return {
        "path": p,
        "format_version": attrs.format_version,
        "predictions": list_predictions(root),
        "markers": list(attrs.markers),
        "scales": list(attrs.scales),
        "dtype": str(attrs.dtype),
        "window": dataclasses.asdict(st.geometry) | {"patch": st.geometry.patch},
        "pixel_size_um": dict(attrs.pixel_size_um),
        "chunks": dict(attrs.chunks),
        "source": dict(attrs.source),
        "registration": _registration(attrs),
        "roi": dict(attrs.roi),
        "index_complete": bool(attrs.index_complete),
        "checksums": checksummed(attrs),
        "finished_tiles": list(attrs.finished_tiles),
        "tiles": tiles,
        "windows": windows,
        "store_bytes": store_bytes(p),
    }


def _tile_order(key: str) -> tuple[bool, int, str]:
    return (not key.isdigit(), int(key) if key.isdigit() else 0, key)


def prediction_groups(root: Any) -> Iterator[tuple[str, str, Any]]:
    """(name, tile key, group) of every ``predictions/<name>/<tile>`` group."""
    if PREDICTIONS not in root:
        return
    top = root[PREDICTIONS]
    for name in sorted(top.group_keys()):
        for key in sorted(top[name].group_keys(), key=_tile_order):
            yield name, key, top[name][key]


def list_predictions(root: Any) -> list[dict[str, Any]]:
    """The whole-tile predictions of an open store, one dict per ``predictions/<name>/<tile>``.

    Returns
    -------
    list of dict
        ``name``, ``tile``, ``path``, ``complete`` (its OME metadata was written last, so False
        means an interrupted prediction), ``markers``, ``scale``, ``method``, ``exact`` (tiled ==
        whole-image inference, from the recorded tiling; None if unknown), ``shape`` and ``dtype``
        of level 0, ``levels``.
    """
    out = []
    for name, key, grp in prediction_groups(root):
        meta = grp.attrs.get(PREDICTION_ATTRS)
        meta = meta if isinstance(meta, dict) else {}
        level0 = grp["0"] if "0" in grp else None
        tiling = meta.get("tiling") if isinstance(meta.get("tiling"), dict) else {}
        out.append({
            "name": name, "tile": int(key) if key.isdigit() else key, "path": f"{PREDICTIONS}/{name}/{key}",
            "complete": "ome" in grp.attrs, "markers": meta.get("markers"), "scale": meta.get("scale"),
            "method": meta.get("method"), "exact": tiling.get("exact"),
            "shape": None if level0 is None else [int(n) for n in level0.shape],
            "dtype": None if level0 is None else str(level0.dtype), "levels": level_count(grp),
        })  # fmt: skip
    return out
