"""Write a SR-CACO-2 store: create/validate the root, OME-NGFF images, ROI masks, the window index.

Every write follows the store contract of `srcaco2.srdata.schema` (docs/store.md) and is
*safe to interrupt*: a tile is recorded in ``attrs["srcaco2"]["finished_tiles"]`` only by
`mark_tile_finished`, which the builder calls after all the tile's arrays are written, and
``index_complete`` is set by `write_index` only after every index column is written.

Images are OME-NGFF 0.5 multiscales (Zarr v3) written by the one OME module,
`srcaco2.srdata.ome` (levels, frame, channel names, colours, display windows); this module names
the store's groups and codecs: blosc/zstd compression followed by a crc32c checksum of every chunk
(`compressors`), every chunk written, empty ones too (`ARRAY_CONFIG`), so that a missing chunk file
is a detectable fault. `write_image` writes an acquisition, `write_roi` the ROI mask as a label
image of the HR image. docs/store.md describes the result.
"""

from __future__ import annotations

import logging
from typing import Any

import numpy as np

from srcaco2.srdata.ome import ome_image_metadata, ome_label_metadata, write_multiscale
from srcaco2.srdata.schema import (
    OPTIONAL_INDEX_COLUMNS,
    ROI_LABEL,
    StoreFormatError,
    acquisition_name,
)
from srcaco2.srdata.store import (
    ARRAY_CONFIG,
    Store,
    compressors,
    image_group_path,
    index_path,
    roi_group_path,
    tile_path,
)

__all__ = [
    "ROI_LABEL",
    "write_image",
    "write_roi",
    "write_index",
    "mark_tile_finished",
]

log = logging.getLogger(__name__)


def _check_tile_written(store: Store, tile: int) -> None:
    """Re-check that every image group of `tile` is complete: OME metadata, every listed level, and
    (checksummed arrays) every chunk stored. Raises `StoreFormatError` naming what is absent."""
    from srcaco2.srdata.integrity import has_checksums, missing_chunks

    key, root, where = tile_path(tile), store.root, store.path
    if key not in root:
        raise StoreFormatError(
            f"{where}: {key} vanished after writing; is another process writing this store? Rerun the build"
        )
    tg = root[key]
    names = sorted(tg.group_keys())
    if not names:
        raise StoreFormatError(f"{where}: {key} holds no image after writing; rerun the build")
    for name in names:
        ome = tg[name].attrs.get("ome")
        ms = ome.get("multiscales") if isinstance(ome, dict) else None
        if not ms:
            raise StoreFormatError(
                f"{where}: {key}/{name} has no OME metadata after writing (incomplete); rerun the build"
            )
        for ds in ms[0]["datasets"]:
            path = str(ds["path"])
            if path not in tg[name]:
                raise StoreFormatError(
                    f"{where}: {key}/{name}/{path} is missing after writing; is another process writing "
                    "this store? Rerun the build"
                )
            arr = tg[name][path]
            gone = missing_chunks(arr) if has_checksums(arr) else []
            if gone:
                raise StoreFormatError(
                    f"{where}: {key}/{name}/{path}: {len(gone)} chunk(s) missing after writing (first "
                    f"{'/'.join(map(str, gone[0]))}); is another process writing this store? Rerun the build"
                )


def mark_tile_finished(store: Store, tile: int) -> None:
    """Record `tile` in ``finished_tiles``; call only after all its arrays are written.

    Before recording, re-checks that the tile's arrays are all present (`_check_tile_written`) and
    that this process still holds the store's lease if it took one (`srcaco2.srdata.lease.check_held`).

    Raises
    ------
    StoreFormatError
        An array, level or chunk of the tile is absent.
    srcaco2.srdata.lease.LeaseLostError
        Another writer took the store over.
    """
    from srcaco2.srdata.integrity import record_manifests
    from srcaco2.srdata.lease import check_held

    check_held()
    _check_tile_written(store, tile)
    record_manifests(store.tile_group(tile))  # binds every chunk of the tile to its place
    done = {*store.attrs.finished_tiles, tile}
    order = [*store.tiles, *sorted(done - set(store.tiles), key=str)]  # the store's tile order
    store.update_attrs(finished_tiles=[t for t in order if t in done])


_FROM_STORE = "store"


def _store_pixel_size(store: Store, acq: str, given: float | None | str) -> float | None:
    """`given`, or the store's ``attrs.pixel_size_um[acq]`` when `given` is ``"store"``."""
    if given != _FROM_STORE:
        return None if given is None else float(given)  # type: ignore[arg-type]
    return store.attrs.pixel_size_um.get(acq)


def _level_count(group: Any) -> int:
    n = 0
    while str(n) in group:
        n += 1
    return n


def write_image(
    store: Store,
    tile: int,
    scale: int,
    data: Any,
    *,
    chunk: int,
    pixel_size_um: float | None | str = _FROM_STORE,
    n_levels: int | None = None,
) -> None:
    """Write one acquisition of one tile as an OME-NGFF multiscales image ``tiles/<tile>/<acq>/``.

    Parameters
    ----------
    store : Store
        Open for writing.
    tile : int
        Tile id.
    scale : int
        1 (HR) or 2, 4, 8.
    data : (c, y, x) uint8 numpy or dask array, pixels of that acquisition; c = the store's markers
    chunk : int
        Chunk edge in pixels of this acquisition (y and x); chunks are ``(1, chunk, chunk)``.
    pixel_size_um : float, None or "store"
        Pixel size of level 0 in micrometres (None: unknown); default ``"store"`` takes
        ``attrs.pixel_size_um[<acq>]`` of the store (the one home of that fact).
    n_levels : int, optional
        Number of levels including level 0; default `srcaco2.srdata.ome.default_n_levels`.

    Notes
    -----
    Levels 1.. are 2x2 windowed means (rounded, uint8) of the previous level, for viewers only.
    A Dask input is computed and stored in one Dask compute with the active scheduler; a NumPy
    input is reduced in memory and written by zarr directly (same bytes). The metadata places
    every level in the tile's common frame (`srcaco2.srdata.ome.ome_multiscales`, half-pixel
    translations) and names the channels with display windows from the data.
    """
    acq = acquisition_name(scale)
    px = _store_pixel_size(store, acq, pixel_size_um)
    markers = list(store.markers)
    nc = int(data.shape[0]) if getattr(data, "ndim", 0) == 3 else 0
    if len(markers) != nc:
        markers = [f"C{i}" for i in range(nc)]  # an image that is not of the store's markers

    def meta(n: int, coarsest: np.ndarray) -> dict[str, Any]:
        return ome_image_metadata(
            f"{tile}/{acq}", n, px, channel_names=markers, coarsest=coarsest, scale=int(scale), kind="mean"
        )

    write_multiscale(
        store.root, image_group_path(tile, scale), data, ("c", "y", "x"),
        chunk=chunk, n_levels=n_levels, reduce="mean", metadata=meta,
    )  # fmt: skip


def write_roi(
    store: Store,
    tile: int,
    mask: Any,
    *,
    chunk: int,
    pixel_size_um: float | None | str = _FROM_STORE,
    n_levels: int | None = None,
) -> None:
    """Write a tile's ROI mask as an OME-NGFF label image of its HR image.

    The mask goes to `srcaco2.srdata.schema.roi_path` (``tiles/<tile>/hr/labels/roi/<level>``); the
    ``labels`` group lists it (``{"labels": ["roi"]}``) and its ``image-label`` metadata links it
    back to ``tiles/<tile>/hr`` (`ome_label_metadata`). Write the HR image first: rewriting HR
    drops its labels.

    Parameters
    ----------
    mask : (y, x) uint8 numpy or dask array in {0, 1}, HR pixels; 1 = cell
    chunk : int
        HR chunk edge, px.
    pixel_size_um : float, None or "store"
        HR pixel size (default: the store's ``attrs.pixel_size_um["hr"]``).
    n_levels : int, optional
        Default and required value: the HR image's level count (OME-NGFF: a label image has as
        many levels as its image). Display levels are 2x2 maxima (a cell never vanishes).

    Raises
    ------
    StoreFormatError
        The tile's HR image is missing.
    ValueError
        `mask` is not the HR extent, or `n_levels` differs from the HR image's.
    """
    root, hr_path = store.root, image_group_path(tile, 1)
    if hr_path not in root or "0" not in root[hr_path]:
        raise StoreFormatError(
            f"{hr_path}: missing; write the HR image (write_image(store, {tile}, 1, ..)) before its ROI label"
        )
    hr = root[hr_path]
    n_hr = _level_count(hr)
    group = roi_group_path(tile)
    if tuple(mask.shape) != tuple(hr["0"].shape[-2:]):
        raise ValueError(f"{group}: mask shape {list(mask.shape)} != HR extent {list(hr['0'].shape[-2:])}")
    if n_levels is not None and int(n_levels) != n_hr:
        raise ValueError(
            f"{group}: n_levels={n_levels} but the HR image has {n_hr} levels; "
            "a label image must have as many levels as its image"
        )
    px = _store_pixel_size(store, "hr", pixel_size_um)

    def meta(n: int, _coarsest: np.ndarray) -> dict[str, Any]:
        return ome_label_metadata(f"{tile}/{ROI_LABEL}", n, px)

    write_multiscale(
        root, group, mask, ("y", "x"), chunk=chunk, n_levels=n_hr, reduce="max", metadata=meta
    )  # fmt: skip
    labels = root[group.rsplit("/", 1)[0]]
    names = labels.attrs.get("ome", {}).get("labels", [])
    labels.attrs["ome"] = {"version": "0.5", "labels": sorted({*names, ROI_LABEL})}


def write_index(store: Store, columns: dict[str, np.ndarray]) -> None:
    """Write the window table ``index/<column>`` and then set ``index_complete=True``.

    Parameters
    ----------
    columns : dict of str to ndarray
        Every name of `INDEX_COLUMNS` with N rows (``shift``: (N, 3, 3, 2)); cast to the contract dtype.
        Names of `OPTIONAL_INDEX_COLUMNS` may be left out (read as their fill value; an older copy
        in the store is removed, it describes another index).

    Raises
    ------
    KeyError
        A column is missing or unknown.
    ValueError
        Columns differ in length or trailing shape.
    """
    spec = store.index_columns
    missing = sorted(set(spec) - set(columns) - set(OPTIONAL_INDEX_COLUMNS))
    extra = sorted(set(columns) - set(spec))
    if missing or extra:
        raise KeyError(f"index columns: missing {missing}, unknown {extra}; expected {list(spec)}")
    cast = {}
    for name, (dtype, trailing) in spec.items():
        if name not in columns:  # an optional column (OPTIONAL_INDEX_COLUMNS) left out
            continue
        col = np.asarray(columns[name]).astype(str if dtype == "str" else dtype, copy=False)
        if col.shape[1:] != trailing:
            raise ValueError(f"index column {name}: shape {col.shape}, expected (N, *{trailing})")
        cast[name] = col
    lengths = {len(c) for c in cast.values()}
    if len(lengths) != 1:
        raise ValueError(f"index columns differ in length: { {k: len(v) for k, v in cast.items()} }")
    store.update_attrs(index_complete=False)
    root = store.root
    for name in OPTIONAL_INDEX_COLUMNS:  # left out: an older copy describes another index, drop it
        if name not in cast and "index" in root and name in root["index"]:
            del root["index"][name]
    for name, col in cast.items():
        n = max(len(col), 1)
        store.root.create_array(
            index_path(name),
            shape=col.shape,
            dtype=str if col.dtype.kind == "U" else col.dtype,
            chunks=(n, *col.shape[1:]),
            compressors=compressors(),
            overwrite=True,
            config=ARRAY_CONFIG,
        )[...] = col
    from srcaco2.srdata.integrity import record_manifests

    record_manifests(store.root["index"])
    store.update_attrs(index_complete=True)
