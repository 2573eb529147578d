"""`Store`: an open store, its validated attributes, and its parts by meaning."""

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
    OPTIONAL_INDEX_COLUMNS,
    StoreAttrs,
    StoreFormatError,
    WindowGeometry,
    acquisition_name,
    index_columns,
    shift_axes,
    shift_slot,
)
from srcaco2.srdata.store.paths import (
    _HOW,
    COVERAGE,
    TileId,
    _key,
    coverage_path,
    image_group_path,
    image_path,
    index_path,
    open_root,
    prediction_path,
    roi_group_path,
    roi_path,
    tile_path,
)

log = logging.getLogger(__name__)


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

        Holds the store's single-writer lease for the block (`srcaco2.srdata.lease.store_lease`;
        kept, not taken again, when this process already holds it for a longer job). The caller
        writes the image into the group and its metadata last (its ``finish``). Leaving the block
        with an exception deletes the group: nothing half-written stays in the store.
        """
        from srcaco2.srdata.lease import check_held, holds, store_lease

        lease = (
            contextlib.nullcontext()
            if holds(self.path)
            else store_lease(self.path, operation="srtrain predict")
        )
        with lease:
            path = prediction_path(name, tile)
            group = self.root.create_group(path, overwrite=True)
            try:
                yield group
                check_held()  # another writer took the store meanwhile: this prediction is not recorded
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
