"""The store handle: one object that knows where everything of a store lives and what it holds.

`Store.open` reads the root attributes once (`StoreAttrs`, validated) and then hands out the
arrays and groups of the store by meaning, never by spelled path: `tile_image(t, s)`,
`roi(t)`, `index()`, `prediction(name, t)`. It answers the questions every command asks
(`check(tiles=, marker=, scale=)` with one-line errors), writes the root attributes
(`update_attrs`) and a prediction (`write_prediction`, a context manager: lease, create, finish,
delete on failure).

This module is the only one that spells a path inside a store (``tiles/<t>/<acq>/<level>``,
``tiles/<t>/hr/labels/roi``, ``index/<column>``, ``predictions/<name>/<t>``); the layout itself
is documented in `srcaco2.srdata.schema` and docs/store.md.
"""

from __future__ import annotations

import contextlib
import dataclasses
import logging
import os
from collections.abc import Iterable, Iterator
from typing import Any, Literal

import numpy as np

from srcaco2.srdata.intensity import Intensity
from srcaco2.srdata.schema import (
    FORMAT_VERSION,
    INDEX_COLUMNS,
    OPTIONAL_INDEX_COLUMNS,
    PREDICTIONS,
    ROI_LABEL,
    StoreAttrs,
    StoreFormatError,
    WindowGeometry,
    acquisition_name,
    index_columns,
    shift_axes,
    shift_slot,
)

__all__ = [
    "ARRAY_CONFIG",
    "COMPRESSION",
    "compressors",
    "Store",
    "TileId",
    "create_store",
    "remove_store",
    "store_exists",
    "COVERAGE",
    "open_root",
    "level_count",
    "tile_path",
    "image_path",
    "image_group_path",
    "roi_group_path",
    "roi_path",
    "coverage_path",
    "index_path",
    "prediction_path",
    "parse_prediction_path",
]

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
_RESUME_FIELDS = ("format_version", "markers", "scales", "pixel_size_um", "chunks", "tiles", "roi")


class Store:
    """An open srcaco2 store: its root group, its validated attributes, and its parts by meaning.

    Attributes
    ----------
    root : zarr.Group
        The root group (open read-only for ``mode="r"``).
    path : str
        The path or URL it was opened from (used in every message).
    attrs : StoreAttrs
        The root attributes as read at `open` (or last written by `update_attrs`).
    """

    def __init__(self, root: Any, path: str, attrs: StoreAttrs) -> None:
        self.root = root
        self.path = path
        self.attrs = attrs
        self._index: dict[str, np.ndarray] | None = None

    # construction

    @classmethod
    def open(cls, path: str | os.PathLike, mode: Literal["r", "r+"] = "r") -> Store:
        """Open an existing store and read its attributes once.

        Raises
        ------
        StoreFormatError
            Nothing at `path`, not a Zarr v3 group, no ``srcaco2`` attributes, another format version.
        """
        p = os.fspath(path)
        if "://" not in p and not os.path.exists(p):
            raise StoreFormatError(f"{p}: no such store (no such file or directory); {_HOW}")
        try:
            root = open_root(p, mode=mode)
        except StoreFormatError:
            raise StoreFormatError(
                f"{p}: not a Zarr v3 store (no zarr.json), so it is not a srcaco2 store; give the path of a "
                f"store ({_HOW})"
            ) from None
        except Exception as exc:  # noqa: BLE001 - zarr raises several types for "not a group"
            raise StoreFormatError(
                f"{p}: not a Zarr v3 store ({type(exc).__name__}: {exc}); give the path of a store ({_HOW})"
            ) from None
        return cls.of_root(root, where=p)

    @classmethod
    def of_root(cls, root: Any, *, where: str | None = None) -> Store:
        """The handle of an already open root group (reads and validates its attributes)."""
        where = where or str(getattr(root, "store", "<store>"))
        return cls(root, where, StoreAttrs.from_json(root.attrs.get("srcaco2"), where=where))

    @classmethod
    def open_or_create(cls, path: str | os.PathLike, *, like: Store) -> Store:
        """A store to write predictions of `like` into (``--out-store``): the srcaco2 store at `path`
        opened for writing, or a Zarr group created there that holds only ``predictions/``; its
        handle answers with `like`'s attributes (the tiles and markers the predictions are of)."""
        p = os.fspath(path)
        root = open_root(p, mode="a")
        if isinstance(root.attrs.get("srcaco2"), dict):
            return cls.of_root(root, where=p)
        return cls(root, p, like.attrs)

    def reload(self) -> StoreAttrs:
        """Re-read the root attributes (after another process wrote them)."""
        self.attrs = StoreAttrs.from_json(self.root.attrs.get("srcaco2"), where=self.path)
        self._index = None
        return self.attrs

    def update_attrs(self, **changes: Any) -> StoreAttrs:
        """Replace fields of ``attrs["srcaco2"]`` (one write of the root metadata); returns the new attrs."""
        self.attrs = dataclasses.replace(self.attrs, **changes)
        self._index = None
        self.root.attrs["srcaco2"] = self.attrs.to_json()
        return self.attrs

    # what the store holds

    @property
    def markers(self) -> tuple[str, ...]:
        """Channel names, in c order."""
        return tuple(self.attrs.markers)

    @property
    def scales(self) -> tuple[int, ...]:
        """LR acquisitions present, as divisors of the HR pixel count per side."""
        return tuple(int(s) for s in self.attrs.scales)

    @property
    def tiles(self) -> tuple[TileId, ...]:
        """Tile ids in the store."""
        return tuple(self.attrs.tiles)

    @property
    def dtype(self) -> np.dtype:
        """Pixel type of every image (uint8 or uint16), kept as acquired."""
        return np.dtype(self.attrs.dtype)

    @property
    def intensity(self) -> Intensity:
        """How this store's pixels map to [0, 1], per marker (`srcaco2.srdata.intensity`)."""
        try:
            return Intensity.from_attrs(self.attrs.intensity, self.attrs.dtype, len(self.markers))
        except ValueError as exc:
            raise StoreFormatError(f"{self.path}: {exc}") from None

    @property
    def shift_axes(self) -> tuple[int, tuple[int, ...]]:
        """(marker count, scales) of ``index/shift`` (`srcaco2.srdata.schema.shift_axes`)."""
        return shift_axes(self.markers, self.scales)

    @property
    def index_columns(self) -> dict[str, tuple[str, tuple[int, ...]]]:
        """Name -> (dtype, trailing shape) of this store's ``index/`` columns (`schema.index_columns`)."""
        return index_columns(self.shift_axes, named=any(isinstance(t, str) for t in self.tiles))

    def shift_slot(self, marker: str, scale: int) -> tuple[int, int]:
        """Where (marker, scale) sits in ``index/shift[n]``."""
        return shift_slot(self.markers, self.scales, marker, scale)

    @property
    def geometry(self) -> WindowGeometry:
        """Window size, stride, margin, acceptance centre (HR px) of this store's index."""
        return WindowGeometry.from_attrs(self.attrs.roi)

    @property
    def format_version(self) -> int:
        return int(self.attrs.format_version)

    @property
    def kind(self) -> str:
        """Where the pixels came from: ``raw``, ``patches``, ``synth`` (``attrs.source.kind``)."""
        return str(self.attrs.source.get("kind", "unknown"))

    def marker_index(self, marker: str) -> int:
        """Position of `marker` on the c axis (raises ValueError naming the store's markers)."""
        self.check(marker=marker)
        return self.markers.index(marker)

    def check(
        self,
        *,
        tiles: Iterable[TileId] | None = None,
        marker: str | Iterable[str] | None = None,
        scale: int | None = None,
    ) -> None:
        """Refuse, with one line naming what the store holds, a tile, marker or scale it lacks.

        Raises
        ------
        ValueError
        """
        if tiles is not None:
            have = {_key(t) for t in self.tiles}
            missing = [t for t in tiles if _key(t) not in have]
            if missing:
                raise ValueError(f"{self.path}: no tile(s) {missing}; tiles are {list(self.tiles)}")
        if marker is not None:
            wanted = [marker] if isinstance(marker, str) else list(marker)
            unknown = [m for m in wanted if m not in self.markers]
            if unknown:
                raise ValueError(f"{self.path}: no marker(s) {unknown}; markers are {list(self.markers)}")
        if scale is not None and int(scale) not in self.scales:
            raise ValueError(f"{self.path}: no x{int(scale)} acquisition; scales are {list(self.scales)}")

    # parts

    def has(self, path: str) -> bool:
        return path in self.root

    def tile_group(self, tile: TileId) -> Any:
        return self.root[tile_path(tile)]

    @staticmethod
    def tile_group_path(tile: TileId) -> str:
        """Path of a tile's group, for creating it (``root.create_group``)."""
        return tile_path(tile)

    def image_group(self, tile: TileId, scale: int) -> Any:
        """The OME-NGFF multiscales group of one acquisition (``scale`` 1 = HR)."""
        return self.root[image_group_path(tile, scale)]

    def tile_image(self, tile: TileId, scale: int, level: int = 0) -> Any:
        """One acquisition of a tile at one level: a zarr array (c, y, x), the store's dtype."""
        return self.root[image_path(tile, scale, level)]

    def roi_group_path(self, tile: TileId) -> str:
        return roi_group_path(tile, format_version=self.format_version)

    def roi(self, tile: TileId, level: int = 0) -> Any:
        """A tile's ROI mask: a zarr array (y, x) uint8 in HR pixels, 1 = cell."""
        return self.root[roi_path(tile, level, format_version=self.format_version)]

    def coverage(self, tile: TileId) -> Any | None:
        """A tile's coverage group (imported stores), or None."""
        path = coverage_path(tile)
        return self.root[path] if path in self.root else None

    def prediction(self, name: str, tile: TileId) -> Any:
        """The group of a whole-tile prediction (raises KeyError when absent)."""
        return self.root[prediction_path(name, tile)]

    def index(self) -> dict[str, np.ndarray]:
        """The whole window table as numpy columns (see `INDEX_COLUMNS`), read once and cached.

        Raises
        ------
        StoreFormatError
            The index is missing, incomplete, unreadable or of another shape.
        """
        if self._index is None:
            self._index = _read_index(self.root, self.attrs, self.path, self.index_columns)
        return self._index

    def has_index_column(self, name: str) -> bool:
        """Whether ``index/<name>`` is stored (optional columns read as their fill value when not)."""
        return "index" in self.root and name in self.root["index"]

    def tile_groups(self, tile: TileId) -> dict[str, str]:
        """Name -> group path of a tile's images and masks (``hr``, ``x<s>``, ``roi``, ``coverage``)."""
        out = {acquisition_name(s): image_group_path(tile, s) for s in (1, *self.scales)}
        out["roi"] = self.roi_group_path(tile)
        out[COVERAGE] = coverage_path(tile)
        return out

    def unlisted_tile_groups(self) -> list[str]:
        """Group keys under ``tiles/`` that ``attrs.tiles`` does not list."""
        if "tiles" not in self.root:
            return []
        return sorted(set(self.root["tiles"].group_keys()) - {_key(t) for t in self.tiles})

    # writing a prediction

    @contextlib.contextmanager
    def write_prediction(self, name: str, tile: TileId) -> Iterator[Any]:
        """Create ``predictions/<name>/<tile>`` (replacing an old one) and yield its empty group.

        The caller writes the image into the group and its metadata last. Leaving the block with an
        exception deletes the group: nothing half-written stays in the store. Take the store's lease
        (`srcaco2.srdata.lease.store_lease`) around the whole prediction.
        """
        path = prediction_path(name, tile)
        group = self.root.create_group(path, overwrite=True)
        try:
            yield group
        except BaseException:
            try:
                del self.root[path]
            except Exception as exc:  # noqa: BLE001 - report, do not mask the original error
                log.warning("could not remove the incomplete prediction %s: %s", path, exc)
            raise

    def __repr__(self) -> str:
        return f"Store({self.path!r}, markers={list(self.markers)}, scales={list(self.scales)})"


def _read_index(
    root: Any, attrs: StoreAttrs, where: str, columns: dict[str, tuple[str, tuple[int, ...]]]
) -> dict[str, np.ndarray]:
    if not attrs.index_complete or "index" not in root:
        raise StoreFormatError(
            f"{where}: the window index is missing or incomplete; finish the build with "
            "`srdata build RAW STORE` (it resumes) or re-import with `srdata import-patches`"
        )
    out: dict[str, np.ndarray] = {}
    for name, (dtype, trailing) in columns.items():
        if name not in root["index"]:
            if name in OPTIONAL_INDEX_COLUMNS and out:
                n_rows = len(next(iter(out.values())))
                out[name] = np.full((n_rows, *trailing), OPTIONAL_INDEX_COLUMNS[name], np.dtype(dtype))
                continue
            raise StoreFormatError(f"{where}: index column index/{name} is missing; rebuild the store")
        try:
            col = np.asarray(root[index_path(name)][...])
        except Exception as exc:  # noqa: BLE001 - a damaged chunk: codec / checksum / JSON errors of zarr
            detail = " ".join(str(exc).split())[:200]
            raise StoreFormatError(
                f"{where}: array {index_path(name)} cannot be read ({type(exc).__name__}: {detail}); the "
                "window index is damaged: `srdata verify` lists the chunks, then rebuild it with "
                "`srdata build RAW STORE --overwrite` (or re-import with `srdata import-patches`)"
            ) from None
        if dtype == "str" and col.dtype.kind in "OTU":
            col = col.astype(object)  # tile names
        elif col.dtype != np.dtype(dtype) or col.shape[1:] != trailing:
            raise StoreFormatError(
                f"{where}: index/{name} is {col.dtype}{list(col.shape)}, expected {dtype} (N, *{trailing})"
            )
        out[name] = col
    n = {len(c) for c in out.values()}
    if len(n) != 1:
        raise StoreFormatError(f"{where}: index columns differ in length {sorted(n)}; rebuild the store")
    return out


# -- creating and removing ------------------------------------------------------------------------------


def _fs_and_path(path: str) -> tuple[Any, str]:
    import fsspec

    fs, _, paths = fsspec.get_fs_token_paths(path)
    return fs, paths[0]


def store_exists(path: str) -> bool:
    """True if `path` (local path or fsspec URL) exists and is not an empty directory."""
    fs, p = _fs_and_path(path)
    if not fs.exists(p):
        return False
    if fs.isdir(p):
        return len(fs.ls(p)) > 0
    return True


def remove_store(path: str) -> None:
    """Delete an existing srcaco2 store (any format version); refuse anything else.

    Raises
    ------
    StoreFormatError
        If `path` holds something that is not a srcaco2 store (nothing is deleted).
    """
    if not store_exists(path):
        return
    try:
        root = open_root(path, mode="r")
        is_store = isinstance(root.attrs.get("srcaco2"), dict)
    except Exception:  # noqa: BLE001 - anything unreadable is not ours to delete
        is_store = False
    if not is_store:
        raise StoreFormatError(
            f"{path}: exists and is not a srcaco2 store; refusing to delete it. "
            "Choose another STORE path or remove it yourself"
        )
    fs, p = _fs_and_path(path)
    fs.rm(p, recursive=True)


def create_store(path: str, attrs: StoreAttrs, *, mode: Literal["w-", "a"] = "w-") -> Store:
    """Create a store (``mode="w-"``) or reopen one for a resumed build (``mode="a"``).

    Parameters
    ----------
    path : str
        Local path or fsspec URL of the root group (e.g. ``out.zarr``, ``s3://bucket/x.zarr``).
    attrs : StoreAttrs
        Root attributes to write. With ``mode="a"`` and an existing store, the existing
        ``finished_tiles`` are kept and every field in ``_RESUME_FIELDS`` must agree.
    mode : {"w-", "a"}
        ``w-``: create, fail if anything exists at `path` (an empty directory is fine).
        ``a``: reopen an existing compatible store, or create it if missing.

    Returns
    -------
    Store
        The store, open for writing.

    Raises
    ------
    StoreFormatError
        `path` exists and is not a srcaco2 store; a store of another format version; ``w-`` on an
        existing store; ``a`` on a store built with other parameters.
    """
    if attrs.format_version != FORMAT_VERSION:
        raise ValueError(f"attrs.format_version must be {FORMAT_VERSION}, got {attrs.format_version}")
    if mode not in ("w-", "a"):
        raise ValueError(f"mode must be 'w-' or 'a', got {mode!r}")
    if store_exists(path):
        try:
            root = open_root(path, mode="r+")
            raw = root.attrs.get("srcaco2")
        except Exception as exc:  # noqa: BLE001 - not a zarr group at all
            raise StoreFormatError(
                f"{path}: exists and is not a srcaco2 store ({type(exc).__name__}); "
                "choose a new STORE path or remove this one"
            ) from None
        if not isinstance(raw, dict):
            raise StoreFormatError(
                f"{path}: exists and is not a srcaco2 store (no attrs['srcaco2']); "
                "choose a new STORE path or remove this one"
            )
        if raw.get("format_version") != FORMAT_VERSION:
            raise StoreFormatError(
                f"{path}: store format_version {raw.get('format_version')!r}, this toolkit writes version "
                f"{FORMAT_VERSION}; build into a new path or rerun with --overwrite to replace it"
            )
        if mode == "w-":
            raise StoreFormatError(
                f"{path}: a srcaco2 store already exists; resume its build by rerunning the same "
                "`srdata build` command, write to another STORE path, or pass --overwrite to replace it"
            )
        store = Store.of_root(root, where=str(path))
        old = store.attrs
        for name in _RESUME_FIELDS:
            if _norm(getattr(old, name)) != _norm(getattr(attrs, name)):
                raise StoreFormatError(
                    f"{path}: existing store has {name}={getattr(old, name)!r} but this build asks for "
                    f"{getattr(attrs, name)!r}; rerun with the same options or with --overwrite"
                )
        return store
    root = open_root(path, mode="a")
    root.attrs["srcaco2"] = attrs.to_json()
    log.info("created store %s", path)
    return Store(root, str(path), attrs)


def _norm(value: Any) -> Any:
    import json

    return json.loads(json.dumps(value, sort_keys=True))
