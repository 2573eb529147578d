"""Paths inside a store (the one place that spells them), codecs, and opening the root group."""

from __future__ import annotations

import logging
import os
from typing import Any, Literal

import numpy as np

from srcaco2.srdata.schema import (
    INDEX_COLUMNS,
    PREDICTIONS,
    ROI_LABEL,
    StoreFormatError,
    acquisition_name,
)

log = logging.getLogger(__name__)


TileId = int | str
"""A tile's id: its group key under ``tiles/`` (SR-CACO-2 tiles are integers)."""

COVERAGE: str = "coverage"
"""Name of the optional per-tile mask ``tiles/<t>/coverage/0`` (stores made by `import-patches`)."""

_ROI_LABEL_SINCE = 2  # first format version with the ROI as a label image
_HOW = "build one with `srdata build RAW STORE` (or `srdata import-patches PATCHES STORE`)"


# -- codecs ----------------------------------------------------------------------------------------------

COMPRESSION: dict[str, Any] = {"cname": "zstd", "clevel": 1, "shuffle": "bitshuffle"}
"""Blosc settings of every array (bitshuffle wins on sparse uint8 microscopy; zstd level 1 compresses
as well as level 3 on these images at 2-3x the speed, see benchmarks/build.py)."""


ARRAY_CONFIG: dict[str, Any] = {"write_empty_chunks": True}
"""Runtime config of every array a writer creates: all chunks are stored, even those equal to the fill
value, so that `srdata verify` and the readers can tell a deleted chunk file from an empty chunk."""


def compressors() -> tuple[Any, ...]:
    """The codec tuple every array of a store is written with: blosc (`COMPRESSION`), then crc32c.

    The crc32c codec appends a 4-byte checksum to each compressed chunk and zarr checks it on every
    read, so a flipped bit is an error (format version 2, `srcaco2.srdata.schema.FORMAT_VERSION`).
    """
    from zarr.codecs import BloscCodec, Crc32cCodec

    return (BloscCodec(**COMPRESSION), Crc32cCodec())


# -- paths (the one place that spells them) ------------------------------------------------------------


def tile_path(tile: TileId) -> str:
    """Group of one tile, ``tiles/<tile>``."""
    return f"tiles/{_key(tile)}"


def image_group_path(tile: TileId, scale: int) -> str:
    """Group of one acquisition of a tile (an OME-NGFF multiscales image), e.g. ``tiles/7/x4``."""
    return f"{tile_path(tile)}/{acquisition_name(scale)}"


def image_path(tile: TileId, scale: int, level: int = 0) -> str:
    """Path of one multiscale level of a tile's acquisition, e.g. ``tiles/7/x4/0``."""
    return f"{image_group_path(tile, scale)}/{int(level)}"


def roi_group_path(tile: TileId, *, format_version: int = 2) -> str:
    """Group of a tile's ROI mask: ``tiles/<t>/hr/labels/roi`` (an OME-NGFF label image of the HR
    image), or ``tiles/<t>/roi`` in a format-version-1 store."""
    if int(format_version) < _ROI_LABEL_SINCE:
        return f"{tile_path(tile)}/{ROI_LABEL}"
    return f"{image_group_path(tile, 1)}/labels/{ROI_LABEL}"


def roi_path(tile: TileId, level: int = 0, *, format_version: int = 2) -> str:
    """Path of one level of a tile's ROI mask, e.g. ``tiles/7/hr/labels/roi/0`` (uint8, HR px, 1 = cell)."""
    return f"{roi_group_path(tile, format_version=format_version)}/{int(level)}"


def coverage_path(tile: TileId) -> str:
    """Group of a tile's coverage mask (imported stores), ``tiles/<t>/coverage``."""
    return f"{tile_path(tile)}/{COVERAGE}"


def index_path(column: str) -> str:
    """Path of one index column, e.g. ``index/y0``."""
    if column not in INDEX_COLUMNS:
        raise KeyError(f"unknown index column {column!r}; columns are {list(INDEX_COLUMNS)}")
    return f"index/{column}"


def prediction_path(name: str, tile: TileId) -> str:
    """Group of a whole-tile prediction: ``predictions/<name>/<tile>`` (an OME-NGFF image).

    Raises
    ------
    ValueError
        An empty `name` or one holding ``/`` (a prediction name is one path component).
    """
    if not name or "/" in name or name in (".", ".."):
        raise ValueError(f"prediction name must be a non-empty name without '/', got {name!r}")
    return f"{PREDICTIONS}/{name}/{_key(tile)}"


def parse_prediction_path(path: str) -> tuple[str, TileId]:
    """Inverse of `prediction_path`: ``"predictions/bic_x4/7" -> ("bic_x4", 7)`` (integer ids as int).

    Raises
    ------
    ValueError
        `path` is not ``predictions/<name>/<tile>``.
    """
    parts = path.strip("/").split("/")
    if len(parts) != 3 or parts[0] != PREDICTIONS or not parts[2]:
        raise ValueError(f"{path!r} is not a prediction path ({PREDICTIONS}/<name>/<tile>)")
    return parts[1], _tile_value(parts[2])


def level_count(group: Any) -> int:
    """Number of consecutive levels ``0, 1, ...`` in a multiscales group."""
    n = 0
    while str(n) in group:
        n += 1
    return n


def _key(tile: TileId) -> str:
    """The group key of a tile id (``np.int32(7) -> "7"``)."""
    if isinstance(tile, (int, np.integer)):
        return str(int(tile))
    return str(tile)


def _tile_value(key: str) -> TileId:
    return int(key) if key.lstrip("-").isdigit() else key


# -- opening -------------------------------------------------------------------------------------------


def open_root(store: str | os.PathLike, mode: Literal["r", "r+", "a", "w", "w-"] = "r") -> Any:
    """Open the root Zarr v3 group of a store (local path or fsspec URL such as ``s3://b/x.zarr``).

    Modes follow zarr: ``r`` read only, ``r+`` read/write existing, ``a`` read/write, create if
    missing, ``w`` create (overwrite), ``w-`` create, fail if it exists. Most code wants
    `Store.open`, which also reads and validates the attributes.

    Raises
    ------
    StoreFormatError
        With ``r``/``r+``: nothing at `store`, or something that is not a Zarr v3 group.
    """
    import zarr

    store = os.fspath(store)
    kw: dict[str, Any] = {}
    if store.split("://", 1)[0] in ("file", "local") and "://" in store:
        kw["storage_options"] = {"auto_mkdir": True}  # fsspec's local fs creates no parent folders
    if mode not in ("r", "r+"):
        return zarr.open_group(store, mode=mode, zarr_format=3, **kw)
    try:
        return zarr.open_group(store, mode=mode, zarr_format=3, **kw)
    except zarr.errors.NodeNotFoundError:
        raise StoreFormatError(
            f"{store}: holds no Zarr v3 group (no zarr.json), so it is not a srcaco2 store; pass the "
            "STORE written by `srdata build RAW STORE` or `srdata import-patches PATCHES STORE`"
        ) from None
    except FileNotFoundError:
        raise StoreFormatError(f"{store}: no such store; {_HOW}") from None


# Attributes that must agree between an existing store and a resumed build.
