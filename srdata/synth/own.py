"""Synthetic data in the "own data" form: per tile an HR TIFF, one TIFF per LR scale, and a manifest.

`srdata synth` writes this form when the channels, bit depth or scales differ from SR-CACO-2's
(or with ``--layout manifest``): ``OUT/acq/<id>_HR.tif`` (C, H, W) and ``OUT/acq/<id>_lr<s>.tif``
(C, H/s, W/s), uint8 or uint16, with H = W a multiple of every scale (HR = s × LR exactly), and
``OUT/manifest.yaml`` (`srcaco2.srdata.synth.manifest`), ready for ``srdata build
OUT/manifest.yaml STORE``. Each LR file is a separate noisy acquisition with its own stage offset,
as in the official layout (`srcaco2.srdata.synth.acquire.synth_tile`); ``OUT/synth.json`` holds
every parameter.
"""

from __future__ import annotations

import io
import json
import logging
import math
import os
from collections.abc import Callable, Sequence
from typing import Any

from srcaco2.srdata.synth.acquire import synth_tile, tile_misregistration
from srcaco2.srdata.synth.manifest import assign_splits, manifest_dict, write_manifest
from srcaco2.srdata.synth.model import SynthParams, nuclear_channel

__all__ = ["ACQ_DIR", "own_tile_side", "roi_threshold_raw", "default_channel_names", "write_own_synth"]

log = logging.getLogger(__name__)

ACQ_DIR = "acq"
"""Folder of the TIFFs, inside OUT."""

ROI_THRESHOLD_8BIT = 4
"""The SR-CACO-2 ROI threshold on the 8-bit HR nuclei scan, grey levels."""


def own_tile_side(hr_size: int, scales: Sequence[int]) -> int:
    """The largest HR side <= `hr_size` that every scale divides (a multiple of their lcm)."""
    lcm = math.lcm(*(int(s) for s in scales))
    side = hr_size // lcm * lcm
    if side < lcm:
        raise ValueError(f"hr_size {hr_size} is smaller than the lcm {lcm} of the scales {list(scales)}")
    return side


def roi_threshold_raw(params: SynthParams) -> int:
    """The SR-CACO-2 ROI threshold (4 grey levels of 8-bit HR) in raw grey levels of `params.bit_depth`.

    16 bit: the same light, ``offset16 + (4 - offset) · adu_per_grey16`` ADU (HR offset).
    """
    if params.bit_depth == 8:
        return ROI_THRESHOLD_8BIT
    off = params.per_scan("offset", 1)
    return int(round(params.offset16 + (ROI_THRESHOLD_8BIT - off) * params.adu_per_grey16))


def default_channel_names(channels: int) -> list[str]:
    """``["ch0", ..., "ch<channels-1>"]``."""
    return [f"ch{i}" for i in range(channels)]


def write_own_synth(
    out: str | os.PathLike,
    *,
    n_tiles: int = 3,
    params: SynthParams = SynthParams(),
    channel_names: Sequence[str] | None = None,
    progress: Callable[[int], None] | None = None,
) -> str:
    """Write `n_tiles` synthetic tiles in the own-data form under `out` and their manifest.

    Parameters
    ----------
    out : path
        Output folder (created).
    n_tiles : int
        Tiles, ids ``t001`` ... ; with 3 or more, train, val and test each get at least one.
    params : SynthParams
        ``hr_size`` must be a multiple of every scale (see `own_tile_side`).
    channel_names : sequence of str, optional
        One name per channel; default ``ch0`` ... The ROI channel is the nuclear one (the first,
        or the third of 3: `srcaco2.srdata.synth.model.nuclear_channel`).
    progress : callable, optional
        Called with the tile number (1-based) after each tile is written.

    Returns
    -------
    str
        Path of ``manifest.yaml``.

    Raises
    ------
    ValueError
        `n_tiles` < 1, `hr_size` not a multiple of every scale, or not one name per channel.
    """
    import tifffile

    from srcaco2.srdata.atomic import atomic_writer, write_bytes_atomic

    if n_tiles < 1:
        raise ValueError(f"n_tiles must be >= 1, got {n_tiles}")
    if own_tile_side(params.hr_size, params.scales) != params.hr_size:
        raise ValueError(f"hr_size {params.hr_size} must be a multiple of every scale {list(params.scales)}")
    names = list(channel_names) if channel_names is not None else default_channel_names(params.channels)
    if len(names) != params.channels:
        raise ValueError(f"{len(names)} channel names for {params.channels} channels: {names}")
    out = os.fspath(out)
    os.makedirs(os.path.join(out, ACQ_DIR), exist_ok=True)
    splits = assign_splits(n_tiles)
    entries: list[dict[str, Any]] = []
    for t in range(1, n_tiles + 1):
        tid = f"t{t:03d}"
        acq = synth_tile(t, params)
        rel = {s: f"{ACQ_DIR}/{tid}_HR.tif" if s == 1 else f"{ACQ_DIR}/{tid}_lr{s}.tif" for s in acq}
        for s, data in acq.items():
            buf = io.BytesIO()
            tifffile.imwrite(buf, data, photometric="minisblack")
            write_bytes_atomic(os.path.join(out, *rel[s].split("/")), buf.getvalue())
        entries.append({"id": tid, "hr": rel[1], "lr": {s: rel[s] for s in params.scales},
                        "split": splits[t - 1]})  # fmt: skip
        log.info("synthetic tile %s written (%s)", tid, {s: a.shape for s, a in acq.items()})
        if progress is not None:
            progress(t)
    roi_channel = names[nuclear_channel(params.channels)]
    manifest = manifest_dict(
        channels=names, roi_channel=roi_channel, roi_threshold=roi_threshold_raw(params), tiles=entries
    )
    meta = {
        "kind": "synth",
        "layout": "manifest",
        "model": "srcaco2.srdata.synth.SynthParams (see its docstring)",
        "n_tiles": n_tiles,
        "tiles": [e["id"] for e in entries],
        "channel_names": names,
        **params.to_json(),
        "misregistration_hr_px": {
            e["id"]: {str(s): list(v) for s, v in tile_misregistration(t, params).items()}
            for t, e in enumerate(entries, start=1)
        },
    }
    with atomic_writer(os.path.join(out, "synth.json"), "w") as fh:
        json.dump(meta, fh, indent=2)
    return write_manifest(out, manifest)
