"""Read and validate raw tiles (official layout, `srcaco2.srdata.layout`) before anything is written.

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

from srcaco2.srdata.layout import RawInputError, discover_tiles, folder_name, tile_path

__all__ = [
    "TileInfo", "RawTiles", "TiffRegion", "inspect_tile", "validate_raw", "read_tile", "load_tile",
    "lazy_tile", "PixelSize", "tiff_pixel_size_um", "raw_pixel_size", "from_manifest",
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
        multiple of its scales (the /s acquisition keeps (H/s, W/s)).
    markers, scales, dtype
        Channel names, LR scales and pixel type (SR-CACO-2: CELL0-2, 2/4/8, uint8).
    manifest : srcaco2.srdata.manifest.Manifest or None
        The manifest the set came from (`from_manifest`), None for the official layout.
    """

    root: str
    tiles: list[Any]
    info: dict[Any, dict[int, TileInfo]]
    extent: dict[Any, tuple[int, int]]
    markers: tuple[str, ...] = ("CELL0", "CELL1", "CELL2")
    scales: tuple[int, ...] = (2, 4, 8)
    dtype: str = "uint8"
    manifest: Any = None

    @property
    def acquisitions(self) -> tuple[int, ...]:
        """HR (1) and the LR scales."""
        return (1, *self.scales)


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


def from_manifest(manifest: Any) -> RawTiles:
    """A validated manifest (`srcaco2.srdata.manifest.read_manifest`) as a raw set the build reads."""
    info = {
        t.id: {s: TileInfo(t.path(s), t.shapes[s], manifest.dtype) for s in (1, *manifest.scales)}
        for t in manifest.tiles
    }
    return RawTiles(
        root=manifest.path, tiles=[t.id for t in manifest.tiles], info=info,
        extent={t.id: t.extent for t in manifest.tiles}, markers=tuple(manifest.channels),
        scales=tuple(manifest.scales), dtype=manifest.dtype, manifest=manifest,
    )  # fmt: skip


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


# ------------------------------------------------------------------------------------- pixel size

_UNIT_UM: dict[str, float] = {
    "m": 1e6, "cm": 1e4, "mm": 1e3, "µm": 1.0, "μm": 1.0, "um": 1.0, "\\u00b5m": 1.0, "micron": 1.0,
    "microns": 1.0, "micrometer": 1.0, "micrometre": 1.0, "nm": 1e-3, "å": 1e-4, "pm": 1e-6,
}  # fmt: skip
MAX_PLAUSIBLE_PIXEL_UM = 100.0
"""Larger "pixel sizes" come from display defaults (72 dpi = 353 µm), not a microscope: unknown."""


@dataclasses.dataclass(frozen=True)
class PixelSize:
    """A pixel size and where it came from.

    Attributes
    ----------
    um : float or None
        Micrometres per pixel (square pixels); None = unknown.
    origin : str
        ``ome-xml``, ``imagej``, ``tiff-resolution`` (TIFF resolution tags), ``option`` (given by the
        user) or ``unknown``.
    detail : str
        Which file / tag / value, for the store's provenance and the build log.
    """

    um: float | None
    origin: str
    detail: str = ""

    def to_json(self) -> dict[str, object]:
        return {"um": self.um, "origin": self.origin, "detail": self.detail}


def _square(path: str, origin: str, y_um: float | None, x_um: float | None, what: str) -> PixelSize | None:
    """One size from (y, x) sizes: None when absent, unknown when implausible or not square."""
    if x_um is None and y_um is None:
        return None
    y_um = x_um if y_um is None else y_um
    x_um = y_um if x_um is None else x_um
    assert x_um is not None and y_um is not None
    if not (x_um > 0 and y_um > 0) or abs(x_um - y_um) > 1e-3 * max(x_um, y_um):
        return PixelSize(None, "unknown", f"{path}: {what} gives y {y_um:g} µm, x {x_um:g} µm (not square)")
    if x_um > MAX_PLAUSIBLE_PIXEL_UM:
        return PixelSize(
            None, "unknown", f"{path}: {what} gives {x_um:g} µm/px, a display default, not a calibration"
        )
    return PixelSize(float(x_um), origin, f"{path}: {what}")


def _ome_xml_size(path: str, xml: str) -> PixelSize | None:
    import xml.etree.ElementTree as ET

    try:
        tree = ET.fromstring(xml)
    except ET.ParseError:
        return None
    for el in tree.iter():
        if el.tag.rsplit("}", 1)[-1] != "Pixels":
            continue
        sizes: list[float | None] = []
        for ax in ("Y", "X"):
            v = el.get(f"PhysicalSize{ax}")
            unit = (el.get(f"PhysicalSize{ax}Unit") or "µm").strip().lower()
            if v is None or unit not in _UNIT_UM:
                sizes.append(None)
            else:
                sizes.append(float(v) * _UNIT_UM[unit])
        return _square(path, "ome-xml", sizes[0], sizes[1], "OME-XML Pixels PhysicalSizeY/X")
    return None


def _resolution(page: object, tag: str) -> float | None:
    """Pixels per resolution unit from an X/YResolution tag (a rational), None if absent or zero."""
    tags = getattr(page, "tags", {})
    if tag not in tags:
        return None
    value = tags[tag].value
    num, den = value if isinstance(value, tuple) else (value, 1)
    return float(num) / float(den) if num and den else None


def tiff_pixel_size_um(path: str) -> PixelSize:
    """Pixel size recorded in a TIFF's metadata, in this order: OME-XML, ImageJ, resolution tags.

    - OME-XML: ``Pixels@PhysicalSizeX/Y`` with their units (default µm).
    - ImageJ: the description's ``unit`` (``micron``, ``µm``, ``nm``...) with the X/YResolution tags
      (pixels per unit).
    - Plain TIFF: X/YResolution with ResolutionUnit inch or centimetre; ResolutionUnit "none"
      (what most writers, and the released SR-CACO-2 files, store: 1 px per 1 "unit") means unknown.

    A size above `MAX_PLAUSIBLE_PIXEL_UM` (e.g. 72 dpi) or non-square pixels also give unknown.

    Returns
    -------
    PixelSize
        ``um=None`` with ``origin="unknown"`` when the file records no usable size.

    Raises
    ------
    RawInputError
        The file cannot be opened as a TIFF.
    """
    import tifffile

    try:
        with tifffile.TiffFile(path) as tif:
            page = tif.pages[0]
            if tif.is_ome and tif.ome_metadata:
                got = _ome_xml_size(path, tif.ome_metadata)
                if got is not None:
                    return got
            ij = tif.imagej_metadata if tif.is_imagej else None
            if ij and ij.get("unit"):
                unit = str(ij["unit"]).strip().lower()
                xr, yr = _resolution(page, "XResolution"), _resolution(page, "YResolution")
                if unit in _UNIT_UM and (xr or yr):
                    f = _UNIT_UM[unit]
                    got = _square(
                        path, "imagej", f / yr if yr else None, f / xr if xr else None,
                        f"ImageJ unit {ij['unit']!r} with X/YResolution",
                    )  # fmt: skip
                    if got is not None:
                        return got
            runit = int(getattr(page.tags.get("ResolutionUnit"), "value", 2))  # TIFF default: inch
            per_unit_um = {2: 25400.0, 3: 10000.0}.get(runit)
            xr, yr = _resolution(page, "XResolution"), _resolution(page, "YResolution")
            if per_unit_um is not None and (xr or yr):
                unit_name = "inch" if runit == 2 else "cm"
                y_um = per_unit_um / yr if yr else None
                x_um = per_unit_um / xr if xr else None
                got = _square(path, "tiff-resolution", y_um, x_um, f"X/YResolution per {unit_name}")
                if got is not None:
                    return got
    except (OSError, ValueError, tifffile.TiffFileError) as exc:
        raise RawInputError(f"{path}: cannot read the TIFF header ({type(exc).__name__}: {exc})") from None
    return PixelSize(None, "unknown", f"{path}: no pixel size in OME-XML, ImageJ or resolution tags")


def raw_pixel_size(raw_tiles: RawTiles, option_um: float | None = None) -> PixelSize:
    """The HR pixel size of a raw set: the user's option, else the HR TIFFs' metadata, else unknown.

    An explicit `option_um` wins (a warning is logged when the metadata says otherwise); without
    it, the first HR tile whose metadata records a size gives it (tiles that disagree by more than
    0.1 % are logged). The /s acquisitions are s times the HR size (the store's grids are aligned).
    """
    found = [(t, tiff_pixel_size_um(raw_tiles.info[t][1].path)) for t in raw_tiles.tiles]
    known = [(t, p) for t, p in found if p.um is not None]
    meta = known[0][1] if known else None
    if meta is not None and meta.um is not None:
        odd = [(t, p.um) for t, p in known if abs(float(p.um) - meta.um) > 1e-3 * meta.um]  # type: ignore[arg-type]
        if odd:
            log.warning("HR tiles disagree on the pixel size: %s µm (using %g µm)", odd, meta.um)
    if option_um is not None:
        if not (float(option_um) > 0):
            raise ValueError(f"pixel size must be a positive number of micrometres, got {option_um!r}")
        if meta is not None and meta.um is not None and abs(meta.um - float(option_um)) > 1e-3 * meta.um:
            log.warning("pixel size option %g µm overrides the TIFF metadata (%s: %g µm)",
                        option_um, meta.detail, meta.um)  # fmt: skip
        return PixelSize(float(option_um), "option", "--pixel-size-um")
    if meta is not None:
        return meta
    return PixelSize(
        None, "unknown", "no pixel size in the HR TIFFs (OME-XML, ImageJ, resolution tags), no option given"
    )


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

    def __init__(self, path: str, shape: tuple[int, int, int], dtype: str = "uint8") -> None:
        self.path = str(path)
        self.shape = tuple(int(v) for v in shape)
        self.dtype = np.dtype(dtype)
        self.ndim = 3

    def __repr__(self) -> str:
        return f"TiffRegion({self.path!r}, shape={self.shape}, dtype={self.dtype})"

    def __reduce__(self) -> tuple[Any, tuple[str, tuple[int, ...], str]]:
        return (TiffRegion, (self.path, self.shape, str(self.dtype)))

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
                flat = len(full) == 2  # an (H, W) TIFF is one channel
                region = sl[1:] if flat else sl
                if offset is not None and np.dtype(series.dtype) == self.dtype and len(full) in (2, 3):
                    dt = self.dtype.newbyteorder(tif.byteorder)
                    mm = np.memmap(self.path, dt, mode="r", offset=int(offset), shape=full)
                    data = np.array(mm[region], dtype=self.dtype)
                else:
                    import zarr

                    with series.aszarr() as store:
                        data = np.asarray(zarr.open_array(store, mode="r")[region], dtype=self.dtype)
                if flat:
                    data = data[None][sl[0]]
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
    for s in raw_tiles.acquisitions:
        info = raw_tiles.info[tile][s]
        shape = (info.shape[0], hh // s, ww // s)
        b = int(blocks[s]) if isinstance(blocks, dict) else max(8, int(blocks) // s)
        out[s] = da.from_array(
            TiffRegion(info.path, shape, raw_tiles.dtype), chunks=(shape[0], b, b), asarray=False,
            meta=np.empty((0, 0, 0), raw_tiles.dtype),  # no probing read of the file here
            name=f"raw-{tile}-{s}-{da.core.tokenize(info.path, shape, b, os.path.getmtime(info.path))}",
        )  # fmt: skip
    return out
