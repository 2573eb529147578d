"""A user's own image, outside any store: read a TIFF or OME-Zarr image, write a TIFF row by row.

`load_image` reads a 2-D ``(y, x)`` or channel-first ``(c, y, x)`` TIFF (plain, ImageJ or
OME-TIFF) or the level 0 of an OME-Zarr image (NGFF 0.4 / 0.5), uint8 or uint16, with its
channel names and pixel size when the file states them. `TiffRowWriter` writes an ImageJ
hyperstack TIFF through a memory map (`tifffile.memmap`), so rows written one band at a time
never need the whole image in RAM. The OME-Zarr output is `srcaco2.srdata.ome.OmeImageWriter`.
"""

from __future__ import annotations

import dataclasses
import json
import os
from collections.abc import Sequence
from typing import Any

import numpy as np

__all__ = [
    "InputImage", "load_image", "image_channels", "output_kind", "check_image_request", "TiffRowWriter",
    "TIFF_MAX_BYTES", "image_kind",
]  # fmt: skip

TIFF_MAX_BYTES: int = 4 * 2**30 - 2**24
"""Largest TIFF output (bytes of pixels): the classic TIFF / ImageJ limit (4 GiB, less headers)."""

_UM_UNITS = {"um": 1.0, "micron": 1.0, "microns": 1.0, "\u00b5m": 1.0, "\\u00B5m": 1.0, "micrometer": 1.0,
             "nm": 1e-3, "nanometer": 1e-3, "mm": 1e3, "millimeter": 1e3}  # fmt: skip


@dataclasses.dataclass(frozen=True)
class InputImage:
    """An image to super-resolve.

    Attributes
    ----------
    data : (c, y, x) ndarray, uint8 or uint16
        The pixels, LR pixels.
    channel_names : list of str
        One name per channel (from the file, else ``C0, C1, ...``).
    pixel_size_um : float or None
        Pixel size along x in micrometres, when the file states it.
    path : str
        Where it was read from.
    kind : {"tiff", "ome-zarr"}
        File format.
    """

    data: np.ndarray
    channel_names: list[str]
    pixel_size_um: float | None
    path: str
    kind: str


def image_kind(path: str) -> str:
    """``"tiff"`` for ``*.tif``/``*.tiff``, ``"ome-zarr"`` for ``*.zarr`` (or a folder holding zarr.json /
    .zattrs); raises ValueError for anything else."""
    low = path.rstrip("/").lower()
    if low.endswith((".tif", ".tiff")):
        return "tiff"
    if low.endswith(".zarr") or any(os.path.exists(os.path.join(path, f)) for f in ("zarr.json", ".zattrs")):
        return "ome-zarr"
    raise ValueError(f"{path}: unknown image format; give a .tif/.tiff file or an OME-Zarr (.zarr) image")


def _check_pixels(arr: np.ndarray, path: str, axes: str) -> np.ndarray:
    if arr.dtype not in (np.uint8, np.uint16):
        raise ValueError(
            f"{path}: pixels are {arr.dtype}; only uint8 and uint16 images are supported "
            "(convert the image, e.g. to 16 bit, first)"
        )
    if arr.ndim == 2:
        return arr[None]
    if arr.ndim == 3 and arr.shape[0] <= 16:
        return arr
    raise ValueError(
        f"{path}: shape {list(arr.shape)} (axes {axes or '?'}) is neither (y, x) nor channel-first "
        "(c, y, x) with at most 16 channels; export one 2-D plane or a channel-first stack"
    )


def _tiff_pixel_size(tif: Any) -> float | None:
    """Pixel size along x in µm from OME-XML, ImageJ metadata + resolution, or a centimetre resolution."""
    if tif.is_ome and tif.ome_metadata:
        import re

        m = re.search(r'PhysicalSizeX="([0-9.eE+-]+)"', tif.ome_metadata)
        unit = re.search(r'PhysicalSizeXUnit="([^"]+)"', tif.ome_metadata)
        if m:
            return float(m.group(1)) * _UM_UNITS.get(unit.group(1) if unit else "um", 1.0)
    page = tif.pages[0]
    tag = page.tags.get("XResolution")
    if tag is None:
        return None
    num, den = tag.value
    if not num:
        return None
    per_unit = den / num  # units per pixel
    ij = tif.imagej_metadata or {}
    if ij.get("unit") in _UM_UNITS:
        return per_unit * _UM_UNITS[ij["unit"]]
    unit_tag = page.tags.get("ResolutionUnit")
    if unit_tag is not None and int(unit_tag.value) == 3:  # centimetre (inch is usually a 72-dpi default)
        return per_unit * 1e4
    return None


def _load_tiff(path: str) -> InputImage:
    import tifffile

    try:
        with tifffile.TiffFile(path) as tif:
            series = tif.series[0]
            arr = series.asarray()
            axes = series.axes
            px = _tiff_pixel_size(tif)
            ij = tif.imagej_metadata or {}
            labels = ij.get("Labels")
    except (OSError, ValueError, tifffile.TiffFileError) as exc:
        raise ValueError(f"{path}: cannot be read as a TIFF ({type(exc).__name__}: {exc})") from None
    if arr.ndim == 3 and axes.endswith("S") and arr.shape[-1] in (3, 4):
        raise ValueError(
            f"{path}: an RGB(A) image (samples last, axes {axes}); save the channels as a "
            "channel-first (c, y, x) stack (e.g. ImageJ hyperstack) or predict one channel"
        )
    data = _check_pixels(np.asarray(arr), path, axes)
    names = [str(v) for v in labels] if isinstance(labels, list) and len(labels) == len(data) else None
    return InputImage(data, names or [f"C{i}" for i in range(len(data))], px, path, "tiff")


def _load_ome_zarr(path: str) -> InputImage:
    from srcaco2.srdata.ome_read import open_ome_zarr_image

    img = open_ome_zarr_image(path)
    data = _check_pixels(np.asarray(img.data[...]), path, "".join(img.axes))
    names = img.channel_names if img.channel_names and len(img.channel_names) == len(data) else None
    return InputImage(data, names or [f"C{i}" for i in range(len(data))], img.pixel_size_um, path, "ome-zarr")


def image_channels(path: str | os.PathLike[str]) -> int:
    """The channel count of a TIFF or OME-Zarr image from its header alone (no pixels read).

    Raises
    ------
    FileNotFoundError, ValueError
        As `load_image` for a missing path, an unknown format or an unreadable header.
    """
    p = os.fspath(path)
    if not os.path.exists(p):
        raise FileNotFoundError(f"{p}: no such file or directory; give a TIFF or an OME-Zarr image")
    if image_kind(p) == "ome-zarr":
        from srcaco2.srdata.ome_read import open_ome_zarr_image

        img = open_ome_zarr_image(p)
        return int(img.data.shape[0]) if len(img.data.shape) == 3 else 1
    import tifffile

    try:
        with tifffile.TiffFile(p) as tif:
            shape, axes = tif.series[0].shape, tif.series[0].axes
    except (OSError, ValueError, tifffile.TiffFileError) as exc:
        raise ValueError(f"{p}: cannot be read as a TIFF ({type(exc).__name__}: {exc})") from None
    return int(shape[0]) if len(shape) == 3 and not axes.endswith("S") else 1


def output_kind(path: str) -> str:
    """``"ome-zarr"`` for ``*.zarr``, ``"tiff"`` for ``*.tif``/``*.tiff``; ValueError otherwise."""
    low = path.rstrip("/").lower()
    if low.endswith(".zarr"):
        return "ome-zarr"
    if low.endswith((".tif", ".tiff")):
        return "tiff"
    raise ValueError(f"--output {path}: give a name ending in .ome.zarr / .zarr (OME-Zarr) or .tif / .tiff")


def check_image_request(
    input_path: str, output_path: str | None, channels: Sequence[int] | None, overwrite: bool
) -> None:
    """Refuse a `predict_image` request from headers alone, before any model is loaded: an input that
    is not a TIFF / OME-Zarr image, a channel it does not have, an output of another format, an
    existing output without `overwrite`, or an output folder that cannot be written.

    Raises
    ------
    FileNotFoundError, FileExistsError, ValueError
        With the argument to change.
    """
    n = image_channels(input_path)
    bad = [int(c) for c in channels or () if not 0 <= int(c) < n]
    if bad:
        raise ValueError(f"{input_path}: no channel(s) {bad}; the image has {n} (0..{n - 1}): fix --channel")
    if output_path is not None:
        from srcaco2.srdata.storefs import ensure_writable

        output_kind(output_path)
        if os.path.exists(output_path) and not overwrite:
            raise FileExistsError(f"{output_path}: exists; choose another --output or pass --overwrite")
        ensure_writable(
            os.path.dirname(os.path.abspath(output_path)), fix="choose an --output in a writable folder"
        )


def load_image(path: str | os.PathLike[str]) -> InputImage:
    """Read a TIFF or an OME-Zarr image (level 0) into memory as (c, y, x).

    Parameters
    ----------
    path : str or path-like
        ``*.tif`` / ``*.tiff`` (2-D or channel-first; plain, ImageJ or OME-TIFF) or an OME-Zarr
        image group (``*.zarr``); the first series / level 0 is read.

    Returns
    -------
    InputImage

    Raises
    ------
    FileNotFoundError
        Nothing at `path`.
    ValueError
        Unknown format, unreadable file, a dtype other than uint8/uint16, or a shape that is not
        (y, x) or (c, y, x); the message says how to fix it.
    """
    p = os.fspath(path)
    if not os.path.exists(p):
        raise FileNotFoundError(f"{p}: no such file or directory; give a TIFF or an OME-Zarr image")
    return _load_tiff(p) if image_kind(p) == "tiff" else _load_ome_zarr(p)


class TiffRowWriter:
    """Write a (c, y, x) ImageJ hyperstack TIFF row band by row band through a memory map.

    The file is uncompressed and contiguous (`tifffile.memmap`): rows go straight to the page
    cache, so RAM holds only the band being written. Above `TIFF_MAX_BYTES` (the classic TIFF /
    ImageJ limit) it refuses and suggests OME-Zarr.

    Parameters
    ----------
    path : str
        Output file (must not exist unless `overwrite`).
    shape : (c, y, x)
        Image shape, pixels.
    dtype : uint8 or uint16
    pixel_size_um : float or None
        Written as the ImageJ resolution (unit um) when known.
    channel_names : sequence of str
        ImageJ channel labels.
    info : dict, optional
        JSON-ready provenance, stored as the ImageJ ``Info`` text.
    overwrite : bool
        Replace an existing file.
    """

    def __init__(
        self,
        path: str,
        shape: tuple[int, int, int],
        *,
        dtype: Any,
        pixel_size_um: float | None,
        channel_names: Sequence[str],
        info: dict[str, Any] | None = None,
        overwrite: bool = False,
    ) -> None:
        import tifffile

        c, h, w = (int(n) for n in shape)
        nbytes = c * h * w * np.dtype(dtype).itemsize
        if nbytes > TIFF_MAX_BYTES:
            raise ValueError(
                f"{path}: the output would hold {nbytes / 2**30:.1f} GiB of pixels, above the 4 GiB a "
                "classic TIFF / ImageJ file can hold; write OME-Zarr instead (--output OUT.ome.zarr)"
            )
        if os.path.exists(path) and not overwrite:
            raise FileExistsError(f"{path}: exists; choose another --output or pass --overwrite")
        meta: dict[str, Any] = {"axes": "CYX" if c > 1 else "YX", "Info": json.dumps(info or {})}
        if c > 1:
            meta["Labels"] = [str(n) for n in channel_names]
        kwargs: dict[str, Any] = {}
        if pixel_size_um:
            meta["unit"] = "um"
            kwargs["resolution"] = (1.0 / pixel_size_um, 1.0 / pixel_size_um)
        self.path, self.shape, self._done = path, (c, h, w), [0] * c
        self._map = tifffile.memmap(
            path, shape=(c, h, w) if c > 1 else (h, w), dtype=np.dtype(dtype), imagej=True, metadata=meta,
            **kwargs,
        )  # fmt: skip

    def write_rows(self, row0: int, rows: np.ndarray, channel: int | None = None) -> None:
        """Write rows ``row0 .. row0 + n`` in order (per channel); ``rows``: (c, n, x), or (1, n, x)
        for one `channel`."""
        planes = range(self.shape[0]) if channel is None else [int(channel)]
        if rows.shape[0] != len(planes) or rows.shape[2] != self.shape[2]:
            raise ValueError(f"{self.path}: rows {rows.shape} do not fit the image {self.shape}")
        for k in planes:
            if row0 != self._done[k]:
                raise ValueError(f"{self.path}: channel {k} expects row {self._done[k]}, got {row0}")
        n = rows.shape[1]
        for i, k in enumerate(planes):
            if self.shape[0] > 1:
                self._map[k, row0 : row0 + n] = rows[i]
            else:
                self._map[row0 : row0 + n] = rows[i]
            self._done[k] = row0 + n
        if n and (row0 // 4096) != ((row0 + n) // 4096):
            self._map.flush()  # hand written pages to the OS now and then

    def finish(self) -> None:
        """Flush and close; raises ValueError if rows are missing."""
        if min(self._done) != self.shape[1]:
            raise ValueError(f"{self.path}: {min(self._done)} of {self.shape[1]} rows written")
        self._map.flush()
        del self._map
