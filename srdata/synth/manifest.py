"""Write an "own data" manifest (version 1) for `srdata synth`: `manifest_dict`, `write_manifest`.

The format (keys, meaning, paths relative to the manifest) is specified once, by its reader
`srcaco2.srdata.manifest` (which `srdata build MANIFEST.yaml STORE` uses); this module builds a
conforming mapping for synthetic data and writes it atomically.
"""

from __future__ import annotations

import os
from collections.abc import Mapping, Sequence
from typing import Any

__all__ = [
    "MANIFEST_VERSION",
    "MANIFEST_NAME",
    "SPLITS",
    "DEFAULT_WINDOW",
    "assign_splits",
    "manifest_dict",
    "write_manifest",
]

MANIFEST_VERSION = 1
MANIFEST_NAME = "manifest.yaml"
SPLITS = ("train", "val", "test")
DEFAULT_WINDOW: dict[str, float | int] = {"size": 640, "stride": 256, "center": 128, "min_fraction": 0.2}
"""The window keys and their defaults (the build's, written out so the manifest is explicit)."""


def assign_splits(n_tiles: int, *, fraction: float = 0.15) -> list[str]:
    """Split of each of `n_tiles` tiles, in order: train first, then val, then test.

    With 3 or more tiles each split gets at least one tile (val and test about `fraction` of the
    tiles each, the rest train); fewer tiles are all ``train``.

    Examples
    --------
    >>> assign_splits(3)
    ['train', 'val', 'test']
    >>> assign_splits(8)
    ['train', 'train', 'train', 'train', 'train', 'train', 'val', 'test']
    """
    if n_tiles < 3:
        return ["train"] * n_tiles
    k = max(1, round(fraction * n_tiles))
    return ["train"] * (n_tiles - 2 * k) + ["val"] * k + ["test"] * k


def manifest_dict(
    *,
    channels: Sequence[str],
    roi_channel: str,
    roi_threshold: float | None,
    tiles: Sequence[Mapping[str, Any]],
    pixel_size_um: float | None = None,
    window: Mapping[str, float | int] | None = None,
) -> dict[str, Any]:
    """The manifest as plain data, checked (keys in the order of the module docstring).

    Parameters
    ----------
    channels : sequence of str
        Channel names, unique.
    roi_channel : str
        One of `channels`.
    roi_threshold : float or None
        Raw HR grey level of the fixed ROI threshold; None: ``method: otsu``.
    tiles : sequence of mappings
        Each with ``id``, ``hr``, ``lr`` ({scale: path}) and optionally ``split``; paths relative
        to the manifest's folder, with ``/`` separators.
    pixel_size_um : float, optional
    window : mapping, optional
        Defaults to `DEFAULT_WINDOW`.

    Raises
    ------
    ValueError
        Duplicate or empty channel names, an unknown ROI channel, duplicate tile ids, a scale < 2,
        a tile without LR, an unknown split.
    """
    names = [str(c) for c in channels]
    if not names or len(set(names)) != len(names) or any(not n for n in names):
        raise ValueError(f"channel names must be unique and non-empty, got {names!r}")
    if roi_channel not in names:
        raise ValueError(f"ROI channel {roi_channel!r} is not one of the channels {names}")
    roi: dict[str, Any] = {"channel": roi_channel, "method": "otsu" if roi_threshold is None else "fixed"}
    if roi_threshold is not None:
        roi["threshold"] = (
            int(round(roi_threshold)) if float(roi_threshold).is_integer() else float(roi_threshold)
        )
    out_tiles, seen = [], set()
    for t in tiles:
        tid = str(t["id"])
        if tid in seen:
            raise ValueError(f"tile id {tid!r} appears twice")
        seen.add(tid)
        lr = {int(s): str(p) for s, p in dict(t["lr"]).items()}
        if not lr or min(lr) < 2:
            raise ValueError(f"tile {tid!r}: lr needs integer scales >= 2, got {sorted(lr)}")
        entry: dict[str, Any] = {"id": tid, "hr": str(t["hr"]), "lr": dict(sorted(lr.items()))}
        if t.get("split") is not None:
            if t["split"] not in SPLITS:
                raise ValueError(f"tile {tid!r}: split must be one of {SPLITS}, got {t['split']!r}")
            entry["split"] = t["split"]
        out_tiles.append(entry)
    d: dict[str, Any] = {"version": MANIFEST_VERSION, "channels": names}
    if pixel_size_um is not None:
        d["pixel_size_um"] = float(pixel_size_um)
    d["roi"] = roi
    d["window"] = dict(DEFAULT_WINDOW if window is None else window)
    d["tiles"] = out_tiles
    return d


def write_manifest(folder: str | os.PathLike, manifest: Mapping[str, Any]) -> str:
    """Write `manifest` (from `manifest_dict`) to ``<folder>/manifest.yaml`` atomically; returns the path."""
    import yaml

    from srcaco2.srdata.atomic import atomic_writer

    path = os.path.join(os.fspath(folder), MANIFEST_NAME)
    text = yaml.safe_dump(dict(manifest), sort_keys=False, default_flow_style=None)
    with atomic_writer(path, "w") as fh:
        fh.write(text)
    return path
