"""The store contract (format version 2; version 1 still read): names, paths, attributes and reading rules.

This module is the single source of truth for what a SR-CACO-2 store looks like on disk. The
builder (`srcaco2.srdata.build`, `srcaco2.srdata.import_patches`) writes it, every reader
(`srcaco2.srdata.loader`,
`srcaco2.srdata.export_patches`, `srcaco2.srdata.inspect`, `trainers`) reads it through the names defined
here.
See docs/store.md for the prose version.

Layout (all paths relative to the root group; coordinates in HR pixels unless named otherwise)::

    zarr.json                 attrs["srcaco2"] = StoreAttrs (format_version, markers, scales, ...)
    tiles/<tile>/hr/<level>   OME-NGFF multiscales image, axes (c, y, x), level "0" = acquisition
    tiles/<tile>/x2/<level>   the /2 acquisition (its own pixels, never derived from HR)
    tiles/<tile>/x4/<level>
    tiles/<tile>/x8/<level>
    tiles/<tile>/hr/labels/roi/<level>
                              uint8 ROI mask, an OME-NGFF label image of the HR image, 1 = cell
                              (``tiles/<tile>/roi/<level>`` in format version 1; use `roi_path`)
    index/<column>            the window table, one row per candidate window (see INDEX_COLUMNS)
    predictions/<name>/<tile>/<level>
                              a whole-tile prediction (`srtrain predict`): OME-NGFF multiscales,
                              axes (c, y, x), uint8, HR pixels of the tile, c = its markers;
                              attrs[PREDICTION_ATTRS] = what made it (see `prediction_path`)

Registration rule (docs/protocol.md#registration, made exact). For an index row with 640² HR window at
(y0, x0) and registration shift (dy, dx) (HR pixels, integers, the rounded mean TV-L1 flow of
that window, marker and scale), the released 512² HR patch is ``hr[y0+64 : y0+576, x0+64 : x0+576]``
and the released (512/s)² LR patch is, for k in [0, 512/s)::

    lr_patch[k, l] = lrwin[k + 64/s + floor((dy + s/2) / s),  l + 64/s + floor((dx + s/2) / s)]

where ``lrwin = lr[y0/s : y0/s + 640/s, x0/s : x0/s + 640/s]`` and reads outside ``lrwin`` give 0
(the original warped the NEAREST-upsampled window with zero fill, cropped 64 px, then
NEAREST-downsampled; PIL NEAREST maps output i to input floor((i + 0.5)·s) when downsampling and
to floor(i / s) when upsampling, which collapses to the integer offset above).
`lr_patch_origin` computes that LR origin; `read_lr_patch` applies the zero fill.
"""

from __future__ import annotations

import dataclasses
import json
from collections.abc import Mapping
from typing import Any

import numpy as np

__all__ = [
    "FORMAT_VERSION",
    "MARKERS",
    "SCALES",
    "SCALE_RANGE",
    "MAX_CHANNELS",
    "DTYPES",
    "ACQUISITIONS",
    "SPLITS",
    "PATCH_SIZE",
    "MARGIN",
    "WINDOW_SIZE",
    "STRIDE",
    "INDEX_COLUMNS",
    "OPTIONAL_INDEX_COLUMNS",
    "StoreFormatError",
    "StoreAttrs",
    "WindowGeometry",
    "shift_axes",
    "index_columns",
    "shift_slot",
    "acquisition_name",
    "ROI_LABEL",
    "pixel_centres",
    "pixel_sizes",
    "READABLE_FORMAT_VERSIONS",
    "PREDICTIONS",
    "PREDICTION_ATTRS",
    "PREDICTION_FIELDS",
    "split_code",
    "split_name",
    "lr_patch_origin",
    "read_lr_patch",
    "read_hr_patch",
]

FORMAT_VERSION: int = 2
"""Version of the store layout written by this toolkit.

2: every chunk carries a crc32c checksum (zarr's ``crc32c`` codec after blosc) and every chunk is
written (empty ones too), so corruption is an error on read and a missing chunk file is detectable;
the ROI mask is an OME-NGFF label image of the HR image, ``tiles/<t>/hr/labels/roi``.
1: no checksums, the ROI mask a plain image ``tiles/<t>/roi``; still read, never written."""

READABLE_FORMAT_VERSIONS: tuple[int, ...] = (1, FORMAT_VERSION)
"""Store versions readers accept; paths that moved between versions come from `roi_path` & co.;
version 1 stores lack chunk checksums (`srdata info` says so)."""

ROI_LABEL: str = "roi"
"""Name of the ROI label image under ``tiles/<t>/hr/labels/`` (and of the version-1 group)."""

MARKERS: tuple[str, ...] = ("CELL0", "CELL1", "CELL2")
"""Channel order of every image (c axis): CELL0 Survivin (dimmest), CELL1, CELL2 H2B (brightest)."""

SCALES: tuple[int, ...] = (2, 4, 8)
"""Low-resolution acquisitions of SR-CACO-2, as the divisor of the HR pixel count per side."""

SCALE_RANGE: range = range(2, 9)
"""Scales a store may hold (any integer 2..8; a store's own are ``attrs.scales``)."""

MAX_CHANNELS: int = 8
"""Most channels (markers) a store may hold."""

DTYPES: tuple[str, ...] = ("uint8", "uint16")
"""Pixel types of a store's images (kept as acquired; ``attrs.dtype``)."""

ACQUISITIONS: tuple[str, ...] = ("hr", "x2", "x4", "x8")

SPLITS: tuple[str, ...] = ("train", "val", "test")
"""Split names; the index stores them as codes 0, 1, 2 (-1 = in no split)."""

PATCH_SIZE: int = 512
"""Side of a released patch, HR pixels."""

MARGIN: int = 64
"""Registration margin on each side of a patch, HR pixels."""

WINDOW_SIZE: int = PATCH_SIZE + 2 * MARGIN  # 640
"""Side of a candidate window (patch + margins), HR pixels."""

STRIDE: int = 256
"""Sliding-window stride, HR pixels (docs/protocol.md#window-parameters)."""

INDEX_COLUMNS: dict[str, tuple[str, tuple[int, ...]]] = {
    # name: (dtype, trailing shape); every column has N rows first.
    "tile": ("int32", ()),  # tile id (the <t> of HighRes1024-<t>.tif)
    "y0": ("int32", ()),  # top row of the 640² window, HR px
    "x0": ("int32", ()),  # left column of the 640² window, HR px
    "size": ("int32", ()),  # window side, HR px (640)
    "roi_fraction": ("float32", ()),  # fraction of ROI pixels in the acceptance region
    "accepted": ("bool", ()),  # passes the acceptance rule (docs/protocol.md#roi-rule or the configured one)
    "split": ("int8", ()),  # 0 train, 1 val, 2 test, -1 none
    "official_patch_id": ("int32", ()),  # patch id of the released data set, -1 if none
    "fold_line": ("int32", ()),  # line in the official fold lists of its split (0-based), -1 if none
    "shift": ("int16", (len(MARKERS), len(SCALES), 2)),  # (dy, dx) HR px per marker, scale
    # unrounded mean TV-L1 flow (dy, dx), HR px, NaN = not estimated; beyond the paper
    # (docs/protocol.md#subpixel-alignment); written by `srdata register-subpixel`, never by the build
    "shift_subpixel": ("float32", (len(MARKERS), len(SCALES), 2)),
}
"""Columns of ``index/``: one 1-D (or (N, 3, 3, 2) for ``shift``, ``shift_subpixel``) Zarr array each."""

OPTIONAL_INDEX_COLUMNS: dict[str, float] = {"fold_line": -1, "shift_subpixel": float("nan")}
"""Columns added after format version 1's first stores: read as this fill value when absent (the
writers may omit them)."""


class StoreFormatError(ValueError):
    """A store (or a path meant to be one) does not follow this contract.

    The message says what is wrong, where (path, array, attribute), and how to fix it.
    """


@dataclasses.dataclass(frozen=True)
class StoreAttrs:
    """The root attributes ``attrs["srcaco2"]`` of a store.

    Attributes
    ----------
    format_version : int
        `FORMAT_VERSION` for stores this code writes; 1 for older stores (no chunk checksums).
    markers : list of str
        Channel names, in c order.
    scales : list of int
        LR acquisitions present (subset of 2, 4, 8).
    pixel_size_um : dict
        Pixel size in micrometres per acquisition name, e.g. ``{"hr": 0.1, "x2": 0.2, ...}``; every
        value None when the pixel size is unknown (no metadata in the input, no option given):
        coordinates are then HR pixels (docs/store.md#pixel-size).
    chunks : dict
        Chunk edge (pixels, y and x) per acquisition name at level 0; aligned so that
        ``chunks["hr"] == s * chunks[f"x{s}"]``.
    tiles : list of int
        Tile ids in the store.
    finished_tiles : list of int
        Tiles whose arrays are completely written (build resumability).
    roi : dict
        ROI / acceptance parameters (``threshold``, ``min_fraction``, ``method``, ``center``...).
    source : dict
        Provenance (input path, kind ``raw``/``patches``/``synth``, tool version, date).
    index_complete : bool
        True once ``index/`` is completely written.
    dtype : str
        Pixel type of every image (`DTYPES`; stores before it are uint8), kept as acquired.
    intensity : dict or None
        How pixels map to [0, 1] (`srcaco2.srdata.intensity.Intensity.to_attrs`); None for uint8
        stores (``x / 255``, the benchmark's).
    """

    format_version: int
    markers: list[str]
    scales: list[int]
    pixel_size_um: dict[str, float | None]
    chunks: dict[str, int]
    tiles: list[int]
    finished_tiles: list[int]
    roi: dict[str, Any]
    source: dict[str, Any]
    index_complete: bool = False
    dtype: str = "uint8"
    intensity: dict[str, Any] | None = None

    def to_json(self) -> dict[str, Any]:
        return json.loads(json.dumps(dataclasses.asdict(self)))

    @classmethod
    def from_json(cls, data: Mapping[str, Any], *, where: str = "<store>") -> StoreAttrs:
        if not isinstance(data, Mapping):
            raise StoreFormatError(
                f"{where}: attrs['srcaco2'] is missing or not a mapping; this is not a srcaco2 store "
                "(create one with `srdata build RAW STORE` or `srdata import-patches PATCHES STORE`)"
            )
        version = data.get("format_version")
        if version not in READABLE_FORMAT_VERSIONS:
            raise StoreFormatError(
                f"{where}: store format_version {version!r}, this toolkit reads versions "
                f"{list(READABLE_FORMAT_VERSIONS)}; rebuild the store with this version's `srdata build` "
                "into a new path"
            )
        fields = {f.name for f in dataclasses.fields(cls)}
        missing = sorted(fields - set(data) - {"index_complete", "dtype", "intensity"})
        if missing:
            raise StoreFormatError(f"{where}: attrs['srcaco2'] lacks {missing}; the store is incomplete")
        return cls(**{k: v for k, v in data.items() if k in fields})


def acquisition_name(scale: int) -> str:
    """``1 -> "hr"``, ``s -> "x{s}"`` for s in `SCALE_RANGE`.

    Raises
    ------
    ValueError
        For a scale that is neither 1 nor in `SCALE_RANGE`.
    """
    if scale == 1:
        return "hr"
    if isinstance(scale, (int, np.integer)) and int(scale) in SCALE_RANGE:
        return f"x{int(scale)}"
    raise ValueError(f"scale must be 1 (HR) or an integer from 2 to 8, got {scale!r}")


def pixel_centres(n: int, pixel_size_um: float | None, *, scale: int = 1) -> np.ndarray:
    """Physical centres of `n` pixels along y or x of an image of pitch `scale` HR px (level 0).

    ``((i + 0.5) * scale - 0.5) * p`` with ``p = pixel_size_um / scale`` the HR pixel size in
    micrometres, or ``p = 1`` (HR pixels) when `pixel_size_um` is None: the frame of
    `srcaco2.srdata.ome.ome_multiscales` (docs/store.md#coordinates).

    Returns
    -------
    (n,) float64
    """
    s = int(scale)
    p = 1.0 if pixel_size_um is None else float(pixel_size_um) / s
    return ((np.arange(int(n), dtype=np.float64) + 0.5) * s - 0.5) * p


def pixel_sizes(hr_um: float | None, scales: tuple[int, ...] | list[int] = SCALES) -> dict[str, float | None]:
    """``StoreAttrs.pixel_size_um`` of an HR pixel size: ``{"hr": p, "x2": 2p, ...}``, all None if unknown."""
    p = None if hr_um is None else float(hr_um)
    return {"hr": p} | {acquisition_name(s): None if p is None else p * int(s) for s in scales}


PREDICTIONS: str = "predictions"
"""Root group of the whole-tile predictions (``predictions/<name>/<tile>``)."""

PREDICTION_ATTRS: str = "srcaco2_prediction"
"""Attribute key, on a prediction image group, of the mapping that says what made it."""

PREDICTION_FIELDS: dict[str, str] = {
    "markers": "list of marker names, the c axis of the prediction (each in attrs.markers)",
    "scale": "int, the LR acquisition x<scale> the prediction was computed from",
    "source_tile": "int, the tile id (= the group name)",
    "method": "str, registry name of the network (or bicubic)",
}
"""Required fields of ``attrs[PREDICTION_ATTRS]`` (more may follow: source, tiling, exact, ...)."""


def split_code(split: str) -> int:
    """``"train" -> 0``, ``"val" -> 1``, ``"test" -> 2``."""
    try:
        return SPLITS.index(split)
    except ValueError:
        raise ValueError(f"unknown split {split!r}; splits are {list(SPLITS)}") from None


def split_name(code: int) -> str | None:
    """Inverse of `split_code`; -1 gives None."""
    return None if int(code) < 0 else SPLITS[int(code)]


def lr_patch_origin(
    y0: int, x0: int, dy: int, dx: int, scale: int, *, margin: int = MARGIN
) -> tuple[int, int]:
    """Top-left of the registered LR patch, in LR pixels of the /`scale` acquisition.

    Parameters
    ----------
    y0, x0 : int
        Top-left of the 640² window, HR pixels (multiples of `scale`).
    dy, dx : int
        Registration shift of that window for one marker and scale, HR pixels.
    scale : int
        2, 4 or 8 (any scale of the store).
    margin : int
        The window's margin, HR px (`WindowGeometry.margin`; SR-CACO-2: 64).

    Returns
    -------
    (y_lr, x_lr) : tuple of int
        ``y0/s + 64/s + floor((dy + s/2)/s)`` and the same for x (see the module docstring).
    """
    s = int(scale)
    return (
        y0 // s + margin // s + (int(dy) + s // 2) // s,
        x0 // s + margin // s + (int(dx) + s // 2) // s,
    )


def read_lr_patch(
    lr_plane: Any,
    y0: int,
    x0: int,
    dy: int,
    dx: int,
    scale: int,
    *,
    size: int = PATCH_SIZE,
    margin: int = MARGIN,
) -> np.ndarray:
    """Registered LR patch as the released data holds it.

    Parameters
    ----------
    lr_plane : array-like (y, x) uint8, LR pixels
        One marker of the /`scale` acquisition (numpy, zarr or dask; only the window is read).
    y0, x0 : int
        Top-left of the 640² HR window.
    dy, dx : int
        Registration shift for this marker and scale, HR pixels.
    scale : int
        2, 4 or 8.
    size : int
        HR patch side (512).

    Returns
    -------
    (size/s, size/s) uint8
        Zero where the shifted patch leaves the (640/s)² LR window (as the original's zero fill).
    """
    s = int(scale)
    n = size // s
    win = (size + 2 * margin) // s
    wy, wx = y0 // s, x0 // s
    oy, ox = lr_patch_origin(y0, x0, dy, dx, s, margin=margin)
    oy -= wy
    ox -= wx  # origin inside the window
    out = np.zeros((n, n), dtype=getattr(lr_plane, "dtype", np.uint8))
    ys, ye = max(oy, 0), min(oy + n, win)
    xs, xe = max(ox, 0), min(ox + n, win)
    # also clip to the plane (windows at the tile edge)
    h, w = lr_plane.shape[-2:]
    ye = min(ye, h - wy)
    xe = min(xe, w - wx)
    if ye > ys and xe > xs:
        out[ys - oy : ye - oy, xs - ox : xe - ox] = np.asarray(lr_plane[wy + ys : wy + ye, wx + xs : wx + xe])
    return out


def read_hr_patch(
    hr_plane: Any, y0: int, x0: int, *, size: int = PATCH_SIZE, margin: int = MARGIN
) -> np.ndarray:
    """The released HR patch ``hr[y0+64 : y0+64+size, x0+64 : x0+64+size]``, (size, size), the plane's
    dtype (`margin` and `size`: the store's `WindowGeometry`; SR-CACO-2's 64 and 512)."""
    return np.asarray(hr_plane[y0 + margin : y0 + margin + size, x0 + margin : x0 + margin + size])


def shift_axes(
    markers: list[str] | tuple[str, ...], scales: list[int] | tuple[int, ...]
) -> tuple[int, tuple[int, ...]]:
    """The (marker count, scales) axes of a store's ``index/shift`` column.

    SR-CACO-2 stores (markers among `MARKERS`, scales among `SCALES`) keep the benchmark's full
    (3, 3) grid whatever subset they hold (``shift[:, MARKERS.index(m), SCALES.index(s)]``); any
    other store has one row per marker of its own and one column per scale of its own.
    """
    if _benchmark_axes(markers, scales):
        return len(MARKERS), SCALES
    return len(markers), tuple(int(s) for s in scales)


def _benchmark_axes(markers: list[str] | tuple[str, ...], scales: list[int] | tuple[int, ...]) -> bool:
    return set(markers) <= set(MARKERS) and set(int(s) for s in scales) <= set(SCALES)


def shift_slot(
    markers: list[str] | tuple[str, ...], scales: list[int] | tuple[int, ...], marker: str, scale: int
) -> tuple[int, int]:
    """Where (marker, scale) sits in the store's ``index/shift`` column (see `shift_axes`)."""
    _, axis = shift_axes(markers, scales)
    row = MARKERS.index(marker) if _benchmark_axes(markers, scales) else list(markers).index(marker)
    return row, axis.index(int(scale))


@dataclasses.dataclass(frozen=True)
class WindowGeometry:
    """Where windows lie in a tile, HR pixels.

    A window is ``size``² at a multiple of ``stride``; its patch is the central ``size - 2 margin``
    square (the margin absorbs the registration shift); it is accepted when its central
    ``center``² holds at least ``min_fraction`` ROI. Every coordinate is a whole LR pixel at every
    scale of the store (`for_scales`). SR-CACO-2: 640, 256, 64, 128, 0.2 (`WINDOW_SIZE`, ...).
    """

    size: int = WINDOW_SIZE
    stride: int = STRIDE
    margin: int = MARGIN
    center: int = 128
    min_fraction: float = 0.2

    @property
    def patch(self) -> int:
        """Side of a window's patch (512 for SR-CACO-2)."""
        return self.size - 2 * self.margin

    @classmethod
    def for_scales(
        cls, scales: list[int] | tuple[int, ...], *, size: int = WINDOW_SIZE, stride: int = STRIDE,
        margin: int = MARGIN, center: int = 128, min_fraction: float = 0.2,
    ) -> WindowGeometry:  # fmt: skip
        """Round size, stride and margin to multiples of every scale (their least common multiple,
        nearest, at least one): SR-CACO-2's 2/4/8 keep 640/256/64, scales 2 and 3 give 642/258/66."""
        import math

        m = math.lcm(*(int(s) for s in scales)) if scales else 1

        def near(v: int) -> int:
            return max(m, int(round(v / m)) * m)

        return cls(near(size), near(stride), near(margin), int(center), float(min_fraction))

    @classmethod
    def from_attrs(cls, roi: dict[str, Any]) -> WindowGeometry:
        """The geometry recorded in ``attrs.roi`` (``window``, ``stride``, ``margin``, ``center``,
        ``min_fraction``); SR-CACO-2's values where a key is absent (stores before it)."""
        base = cls()
        return cls(
            int(roi.get("window", base.size)), int(roi.get("stride", base.stride)),
            int(roi.get("margin", base.margin)), int(roi.get("center", base.center)),
            float(roi.get("min_fraction", base.min_fraction)),
        )  # fmt: skip

    def to_attrs(self) -> dict[str, Any]:
        return {"window": self.size, "stride": self.stride, "margin": self.margin, "center": self.center,
                "min_fraction": self.min_fraction}  # fmt: skip


def index_columns(
    axes: tuple[int, tuple[int, ...]] = (len(MARKERS), SCALES), *, named: bool = False
) -> dict[str, tuple[str, tuple[int, ...]]]:
    """`INDEX_COLUMNS` of one store: per-(marker, scale) columns on its `shift_axes`, and ``tile``
    a string column when its tile ids are names (``"str"``: variable-length UTF-8)."""
    n, scales = axes
    legacy = (len(MARKERS), len(SCALES), 2)
    cols = {k: (d, (n, len(scales), 2) if t == legacy else t) for k, (d, t) in INDEX_COLUMNS.items()}
    if named:
        cols["tile"] = ("str", ())
    return cols
