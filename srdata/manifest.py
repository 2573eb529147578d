"""Your own paired acquisitions: a manifest (YAML, version 1) that `srdata build` reads instead of RAW.

A manifest names the channels, the HR and LR TIFF of every tile, and optionally the HR pixel size,
the ROI rule, the window geometry and the split; paths are relative to the manifest::

    version: 1
    channels: [DAPI, Actin]          # names of the TIFF's channel axis, in order; (H, W) TIFFs = 1 channel
    pixel_size_um: 0.065             # HR pixel size, optional (else TIFF metadata, else unknown)
    roi: {channel: DAPI, method: fixed, threshold: 400}   # raw grey levels of HR; or method: otsu
    window: {size: 640, stride: 256, center: 128, min_fraction: 0.2}   # optional, these defaults
    tiles:
      - id: a
        hr: acq/a_HR.tif             # (C, H, W) or (H, W); uint8 or uint16
        lr: {2: acq/a_lr2.tif, 3: acq/a_lr3.tif}   # integer scale -> a separate LR acquisition
        split: train                 # optional: train | val | test; else --split auto

`read_manifest` validates all of it against the files' headers (no pixel is read) and returns a
`Manifest`; every problem is one `ManifestError` line naming the tile and the field.
"""

from __future__ import annotations

import dataclasses
import hashlib
import math
import os
import re
from typing import Any

from srcaco2.srdata.layout import RawInputError
from srcaco2.srdata.schema import DTYPES, MAX_CHANNELS, SCALE_RANGE, SPLITS

__all__ = ["Manifest", "ManifestTile", "ManifestError", "read_manifest", "is_manifest", "MANIFEST_VERSION"]

MANIFEST_VERSION = 1

_ID = re.compile(r"^[A-Za-z0-9_-]+$")
_WINDOW_DEFAULTS = {"size": 640, "stride": 256, "center": 128, "min_fraction": 0.2}
_TOP_KEYS = {"version", "channels", "pixel_size_um", "roi", "window", "tiles"}
_TILE_KEYS = {"id", "hr", "lr", "split"}


class ManifestError(RawInputError):
    """A manifest (or a file it names) that cannot be built; the message names the tile and field."""


@dataclasses.dataclass(frozen=True)
class ManifestTile:
    """One tile of a manifest: its id, absolute TIFF paths, split, header shapes.

    ``shapes[s]`` is the (c, y, x) of the TIFF at scale s (1 = HR); ``extent`` the HR extent (H, W)
    the store keeps: the largest multiple of every scale's ... such that HR = s × LR for all s."""

    id: str
    hr: str
    lr: dict[int, str]
    split: str | None
    shapes: dict[int, tuple[int, int, int]]
    extent: tuple[int, int]

    def path(self, scale: int) -> str:
        return self.hr if scale == 1 else self.lr[scale]


@dataclasses.dataclass(frozen=True)
class Manifest:
    """A validated manifest: what `srcaco2.srdata.build` needs to build a store from it."""

    path: str
    sha256: str
    channels: tuple[str, ...]
    scales: tuple[int, ...]
    dtype: str
    pixel_size_um: float | None
    roi: dict[str, Any]
    window: dict[str, Any]
    tiles: tuple[ManifestTile, ...]
    notes: tuple[str, ...] = ()

    @property
    def root(self) -> str:
        """The folder the manifest's paths are relative to."""
        return os.path.dirname(self.path)

    @property
    def tile_ids(self) -> list[str]:
        return [t.id for t in self.tiles]

    def tile(self, tile_id: str) -> ManifestTile:
        return next(t for t in self.tiles if t.id == str(tile_id))


def is_manifest(path: str | os.PathLike) -> bool:
    """True for a file ending in .yaml / .yml (a RAW folder is a directory)."""
    p = os.fspath(path)
    return os.path.isfile(p) and p.lower().endswith((".yaml", ".yml"))


def _err(where: str, msg: str) -> ManifestError:
    return ManifestError(f"{where}: {msg}")


def _load_yaml(path: str) -> dict[str, Any]:
    import yaml

    try:
        with open(path, encoding="utf-8") as fh:
            data = yaml.safe_load(fh)
    except yaml.YAMLError as exc:
        mark = getattr(exc, "problem_mark", None)
        where = f"{path}:{mark.line + 1}" if mark is not None else path
        problem = getattr(exc, "problem", None) or str(exc).splitlines()[0]
        raise _err(where, f"not valid YAML ({problem}); fix the syntax") from None
    except OSError as exc:
        raise _err(path, f"cannot be read ({exc.strerror or exc})") from None
    if not isinstance(data, dict):
        raise _err(
            path, "must be a YAML mapping with version, channels and tiles (see `srdata build --help`)"
        )
    return data


def _header(path: str, where: str) -> tuple[tuple[int, int, int], str]:
    """(c, y, x) shape and dtype of a TIFF's first series, from its header only."""
    import tifffile

    if not os.path.isfile(path):
        raise _err(where, f"{path}: no such file; fix the path (relative to the manifest)")
    try:
        with tifffile.TiffFile(path) as tif:
            series = tif.series[0]
            shape, dtype = tuple(int(v) for v in series.shape), str(series.dtype)
    except Exception as exc:  # noqa: BLE001 - any parser failure is a bad file
        raise _err(where, f"{path}: not a readable TIFF ({type(exc).__name__}: {exc})") from None
    if len(shape) == 2:
        shape = (1, *shape)
    if len(shape) != 3:
        raise _err(where, f"{path}: shape {list(shape)}; expected (C, H, W) or (H, W)")
    if dtype not in DTYPES:
        raise _err(where, f"{path}: pixel type {dtype} is not supported; convert it to uint8 or uint16")
    return shape, dtype  # type: ignore[return-value]


def _channels(data: dict[str, Any], where: str) -> tuple[str, ...]:
    ch = data.get("channels")
    if not isinstance(ch, list) or not ch or not all(isinstance(c, str) and c.strip() for c in ch):
        raise _err(where, "channels: give a list of 1 to 8 channel names, e.g. [DAPI, Actin]")
    if len(ch) > MAX_CHANNELS or len(set(ch)) != len(ch):
        raise _err(where, f"channels: {ch}: give 1 to {MAX_CHANNELS} distinct names")
    return tuple(ch)


def _scale(key: Any, where: str) -> int:
    try:
        s = int(key) if not isinstance(key, bool) and float(key) == int(float(key)) else None
    except (TypeError, ValueError):
        s = None
    if s is None or s not in SCALE_RANGE:
        raise _err(where, f"lr: scale {key!r} is not an integer from {SCALE_RANGE[0]} to {SCALE_RANGE[-1]}")
    return s


def _window(data: dict[str, Any], where: str) -> dict[str, Any]:
    win = dict(_WINDOW_DEFAULTS)
    given = data.get("window") or {}
    if not isinstance(given, dict) or set(given) - set(_WINDOW_DEFAULTS):
        raise _err(where, f"window: give a mapping of {sorted(_WINDOW_DEFAULTS)}")
    win.update(given)
    for key in ("size", "stride", "center"):
        if isinstance(win[key], bool) or not isinstance(win[key], int) or win[key] <= 0:
            raise _err(where, f"window.{key}={win[key]!r}: a positive integer (HR px)")
    f = win["min_fraction"]
    if isinstance(f, bool) or not isinstance(f, (int, float)) or not 0 <= f <= 1:
        raise _err(where, f"window.min_fraction={f!r}: a number in [0, 1]")
    return win


def _roi(data: dict[str, Any], channels: tuple[str, ...], dtype: str, where: str) -> dict[str, Any]:
    roi = data.get("roi")
    if roi is None:
        roi = {"channel": channels[-1], "method": "otsu"}
    if not isinstance(roi, dict) or set(roi) - {"channel", "method", "threshold"}:
        raise _err(
            where, "roi: give {channel: NAME, method: fixed, threshold: N} or {channel: NAME, method: otsu}"
        )
    channel = roi.get("channel", channels[-1])
    if channel not in channels:
        raise _err(where, f"roi.channel={channel!r} is not one of the channels {list(channels)}")
    method = roi.get("method", "fixed" if "threshold" in roi else "otsu")
    if method not in ("fixed", "otsu"):
        raise _err(where, f"roi.method={method!r}: use fixed or otsu")
    out: dict[str, Any] = {"channel": channel, "method": method}
    if method == "fixed":
        thr, top = roi.get("threshold"), 255 if dtype == "uint8" else 65535
        if isinstance(thr, bool) or not isinstance(thr, int) or not 0 <= thr <= top:
            raise _err(
                where, f"roi.threshold={thr!r}: an integer grey level of the HR {dtype} data (0..{top})"
            )
        out["threshold"] = thr
    return out


def _tile(
    item: Any, k: int, root: str, channels: tuple[str, ...], seen: set[str]
) -> tuple[dict[str, Any], str]:
    where = f"tiles[{k}]"
    if not isinstance(item, dict):
        raise _err(where, "give a mapping with id, hr and lr")
    tid = item.get("id")
    if tid is None or not _ID.match(str(tid)):
        raise _err(where, f"id={tid!r}: use letters, digits, '-' and '_'")
    tid = str(tid)
    where = f"tile {tid!r}"
    unknown = sorted(set(item) - _TILE_KEYS)
    if unknown:
        raise _err(where, f"unknown field(s) {unknown}; fields are {sorted(_TILE_KEYS)}")
    if tid in seen:
        raise _err(where, "id: duplicate tile id; give every tile its own id")
    seen.add(tid)
    if not isinstance(item.get("hr"), str):
        raise _err(where, "hr: give the path of the HR TIFF")
    lr = item.get("lr")
    if not isinstance(lr, dict) or not lr:
        raise _err(where, "lr: give {scale: path} for at least one LR acquisition, e.g. {2: acq/a_lr2.tif}")
    split = item.get("split")
    if split is not None and split not in SPLITS:
        raise _err(where, f"split={split!r}: use one of {list(SPLITS)} (or leave it out)")
    paths = {1: os.path.join(root, item["hr"])}
    for key, p in lr.items():
        s = _scale(key, where)
        if not isinstance(p, str):
            raise _err(where, f"lr.{key}: give the path of the x{s} LR TIFF")
        paths[s] = os.path.join(root, p)
    shapes, dtypes = {}, set()
    for s, p in sorted(paths.items()):
        field = "hr" if s == 1 else f"lr.{s}"
        shape, dtype = _header(p, f"{where}, {field}")
        if shape[0] != len(channels):
            raise _err(
                f"{where}, {field}",
                f"{p} has {shape[0]} channel(s) but the manifest names {len(channels)} {list(channels)}",
            )
        shapes[s] = shape
        dtypes.add(dtype)
    if len(dtypes) > 1:
        raise _err(where, f"hr and lr differ in pixel type {sorted(dtypes)}; give one type for all files")
    return {"id": tid, "paths": paths, "split": split, "shapes": shapes}, dtypes.pop()


def _extent(tid: str, shapes: dict[int, tuple[int, int, int]], notes: list[str]) -> tuple[int, int]:
    """HR extent kept: HR must be s × LR; HR larger by less than one LR pixel per scale is cropped."""
    scales = [s for s in shapes if s > 1]
    m = math.lcm(*scales)
    _, H, W = shapes[1]
    out = []
    for axis, n in (("height", H), ("width", W)):
        keep = min(shapes[s][1 + (axis == "width")] * s for s in scales)
        keep -= keep % m
        for s in scales:
            lr = shapes[s][1 + (axis == "width")]
            if not 0 <= n - lr * s < s:
                raise _err(
                    f"tile {tid!r}, lr.{s}",
                    f"HR {axis} {n} px is not {s} x the LR {axis} {lr} px (it must be, up to less than one "
                    "LR pixel); check that the files belong together",
                )
        if keep < n:
            notes.append(f"tile {tid!r}: HR {axis} cropped from {n} to {keep} px (a multiple of every scale)")
        out.append(keep)
    return out[0], out[1]


def read_manifest(path: str | os.PathLike) -> Manifest:
    """Read and validate a manifest (headers of its TIFFs included; no pixel is read).

    Raises
    ------
    ManifestError
        One line naming the tile and field: YAML syntax, unknown version or field, channels,
        ROI channel or threshold, window, a missing or unreadable file, a dtype other than uint8 /
        uint16, a channel count that differs from ``channels``, a scale that is not an integer
        from 2 to 8, HR not s × LR, a duplicate tile id, tiles with different scales or dtypes.
    """
    p = os.path.abspath(os.fspath(path))
    data = _load_yaml(p)
    if data.get("version") != MANIFEST_VERSION:
        raise _err(
            p, f"version: {data.get('version')!r}; this toolkit reads manifest version {MANIFEST_VERSION}"
        )
    unknown = sorted(set(data) - _TOP_KEYS)
    if unknown:
        raise _err(p, f"unknown field(s) {unknown}; fields are {sorted(_TOP_KEYS)}")
    channels = _channels(data, p)
    px = data.get("pixel_size_um")
    if px is not None and (isinstance(px, bool) or not isinstance(px, (int, float)) or not px > 0):
        raise _err(p, f"pixel_size_um={px!r}: a positive number (micrometres), or leave it out")
    items = data.get("tiles")
    if not isinstance(items, list) or not items:
        raise _err(p, "tiles: give a list of tiles (id, hr, lr)")
    seen: set[str] = set()
    parsed = [_tile(item, k, os.path.dirname(p), channels, seen) for k, item in enumerate(items)]
    dtypes = {d for _, d in parsed}
    if len(dtypes) > 1:
        raise _err(p, f"tiles differ in pixel type {sorted(dtypes)}; give one type for all files")
    scale_sets = {tuple(sorted(t["paths"])) for t, _ in parsed}
    if len(scale_sets) > 1:
        first = parsed[0][0]
        odd = next(t for t, _ in parsed if tuple(sorted(t["paths"])) != tuple(sorted(first["paths"])))
        raise _err(
            f"tile {odd['id']!r}, lr",
            f"scales {sorted(s for s in odd['paths'] if s > 1)} differ from tile {first['id']!r}'s "
            f"{sorted(s for s in first['paths'] if s > 1)}; every tile needs the same LR scales",
        )
    dtype = dtypes.pop()
    notes: list[str] = []
    tiles = tuple(
        ManifestTile(
            t["id"],
            t["paths"][1],
            {s: q for s, q in t["paths"].items() if s > 1},
            t["split"],
            t["shapes"],
            _extent(t["id"], t["shapes"], notes),
        )
        for t, _ in parsed
    )
    with open(p, "rb") as fh:
        digest = hashlib.sha256(fh.read()).hexdigest()
    return Manifest(
        path=p,
        sha256=digest,
        channels=channels,
        scales=tuple(s for s in scale_sets.pop() if s > 1),
        dtype=dtype,
        pixel_size_um=None if px is None else float(px),
        roi=_roi(data, channels, dtype, p),
        window=_window(data, p),
        tiles=tiles,
        notes=tuple(notes),
    )
