"""Names of the official raw-tile layout (``caco2-tiles/all-tiles``) and discovery of tile ids.

::

    <raw>/HighRes1024/HighRes1024-<t>.tif   HR, (3, H, W) uint8
    <raw>/LowRes512/LowRes512-<t>.tif       /2 acquisition
    <raw>/LowRes256/LowRes256-<t>.tif       /4 acquisition
    <raw>/LowRes128/LowRes128-<t>.tif       /8 acquisition
"""

from __future__ import annotations

import os
import re

__all__ = ["RawInputError", "FOLDERS", "folder_name", "tile_path", "discover_tiles"]

FOLDERS: dict[int, str] = {1: "HighRes1024", 2: "LowRes512", 4: "LowRes256", 8: "LowRes128"}
"""Folder (and file prefix) per scale: 1 = HR, 2/4/8 = the LR acquisitions."""


class RawInputError(ValueError):
    """Raw input that cannot be built: the message names the file and how to fix it."""


def folder_name(scale: int) -> str:
    """``1 -> "HighRes1024"``, ``2 -> "LowRes512"``, ``4 -> "LowRes256"``, ``8 -> "LowRes128"``."""
    try:
        return FOLDERS[int(scale)]
    except KeyError:
        raise ValueError(f"scale must be one of {list(FOLDERS)}, got {scale!r}") from None


def tile_path(raw: str | os.PathLike, tile: int, scale: int) -> str:
    """Path of one raw tile, e.g. ``<raw>/LowRes256/LowRes256-7.tif``."""
    name = folder_name(scale)
    path = os.path.join(os.fspath(raw), name, f"{name}-{int(tile)}.tif")
    if not os.path.exists(path) and os.path.exists(path + "f"):
        return path + "f"
    return path


def _ids_in(raw: str, scale: int) -> dict[int, str]:
    name = folder_name(scale)
    folder = os.path.join(raw, name)
    pattern = re.compile(rf"^{name}-(\d+)\.tiff?$")
    out: dict[int, str] = {}
    for entry in sorted(os.listdir(folder)):
        m = pattern.match(entry)
        if m:
            out[int(m.group(1))] = os.path.join(folder, entry)
    return out


def discover_tiles(raw: str | os.PathLike, scales: tuple[int, ...] = (1, 2, 4, 8)) -> list[int]:
    """Sorted tile ids present in every acquisition folder of `raw`.

    Raises
    ------
    RawInputError
        A folder is missing or empty, a tile lacks one of its acquisitions, or the folders hold
        different tile ids. The message names the first offending file or folder.
    """
    raw = os.fspath(raw)
    if not os.path.isdir(raw):
        raise RawInputError(f"{raw}: raw tile directory not found; pass the folder that holds HighRes1024/")
    found: dict[int, dict[int, str]] = {}
    for s in scales:
        folder = os.path.join(raw, folder_name(s))
        if not os.path.isdir(folder):
            raise RawInputError(
                f"{folder}: acquisition folder missing; the raw layout needs "
                f"{', '.join(folder_name(x) + '/' for x in scales)} (`srdata synth OUT` writes an example)"
            )
        found[s] = _ids_in(raw, s)
    hr_ids = set(found[scales[0]])
    if not hr_ids:
        raise RawInputError(
            f"{os.path.join(raw, folder_name(scales[0]))}: no {folder_name(scales[0])}-<t>.tif files; "
            "check the RAW path"
        )
    for s in scales[1:]:
        ids = set(found[s])
        for t in sorted(hr_ids - ids):
            raise RawInputError(
                f"{tile_path(raw, t, s)}: missing {folder_name(s)} scan for tile {t} "
                f"({tile_path(raw, t, scales[0])} exists); add the file or remove tile {t} from every folder"
            )
        for t in sorted(ids - hr_ids):
            raise RawInputError(
                f"{found[s][t]}: tile id {t} has no {folder_name(scales[0])} tile; tile ids must match "
                f"across folders (remove the file or add {tile_path(raw, t, scales[0])})"
            )
    return sorted(hr_ids)
