"""Read and validate raw tiles (official layout, `srdata.layout`) before anything is written.

Every check runs on TIFF headers only (`inspect_tile`, `validate_raw`), so a bad input set fails
in seconds with one message naming the file and the fix, before a store is created.

The build reads pixels lazily (`lazy_tile`: Dask arrays of `TiffRegion` handles), block by block
in the tasks that need them, so the process that builds the graph never holds a tile; `load_tile`
reads a whole tile into memory (tests, small tools).
"""

from __future__ import annotations

import dataclasses
import logging
import os
import struct
from typing import Any

import numpy as np

from srdata.layout import RawInputError, discover_tiles, folder_name, tile_path

__all__ = [
    "TileInfo", "RawTiles", "TiffRegion", "inspect_tile", "validate_raw", "read_tile", "load_tile",
    "lazy_tile",
]  # fmt: skip

log = logging.getLogger(__name__)

SCALES_ALL: tuple[int, ...] = (1, 2, 4, 8)


@dataclasses.dataclass(frozen=True)
class TileInfo:
    """Header facts of one raw TIFF: ``shape`` is (c, y, x) in that acquisition's pixels."""

    path: str
    shape: tuple[int, int, int]
    dtype: str


@dataclasses.dataclass(frozen=True)
class RawTiles:
    """A validated raw set.

    Attributes
    ----------
    root : str
        The RAW directory.
    tiles : list of int
        Tile ids (sorted).
    info : dict
        ``info[tile][scale]`` -> `TileInfo` for scale in (1, 2, 4, 8).
    extent : dict
        ``extent[tile]`` -> (H, W), the HR extent after cropping every acquisition to the common
        multiple of 8 (the /s acquisition keeps (H/s, W/s)).
    """

    root: str
    tiles: list[int]
    info: dict[int, dict[int, TileInfo]]
    extent: dict[int, tuple[int, int]]


def inspect_tile(path: str, *, n_channels: int = 3) -> TileInfo:
    """Read one TIFF header and check it is a complete (c, y, x) uint8 image with `n_channels`.

    Raises
    ------
    RawInputError
        Unreadable/truncated file, not 3-D channel-first, wrong channel count or dtype.
    """
    import tifffile

    tiff_log = logging.getLogger("tifffile")  # its own ERROR line would duplicate our one message
    level = tiff_log.level
    tiff_log.setLevel(logging.CRITICAL)
    try:
        with tifffile.TiffFile(path) as tif:
            series = tif.series[0]
            shape = tuple(int(v) for v in series.shape)
            dtype = np.dtype(series.dtype)
            size = os.path.getsize(path)
            end, total, compressed = 0, 0, False
            for page in series.pages:
                if page is None:
                    continue
                offs = getattr(page, "dataoffsets", ()) or ()
                counts = getattr(page, "databytecounts", ()) or ()
                compressed |= int(getattr(page, "compression", 1)) != 1
                for o, c in zip(offs, counts, strict=False):
                    end = max(end, int(o) + int(c))
                    total += int(c)
            expected = int(np.prod(shape)) * dtype.itemsize
            if compressed:
                series.pages[-1].asarray()  # decodes the last plane only
                total = expected
    except (tifffile.TiffFileError, OSError, ValueError, IndexError, struct.error) as exc:
        raise RawInputError(
            f"{path}: not a readable TIFF ({type(exc).__name__}: {exc}); the file is truncated or of "
            "another format: copy or export it again"
        ) from None
    finally:
        tiff_log.setLevel(level)
    if end > size or total < expected:
        raise RawInputError(
            f"{path}: truncated TIFF ({min(total, size)} of {expected} image bytes present, data ends at "
            f"byte {end}, file has {size}); copy or export it again"
        )
    if len(shape) != 3 or shape[0] != n_channels:
        raise RawInputError(
            f"{path}: shape {list(shape)}, expected ({n_channels}, y, x) with the {n_channels} markers "
            "CELL0, CELL1, CELL2 first; re-export the tile channel-first with exactly these planes"
        )
    if dtype != np.uint8:
        raise RawInputError(
            f"{path}: dtype {dtype}, expected uint8 (raw 8-bit acquisitions); convert the tile to "
            "uint8 without rescaling if its values fit, or re-export it as 8-bit"
        )
    return TileInfo(path=path, shape=shape, dtype=str(dtype))  # type: ignore[arg-type]


def validate_raw(raw: str | os.PathLike, *, size_tolerance: int = 4) -> RawTiles:
    """Check the whole raw set from headers: layout, readability, dtype, channels, LR ≈ HR/s.

    Parameters
    ----------
    raw : path
        Directory with ``HighRes1024/``, ``LowRes512/``, ``LowRes256/``, ``LowRes128/``.
    size_tolerance : int
        Largest accepted difference, in pixels of the LR acquisition, between its size and HR/s.

    Raises
    ------
    RawInputError
        The first problem found, naming the file and the fix.
    """
    raw = os.fspath(raw)
    tiles = discover_tiles(raw)
    info: dict[int, dict[int, TileInfo]] = {}
    extent: dict[int, tuple[int, int]] = {}
    for t in tiles:
        info[t] = {s: inspect_tile(tile_path(raw, t, s)) for s in SCALES_ALL}
        _, hh, ww = info[t][1].shape
        e8 = [hh // 8, ww // 8]
        for s in SCALES_ALL[1:]:
            ti = info[t][s]
            _, h, w = ti.shape
            if abs(h - hh / s) > size_tolerance or abs(w - ww / s) > size_tolerance:
                raise RawInputError(
                    f"{ti.path}: size {h}x{w}, expected about {hh / s:.0f}x{ww / s:.0f} (HR "
                    f"{tile_path(raw, t, 1)} is {hh}x{ww}, /{s}); this is not the {folder_name(s)} scan "
                    "of that tile: replace it with the matching acquisition"
                )
            e8 = [min(e8[0], h // (8 // s)), min(e8[1], w // (8 // s))]
        if min(e8) * 8 < 640:
            log.warning("tile %d: HR extent %dx%d holds no 640 px window", t, e8[0] * 8, e8[1] * 8)
        extent[t] = (8 * e8[0], 8 * e8[1])
    return RawTiles(root=raw, tiles=tiles, info=info, extent=extent)


def read_tile(path: str) -> np.ndarray:
    """Whole tile as (c, y, x) uint8 (raises `RawInputError` naming the file if it cannot be decoded)."""
    import tifffile

    try:
        data = tifffile.imread(path)
    except Exception as exc:  # noqa: BLE001 - any decoder failure is a bad file
        raise RawInputError(
            f"{path}: cannot decode the TIFF ({type(exc).__name__}: {exc}); copy or export it again"
        ) from None
    if data.ndim != 3 or data.dtype != np.uint8:
        raise RawInputError(f"{path}: decoded {data.dtype}{list(data.shape)}, expected (3, y, x) uint8")
    return data


def load_tile(raw_tiles: RawTiles, tile: int) -> dict[int, np.ndarray]:
    """The four acquisitions of `tile` cropped to the common extent: ``{1: hr, 2: x2, 4: x4, 8: x8}``.

    Returns
    -------
    dict of int to (3, H/s, W/s) uint8
        HR is (3, H, W) with (H, W) = ``raw_tiles.extent[tile]``.
    """
    hh, ww = raw_tiles.extent[tile]
    out = {}
    for s in SCALES_ALL:
        data = read_tile(raw_tiles.info[tile][s].path)
        out[s] = np.ascontiguousarray(data[:, : hh // s, : ww // s])
    return out


class TiffRegion:
    """A raw TIFF as a lazily read (c, y, x) uint8 array, cropped to `shape` (for `dask.array.from_array`).

    Only the path and the shape travel with it (it pickles to a few hundred bytes); every
    ``obj[c, y0:y1, x0:x1]`` opens the file where it runs and reads just that region: through a
    read-only memory map when the image data is stored contiguously and uncompressed (the common
    case for raw scans), else through tifffile's Zarr view of the strips/tiles (only the strips
    that hold the region are decoded).

    Parameters
    ----------
    path : str
        The TIFF file (a path every worker can read).
    shape : (c, y, x)
        The crop of the image to expose (top-left aligned, at most the image's shape).
    """

    def __init__(self, path: str, shape: tuple[int, int, int]) -> None:
        self.path = str(path)
        self.shape = tuple(int(v) for v in shape)
        self.dtype = np.dtype(np.uint8)
        self.ndim = 3

    def __repr__(self) -> str:
        return f"TiffRegion({self.path!r}, shape={self.shape})"

    def __reduce__(self) -> tuple[Any, tuple[str, tuple[int, ...]]]:
        return (TiffRegion, (self.path, self.shape))

    def _norm(self, key: Any) -> tuple[tuple[slice, ...], tuple[int, ...]]:
        """Contiguous slices of `key` and the axes given as integers (dropped from the result)."""
        if not isinstance(key, tuple):
            key = (key,)
        key = key + (slice(None),) * (3 - len(key))
        out, drop = [], []
        for ax, (k, n) in enumerate(zip(key, self.shape, strict=True)):
            if isinstance(k, (int, np.integer)):
                i = int(k) + (n if k < 0 else 0)
                if not 0 <= i < n:
                    raise IndexError(f"{self!r}: index {k} out of range for axis {ax} of size {n}")
                out.append(slice(i, i + 1))
                drop.append(ax)
                continue
            if not isinstance(k, slice) or k.step not in (None, 1):
                raise IndexError(f"{self!r}: only integers and contiguous slices are supported, got {key}")
            start, stop, _ = k.indices(n)
            out.append(slice(start, max(start, stop)))
        return tuple(out), tuple(drop)

    def __getitem__(self, key: Any) -> np.ndarray:
        import tifffile

        sl, drop = self._norm(key)
        try:
            with tifffile.TiffFile(self.path) as tif:
                series = tif.series[0]
                offset = series.dataoffset
                full = tuple(int(v) for v in series.shape)
                if offset is not None and np.dtype(series.dtype) == np.uint8 and len(full) == 3:
                    mm = np.memmap(self.path, np.uint8, mode="r", offset=int(offset), shape=full)
                    data = np.array(mm[sl])
                else:
                    import zarr

                    with series.aszarr() as store:
                        data = np.asarray(zarr.open_array(store, mode="r")[sl])
        except Exception as exc:  # noqa: BLE001 - any decoder failure is a bad file
            raise RawInputError(
                f"{self.path}: cannot read region {[(s.start, s.stop) for s in sl]} "
                f"({type(exc).__name__}: {exc}); copy or export the file again"
            ) from None
        return data.squeeze(axis=drop) if drop else data


def lazy_tile(raw_tiles: RawTiles, tile: int, *, blocks: int | dict[int, int] = 2048) -> dict[int, Any]:
    """The four acquisitions of `tile` as lazy Dask arrays, read chunk-wise where the task runs.

    Parameters
    ----------
    raw_tiles : RawTiles
    tile : int
    blocks : int or dict of int to int
        Edge of one Dask block (whole c): ``blocks // s`` px for the /s acquisition, or
        ``blocks[s]`` px.

    Returns
    -------
    dict of int to (3, H/s, W/s) uint8 dask.array.Array
        Same values as `load_tile`; the graph holds only `TiffRegion` handles (path + shape).
    """
    import dask.array as da

    hh, ww = raw_tiles.extent[tile]
    out = {}
    for s in SCALES_ALL:
        info = raw_tiles.info[tile][s]
        shape = (info.shape[0], hh // s, ww // s)
        b = int(blocks[s]) if isinstance(blocks, dict) else max(8, int(blocks) // s)
        out[s] = da.from_array(
            TiffRegion(info.path, shape), chunks=(shape[0], b, b), asarray=False,
            meta=np.empty((0, 0, 0), np.uint8),  # no probing read of the file here
            name=f"raw-{tile}-{s}-{da.core.tokenize(info.path, shape, b, os.path.getmtime(info.path))}",
        )  # fmt: skip
    return out
