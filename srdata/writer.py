"""Write a SR-CACO-2 store: create/validate the root, OME-NGFF images, ROI masks, the window index.

Every write follows the store contract of `srcaco2.srdata.schema` (docs/store.md) and is
*safe to interrupt*: a tile is recorded in ``attrs["srcaco2"]["finished_tiles"]`` only by
`mark_tile_finished`, which the builder calls after all the tile's arrays are written, and
``index_complete`` is set by `write_index` only after every index column is written.

Images are OME-NGFF 0.5 multiscales (Zarr v3): ``attrs["ome"] = {"version": "0.5",
"multiscales": [...], "omero": {...}}`` on the image group, levels ``"0"`` (the data) .. ``"L-1"``
(2x windowed-mean display downsamples; in-memory input is reduced with NumPy and written by zarr,
Dask input in one Dask compute), chunks ``(1, chunk, chunk)``, blosc/zstd compression followed by a
crc32c checksum of every chunk (`compressors`); every chunk is written, empty ones too
(`ARRAY_CONFIG`), so that a missing chunk file is a detectable fault. Every level of every scan sits
in the tile's common physical frame (`ome_multiscales`); channels carry names, colours and
percentile display windows (`omero_metadata`); the ROI mask is a label image of the HR image
(`write_roi`, `ome_label_metadata`). docs/store.md describes the result.
"""

from __future__ import annotations

import dataclasses
import logging
import math
from typing import Any, Literal

import numpy as np

from srcaco2.srdata.schema import (
    FORMAT_VERSION,
    INDEX_COLUMNS,
    MARKERS,
    ROI_LABEL,
    StoreAttrs,
    StoreFormatError,
    acquisition_name,
    index_path,
    open_root,
    read_attrs,
    roi_group_path,
)

__all__ = [
    "ARRAY_CONFIG",
    "COMPRESSION",
    "compressors",
    "create_store",
    "default_n_levels",
    "ome_multiscales",
    "ome_image_metadata",
    "ome_label_metadata",
    "omero_metadata",
    "MARKER_COLORS",
    "ROI_LABEL",
    "pyramid_levels",
    "write_image",
    "write_roi",
    "write_index",
    "mark_tile_finished",
    "update_attrs",
    "store_exists",
    "remove_store",
]

log = logging.getLogger(__name__)

COMPRESSION: dict[str, Any] = {"cname": "zstd", "clevel": 1, "shuffle": "bitshuffle"}
"""Blosc settings of every array (bitshuffle wins on sparse uint8 microscopy; zstd level 1 compresses
as well as level 3 on these images at 2-3x the speed, see benchmarks/build.py)."""

_MAX_LEVELS = 8
_BLOCK_PX = 2048  # edge of one Dask write task, px (rounded down to a multiple of the chunk edge)
# Attributes that must agree between an existing store and a resumed build.
_RESUME_FIELDS = ("format_version", "markers", "scales", "pixel_size_um", "chunks", "tiles", "roi")


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


def create_store(path: str, attrs: StoreAttrs, *, mode: Literal["w-", "a"] = "w-") -> Any:
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
    zarr.Group
        The root group, open for writing.

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
        old = read_attrs(root, where=str(path))
        for name in _RESUME_FIELDS:
            if _norm(getattr(old, name)) != _norm(getattr(attrs, name)):
                raise StoreFormatError(
                    f"{path}: existing store has {name}={getattr(old, name)!r} but this build asks for "
                    f"{getattr(attrs, name)!r}; rerun with the same options or with --overwrite"
                )
        return root
    root = open_root(path, mode="a")
    root.attrs["srcaco2"] = attrs.to_json()
    log.info("created store %s", path)
    return root


def _norm(value: Any) -> Any:
    import json

    return json.loads(json.dumps(value, sort_keys=True))


def update_attrs(root: Any, **changes: Any) -> StoreAttrs:
    """Replace fields of ``attrs["srcaco2"]`` (one read-modify-write of the root metadata)."""
    new = dataclasses.replace(read_attrs(root), **changes)
    root.attrs["srcaco2"] = new.to_json()
    return new


def _check_tile_written(root: Any, tile: int) -> None:
    """Re-check that every image group of `tile` is complete: OME metadata, every listed level, and
    (checksummed arrays) every chunk stored. Raises `StoreFormatError` naming what is absent."""
    from srcaco2.srdata.integrity import has_checksums, missing_chunks

    key = f"tiles/{int(tile)}"
    where = str(getattr(root, "store", "<store>"))
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


def mark_tile_finished(root: Any, tile: int) -> None:
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
    from srcaco2.srdata.lease import check_held

    check_held()
    _check_tile_written(root, tile)
    attrs = read_attrs(root)
    done = sorted(set(int(t) for t in attrs.finished_tiles) | {int(tile)})
    update_attrs(root, finished_tiles=done)


def default_n_levels(shape_yx: tuple[int, int], chunk: int) -> int:
    """Number of levels: halve while the next level's smaller side is still >= `chunk` (1..8)."""
    n = 1
    while n < _MAX_LEVELS and min(shape_yx) // 2**n >= chunk:
        n += 1
    return n


def ome_multiscales(
    name: str,
    axes: tuple[str, ...],
    n_levels: int,
    pixel_size_um: float | None,
    *,
    kind: str = "mean",
    scale: int = 1,
) -> dict[str, Any]:
    """The ``attrs["ome"]`` mapping of one OME-NGFF 0.5 multiscales image (no ``omero``).

    Parameters
    ----------
    name : str
        ``multiscales[0].name``.
    axes : tuple of str
        ``("c", "y", "x")`` or ``("y", "x")``.
    n_levels : int
        Levels ``"0"`` .. ``"n_levels-1"``, each a 2x reduction of the previous.
    pixel_size_um : float or None
        Pixel size of level 0 of *this* image, micrometres; None when unknown (see Notes).
    kind : str
        ``multiscales[0].type``: how display levels were reduced (``mean``, ``max``).
    scale : int
        Pixel pitch of level 0 in HR pixels: 1 for HR-grid images (HR, ROI, predictions), s for
        the /s acquisition.

    Notes
    -----
    One physical frame for every scan of a tile (docs/store.md#coordinates): the centre of HR pixel
    (0, 0) is the origin, and a pixel of pitch ``f`` HR px (``f = scale * 2**level``) at index i has
    its centre at ``(i + 0.5) * f - 0.5`` HR px. Hence level ``l`` carries
    ``scale = f * p`` and ``translation = (f - 1) / 2 * p`` on y and x (1 and 0 on c), with
    ``p = pixel_size_um / scale`` the HR pixel size, so that x2, x4, x8, display levels and
    predictions overlay HR exactly in any OME-NGFF viewer.

    With an unknown pixel size, ``p = 1`` (transforms in HR pixels), the space axes carry no
    ``unit``, and ``multiscales[0].metadata`` says ``{"pixel_size": "unknown", ...}``.
    """
    s = int(scale)
    if s < 1:
        raise ValueError(f"scale must be a positive integer (pitch in HR px), got {scale!r}")
    known = pixel_size_um is not None
    if known and not (math.isfinite(float(pixel_size_um)) and float(pixel_size_um) > 0):  # type: ignore[arg-type]
        raise ValueError(f"pixel_size_um must be a positive number or None (unknown), got {pixel_size_um!r}")
    p = float(pixel_size_um) / s if known else 1.0  # type: ignore[arg-type]
    ax: list[dict[str, Any]] = []
    for a in axes:
        if a == "c":
            ax.append({"name": "c", "type": "channel"})
        else:
            ax.append({"name": a, "type": "space", **({"unit": "micrometer"} if known else {})})
    datasets = []
    for lv in range(int(n_levels)):
        f = s * 2**lv
        sc = [1.0 if a == "c" else f * p for a in axes]
        tr = [0.0 if a == "c" else (f - 1) / 2 * p for a in axes]
        ct = [{"type": "scale", "scale": sc}, {"type": "translation", "translation": tr}]
        datasets.append({"path": str(lv), "coordinateTransformations": ct})
    ms: dict[str, Any] = {"name": name, "axes": ax, "datasets": datasets, "type": kind}
    if not known:
        ms["metadata"] = {
            "pixel_size": "unknown",
            "units": "HR pixels",
            "note": "no physical pixel size in the input metadata or options; coordinates are HR pixels",
        }
    return {"version": "0.5", "multiscales": [ms]}


MARKER_COLORS: dict[str, str] = {"CELL0": "00FFFF", "CELL1": "00FF00", "CELL2": "FF00FF"}
"""Display colour (RRGGBB) per marker: CELL0 (Survivin) cyan, CELL1 (E-cadherin / GFP-tubulin) green,
CELL2 (mCherry-H2B) magenta (magenta rather than red: distinguishable from green for every reader)."""

WINDOW_PERCENTILES: tuple[float, float] = (0.1, 99.9)
"""Percentiles of each channel's coarsest level that set the ``omero`` display window."""

ROI_LABEL_RGBA: tuple[int, int, int, int] = (255, 200, 0, 255)
"""Display colour of ROI label value 1 (amber); 0 is background (transparent in label viewers)."""


OTHER_COLORS: tuple[str, ...] = ("00FFFF", "FFFF00", "FF8000", "0080FF", "FFFFFF")
"""Display colours (RGB hex) of channels that are not one of the markers, in channel order."""


_WINDOW_SAMPLE_EDGE = 256  # percentiles of a coarsest level larger than this (per axis) use a strided sample


def omero_metadata(coarsest: Any, channel_names: list[str] | tuple[str, ...]) -> dict[str, Any]:
    """The ``omero`` rendering settings: one channel per name, window from the data's percentiles.

    Parameters
    ----------
    coarsest : (c, y, x) integer array (numpy or zarr)
        The coarsest pyramid level; a strided sample of at most `_WINDOW_SAMPLE_EDGE` pixels a side
        is read from it.
    channel_names : sequence of str
        One label per channel (e.g. the markers); colours from `MARKER_COLORS`, other labels from
        `OTHER_COLORS` by channel position (so the channels of a user's image stay distinguishable).

    Returns
    -------
    dict
        ``{"channels": [{"label", "color", "active", "window": {"min", "max", "start", "end"}}],
        "rdefs": {"model": "color"}}``: ``min``/``max`` = the dtype's range, ``start``/``end`` = the
        `WINDOW_PERCENTILES` of that channel (``end >= start + 1``, so a flat channel still opens).
    """
    shape = tuple(int(n) for n in getattr(coarsest, "shape", np.shape(coarsest)))
    if len(shape) != 3 or shape[0] != len(channel_names):
        raise ValueError(
            f"coarsest level must be (c, y, x) with c = {len(channel_names)} channels, got {list(shape)}"
        )
    # a strided sample of at most ~_WINDOW_SAMPLE_EDGE² pixels per channel, read straight from the
    # array (numpy or zarr): memory and time bounded whatever the image size
    sy, sx = (max(1, -(-n // _WINDOW_SAMPLE_EDGE)) for n in shape[1:])
    sample = np.asarray(coarsest[:, ::sy, ::sx])
    info = np.iinfo(sample.dtype) if np.issubdtype(sample.dtype, np.integer) else None
    lo_d, hi_d = (float(info.min), float(info.max)) if info else (float(sample.min()), float(sample.max()))
    chans = []
    for i, label in enumerate(channel_names):
        ch = sample[i]
        if ch.size:
            start, end = (float(v) for v in np.percentile(ch, WINDOW_PERCENTILES))
        else:
            start, end = lo_d, hi_d
        end = max(end, start + 1.0)
        window = {"min": lo_d, "max": max(hi_d, end), "start": round(start, 3), "end": round(end, 3)}
        chans.append(
            {
                "label": str(label),
                "color": MARKER_COLORS.get(str(label), OTHER_COLORS[i % len(OTHER_COLORS)]),
                "active": True,
                "window": window,
            }
        )
    return {"channels": chans, "rdefs": {"model": "color"}}


def ome_image_metadata(
    name: str,
    n_levels: int,
    pixel_size_um: float | None,
    *,
    channel_names: list[str] | tuple[str, ...],
    coarsest: Any,
    scale: int = 1,
    kind: str = "mean",
) -> dict[str, Any]:
    """Complete ``attrs["ome"]`` of a (c, y, x) image: multiscales + omero (names, colours, windows).

    For every channel-first image the toolkit writes (acquisitions, predictions). Parameters as in
    `ome_multiscales` and `omero_metadata`; a prediction on the HR grid uses ``scale=1`` and the HR
    pixel size (``attrs.pixel_size_um["hr"]``, None when unknown).
    """
    meta = ome_multiscales(name, ("c", "y", "x"), n_levels, pixel_size_um, kind=kind, scale=scale)
    meta["omero"] = omero_metadata(coarsest, list(channel_names))
    return meta


def ome_label_metadata(
    name: str, n_levels: int, pixel_size_um: float | None, *, description: str = "cell (ROI)"
) -> dict[str, Any]:
    """``attrs["ome"]`` of a (y, x) label image on the HR grid: multiscales + ``image-label``.

    Label value 1 = `description` (colour `ROI_LABEL_RGBA`); ``source.image = "../../"`` links the
    label to the HR image two groups up (``tiles/<t>/hr``).
    """
    meta = ome_multiscales(name, ("y", "x"), n_levels, pixel_size_um, kind="max", scale=1)
    meta["image-label"] = {
        "version": "0.5",
        "colors": [{"label-value": 1, "rgba": list(ROI_LABEL_RGBA)}],
        "properties": [{"label-value": 1, "name": description}],
        "source": {"image": "../../"},
    }
    return meta


def _mean_round_u8(a: np.ndarray, axis: tuple[int, ...] | None = None, **_: Any) -> np.ndarray:
    """Mean of each 2x2 block rounded half to even (= ``np.round`` of the float mean), in integers.

    `a` is the reshaped array `dask.array.coarsen` hands over: every axis in `axis` has size 1 or 2.
    """
    if axis is None:  # dask's dtype probe
        return a.astype(np.uint8)
    import itertools

    axis = tuple(ax % a.ndim for ax in axis)
    pairs = [ax for ax in axis if a.shape[ax] == 2]
    total = None
    for combo in itertools.product((0, 1), repeat=len(pairs)):  # strided slices: faster than a.sum(axis)
        sl: list[Any] = [0 if ax in axis else slice(None) for ax in range(a.ndim)]
        for ax, i in zip(pairs, combo, strict=True):
            sl[ax] = i
        part = a[tuple(sl)]
        total = part.astype(np.uint16) if total is None else np.add(total, part, out=total)
    assert total is not None
    n = 2 ** len(pairs)
    if n != 4:
        return np.round(total / n).astype(np.uint8)
    # total = 4q + r: round(total / 4) half to even = q + (r == 3) + (r == 2 and q odd)
    return ((total + 1 + ((total >> 2) & 1)) >> 2).astype(np.uint8)


def pyramid_levels(level0: Any, n_levels: int, chunks: tuple[int, ...], reduce: str) -> list[Any]:
    """Dask levels: each is the 2x2 windowed mean (rounded half to even) or max of the previous, uint8."""
    import dask.array as da

    levels = [level0]
    yx = {level0.ndim - 2: 2, level0.ndim - 1: 2}
    for _ in range(1, n_levels):
        prev = levels[-1]
        if reduce == "mean":
            nxt = da.coarsen(_mean_round_u8, prev, yx, trim_excess=True)
        else:
            nxt = da.coarsen(np.max, prev, yx, trim_excess=True)
        levels.append(nxt)
    return [_rechunk(lv, chunks) for lv in levels]


def _down2_u8(a: np.ndarray, reduce: str, *, strip: int = 256) -> np.ndarray:
    """One 2x2 reduction (rounded-half-even mean or max) of (..., y, x) uint8, odd edges trimmed.

    Works in strips of `strip` rows (temporaries stay small and are reused: no page faults on
    whole-array temporaries) and reads pixel pairs along x as one little-endian uint16 (low byte =
    left pixel), so every pass runs on contiguous memory.
    """
    h, w = a.shape[-2] // 2 * 2, a.shape[-1] // 2 * 2
    out = np.empty((*a.shape[:-2], h // 2, w // 2), np.uint8)
    for idx in np.ndindex(*a.shape[:-2]):
        src, dst = a[idx], out[idx]
        for y in range(0, h, strip):
            v = np.ascontiguousarray(src[y : min(y + strip, h), :w]).view("<u2")  # (rows, w/2)
            lo = v & 0xFF
            hi = v >> 8
            if reduce == "max":
                np.maximum(lo, hi, out=lo)
                dst[y // 2 : y // 2 + len(v) // 2] = np.maximum(lo[0::2], lo[1::2])
                continue
            lo += hi  # horizontal pair sums
            total = lo[0::2] + lo[1::2]  # 2x2 sums, <= 1020
            # total = 4q + r: round(total / 4) half to even = q + (r == 3) + (r == 2 and q odd)
            np.right_shift(total, 2, out=hi[: len(total)])
            hi_t = hi[: len(total)]
            hi_t &= 1
            total += hi_t
            total += 1
            total >>= 2
            dst[y // 2 : y // 2 + len(total)] = total
    return out


def _numpy_levels(level0: np.ndarray, n_levels: int, reduce: str) -> list[np.ndarray]:
    """`pyramid_levels` for an in-memory array (same values)."""
    levels = [level0]
    for _ in range(1, n_levels):
        levels.append(_down2_u8(levels[-1], reduce))
    return levels


def _rechunk(arr: Any, chunks: tuple[int, ...]) -> Any:
    """`arr` rechunked to `chunks`, or `arr` itself when it already has them (no graph layer)."""
    from dask.array.core import normalize_chunks

    return arr if arr.chunks == normalize_chunks(chunks, arr.shape, dtype=arr.dtype) else arr.rechunk(chunks)


def _write_multiscale(
    root: Any,
    group_path: str,
    data: Any,
    axes: tuple[str, ...],
    *,
    chunk: int,
    n_levels: int | None,
    reduce: str,
    metadata: Any,
) -> None:
    """Write the levels of one image group, then ``attrs["ome"] = metadata(n_levels, coarsest)``.

    `metadata` is called with the number of levels written and the coarsest level as NumPy (small:
    read back from the store for Dask input), so display settings can come from the data.
    """
    import dask.array as da

    if chunk <= 0:
        raise ValueError(f"chunk must be a positive number of pixels, got {chunk}")
    chunks = (1, chunk, chunk) if len(axes) == 3 else (chunk, chunk)
    # Dask blocks span several Zarr chunks (whole c, ~2048 px in y and x, multiples of `chunk`), so
    # each task hands zarr many chunks at once (encoded concurrently) and no two tasks share a chunk.
    k = max(1, _BLOCK_PX // chunk)
    blocks = ((data.shape[0],) if len(axes) == 3 else ()) + (chunk * k, chunk * k)
    lazy = isinstance(data, da.Array)
    arr = data if lazy else np.asarray(data)
    if arr.ndim != len(axes) or arr.dtype != np.uint8:
        raise ValueError(
            f"{group_path}: expected {len(axes)}-D uint8 {axes}, got {arr.dtype}{list(arr.shape)}"
        )
    n = default_n_levels(arr.shape[-2:], chunk) if n_levels is None else int(n_levels)
    n = max(1, min(n, int(math.log2(max(min(arr.shape[-2:]), 1))) + 1))
    # In-memory input: numpy levels, written by zarr (which encodes chunks concurrently); a Dask
    # graph only adds overhead there. Lazy input: one Dask compute of all levels.
    if lazy:
        levels = pyramid_levels(_rechunk(arr, blocks), n, blocks, reduce)
    else:
        levels = _numpy_levels(arr, n, reduce)
    grp = root.create_group(group_path, overwrite=True)
    targets = []
    for lv, level in enumerate(levels):
        targets.append(
            grp.create_array(
                str(lv),
                shape=level.shape,
                dtype="uint8",
                chunks=chunks,
                compressors=compressors(),
                fill_value=0,
                dimension_names=axes,
                overwrite=True,
                config=ARRAY_CONFIG,
            )
        )
    if lazy:
        da.store(levels, targets, lock=False, compute=True)
        coarsest = targets[-1][...]
    else:
        for level, target in zip(levels, targets, strict=True):
            target[...] = level
        coarsest = levels[-1]
    # Metadata last: a group without "ome" attrs is visibly incomplete.
    grp.attrs["ome"] = metadata(n, coarsest)


_FROM_STORE = "store"


def _store_pixel_size(root: Any, acq: str, given: float | None | str) -> float | None:
    """`given`, or the store's ``attrs.pixel_size_um[acq]`` when `given` is ``"store"``."""
    if given != _FROM_STORE:
        return None if given is None else float(given)  # type: ignore[arg-type]
    return read_attrs(root).pixel_size_um.get(acq)


def _level_count(group: Any) -> int:
    n = 0
    while str(n) in group:
        n += 1
    return n


def write_image(
    root: Any,
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
    root : zarr.Group
        Store root open for writing.
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
        Number of levels including level 0; default `default_n_levels`.

    Notes
    -----
    Levels 1.. are 2x2 windowed means (rounded, uint8) of the previous level, for viewers only.
    A Dask input is computed and stored in one Dask compute with the active scheduler; a NumPy
    input is reduced in memory and written by zarr directly (same bytes). The metadata places
    every level in the tile's common frame (`ome_multiscales`, half-pixel translations) and names
    the channels with display windows from the data (`omero_metadata`).
    """
    acq = acquisition_name(scale)
    px = _store_pixel_size(root, acq, pixel_size_um)
    markers = list(read_attrs(root).markers) if "srcaco2" in root.attrs else list(MARKERS)
    nc = int(data.shape[0]) if getattr(data, "ndim", 0) == 3 else 0
    if len(markers) != nc:
        markers = [MARKERS[i] if i < len(MARKERS) else f"C{i}" for i in range(nc)]

    def meta(n: int, coarsest: np.ndarray) -> dict[str, Any]:
        return ome_image_metadata(
            f"{tile}/{acq}", n, px, channel_names=markers, coarsest=coarsest, scale=int(scale), kind="mean"
        )

    _write_multiscale(
        root, f"tiles/{int(tile)}/{acq}", data, ("c", "y", "x"),
        chunk=chunk, n_levels=n_levels, reduce="mean", metadata=meta,
    )  # fmt: skip


def write_roi(
    root: Any,
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
    hr_path = f"tiles/{int(tile)}/hr"
    if hr_path not in root or "0" not in root[hr_path]:
        raise StoreFormatError(
            f"{hr_path}: missing; write the HR image (write_image(root, {tile}, 1, ...)) before its ROI label"
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
    px = _store_pixel_size(root, "hr", pixel_size_um)

    def meta(n: int, _coarsest: np.ndarray) -> dict[str, Any]:
        return ome_label_metadata(f"{tile}/{ROI_LABEL}", n, px)

    _write_multiscale(
        root, group, mask, ("y", "x"), chunk=chunk, n_levels=n_hr, reduce="max", metadata=meta
    )  # fmt: skip
    labels = root[group.rsplit("/", 1)[0]]
    names = labels.attrs.get("ome", {}).get("labels", [])
    labels.attrs["ome"] = {"version": "0.5", "labels": sorted({*names, ROI_LABEL})}


def write_index(root: Any, columns: dict[str, np.ndarray]) -> None:
    """Write the window table ``index/<column>`` and then set ``index_complete=True``.

    Parameters
    ----------
    columns : dict of str to ndarray
        Every name of `INDEX_COLUMNS` with N rows (``shift``: (N, 3, 3, 2)); cast to the contract dtype.

    Raises
    ------
    KeyError
        A column is missing or unknown.
    ValueError
        Columns differ in length or trailing shape.
    """
    missing = sorted(set(INDEX_COLUMNS) - set(columns))
    extra = sorted(set(columns) - set(INDEX_COLUMNS))
    if missing or extra:
        raise KeyError(f"index columns: missing {missing}, unknown {extra}; expected {list(INDEX_COLUMNS)}")
    cast = {}
    for name, (dtype, trailing) in INDEX_COLUMNS.items():
        col = np.asarray(columns[name]).astype(dtype, copy=False)
        if col.shape[1:] != trailing:
            raise ValueError(f"index column {name}: shape {col.shape}, expected (N, *{trailing})")
        cast[name] = col
    lengths = {len(c) for c in cast.values()}
    if len(lengths) != 1:
        raise ValueError(f"index columns differ in length: { {k: len(v) for k, v in cast.items()} }")
    update_attrs(root, index_complete=False)
    for name, col in cast.items():
        n = max(len(col), 1)
        root.create_array(
            index_path(name),
            shape=col.shape,
            dtype=col.dtype,
            chunks=(n, *col.shape[1:]),
            compressors=compressors(),
            overwrite=True,
            config=ARRAY_CONFIG,
        )[...] = col
    update_attrs(root, index_complete=True)
