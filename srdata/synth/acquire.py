"""The four acquisitions of a synthetic tile (HR, /2, /4, /8), each a separate scan of the specimen.

A scan at scale s blurs the specimen as it sees it (its own focus) with its PSF, integrates it
over s × s HR px at its own stage offset, scales it by its gain, adds background light and shot
noise (Poisson in photons, ``grey_per_photon`` grey levels each), a detector offset and read
noise, and rounds to uint8 (the model and its parameters: `srcaco2.srdata.synth.model.SynthParams`).

Tiles are generated in HR row bands (memory ~ 12 float32 planes of ``(band + margins) × width``)
with vectorised numpy; everything is a pure function of ``(params, tile)``.
"""

from __future__ import annotations

import json
import logging
import math
import os
from collections.abc import Callable

import numpy as np

from srcaco2.srdata.layout import FOLDERS, tile_path
from srcaco2.srdata.synth.model import LR_SCALES, SCANS, SynthParams
from srcaco2.srdata.synth.scene import make_specimen, render

__all__ = ["synth_tile", "tile_misregistration", "write_synth", "read_synth_params"]

log = logging.getLogger(__name__)


def tile_misregistration(tile: int, params: SynthParams = SynthParams()) -> dict[int, tuple[int, int]]:
    """Stage offset (dy, dx) of each LR scan of a tile, HR px.

    The /s scan sees the specimen at HR position ``(y + dy, x + dx)`` where HR sees ``(y, x)``;
    the offset has a random direction and a length uniform in ``params.shift_lr_px`` LR px
    (rounded to HR px), drawn per tile and scan. The registration shift that re-aligns the
    scan (`srcaco2.srdata.registration.window_shift`) is about ``(-dy, -dx)`` (plus the (s - 1)/2 px
    centre offset of s × s integration).
    """
    if not params.misregistration:
        return {s: (0, 0) for s in LR_SCALES}
    rng = np.random.default_rng([params.seed, int(tile), 2])
    out = {}
    for s in LR_SCALES:
        length = rng.uniform(*params.shift_lr_px) * s
        ang = rng.uniform(0, 2 * np.pi)
        out[s] = (int(np.round(length * np.sin(ang))), int(np.round(length * np.cos(ang))))
    return out


def _area_mean(a: np.ndarray, s: int) -> np.ndarray:
    c, h, w = a.shape
    return a[:, : h // s * s, : w // s * s].reshape(c, h // s, s, w // s, s).mean(axis=(2, 4))


def _record(rng: np.random.Generator, signal: np.ndarray, p: SynthParams, k: int) -> np.ndarray:
    """Detector of scan `k`: background light, shot and read noise, offset, 8-bit rounding."""
    light = np.maximum(signal + p.dark[k], 0.0)
    if p.noise:
        g = p.grey_per_photon[k]
        img = rng.poisson(light / g).astype(np.float32) * g + p.offset[k]
        if p.read_noise[k] > 0:
            img += rng.normal(0.0, p.read_noise[k], light.shape).astype(np.float32)
    else:
        img = light + p.offset[k]
    return np.clip(np.rint(img), 0, 255).astype(np.uint8)


def synth_tile(tile: int, params: SynthParams = SynthParams()) -> dict[int, np.ndarray]:
    """Generate one tile's four acquisitions.

    Parameters
    ----------
    tile : int
        Tile id (part of every seed).
    params : SynthParams

    Returns
    -------
    dict of int to ndarray
        ``{1: hr (3, H, H) uint8, 2: (3, H//2, H//2) uint8, 4: ..., 8: ...}``, c = CELL0..CELL2.
    """
    from scipy.ndimage import gaussian_filter

    p = params
    h = w = int(p.hr_size)
    spec = make_specimen(tile, p)
    shifts = tile_misregistration(tile, p)
    noise_rng = np.random.default_rng([p.seed, int(tile), 1])
    ideal = not p.noise and not p.misregistration
    max_shift = max(max(abs(v) for v in d) for d in shifts.values())
    m = int(math.ceil(4 * max(p.psf_sigma))) + max_shift + 8
    out = {1: np.empty((3, h, w), np.uint8)}
    out.update({s: np.empty((3, h // s, w // s), np.uint8) for s in LR_SCALES})
    for b0 in range(0, h, p.band):
        b1 = min(h, b0 + p.band)
        scene = render(spec, p, b0 - m, b1 + m, -m, w + m)  # (scans, 3, rows, cols)
        for k, s in enumerate(SCANS):
            if s == 1:
                r0, r1, dy, dx = b0, b1, 0, 0
            else:
                r0, r1 = b0 // s, min(b1, h // s * s) // s
                dy, dx = shifts[s]
            if r1 <= r0 or (ideal and s > 1):
                continue
            blurred = np.stack([gaussian_filter(ch, p.psf_sigma[k], mode="constant") for ch in scene[k]])
            src = blurred[:, m + dy : m + dy + (r1 - r0) * s, m + dx : m + dx + w // s * s]
            signal = p.gain[k] * (src if s == 1 else _area_mean(src, s))
            out[s][:, r0:r1] = _record(noise_rng, signal, p, k)
        if ideal:  # the teaching mode: LR = exact area mean of the HR tile
            hr = out[1][:, b0:b1].astype(np.float64)
            for s in LR_SCALES:
                r0, r1 = b0 // s, min(b1, h // s * s) // s
                if r1 > r0:
                    out[s][:, r0:r1] = np.round(_area_mean(hr[:, : (r1 - r0) * s], s)).astype(np.uint8)
    return out


def write_synth(
    out: str | os.PathLike,
    *,
    n_tiles: int = 3,
    params: SynthParams = SynthParams(),
    progress: Callable[[int], None] | None = None,
) -> list[int]:
    """Write ``n_tiles`` synthetic tiles (ids 1..n) in the official layout under `out`, plus ``synth.json``.

    Parameters
    ----------
    out : path
        Output directory (created); receives ``HighRes1024/``, ``LowRes512/``, ``LowRes256/``,
        ``LowRes128/`` with (3, H, W) uint8 TIFFs, and ``synth.json``: every parameter, the tiles,
        each LR scan's stage offset (``misregistration_hr_px``) and each scan's focus.
    n_tiles : int
        Number of tiles.
    params : SynthParams
    progress : callable, optional
        Called with the tile id after each tile is written.

    Returns
    -------
    list of int
        Tile ids written.
    """
    import tifffile

    from srcaco2.srdata.synth.scene import focus_planes

    if n_tiles < 1:
        raise ValueError(f"n_tiles must be >= 1, got {n_tiles}")
    if params.hr_size < 64:
        raise ValueError(f"hr_size must be >= 64 HR px, got {params.hr_size}")
    out = os.fspath(out)
    for name in FOLDERS.values():
        os.makedirs(os.path.join(out, name), exist_ok=True)
    tiles = list(range(1, n_tiles + 1))
    for t in tiles:
        acq = synth_tile(t, params)
        for s, data in acq.items():
            tifffile.imwrite(tile_path(out, t, s), data, photometric="minisblack")
        log.info("synthetic tile %d written (%s)", t, {s: a.shape for s, a in acq.items()})
        if progress is not None:
            progress(t)
    meta = {
        "kind": "synth",
        "model": "srcaco2.srdata.synth.SynthParams (see its docstring)",
        "n_tiles": n_tiles,
        "tiles": tiles,
        **params.to_json(),
        "misregistration_hr_px": {
            str(t): {str(s): list(v) for s, v in tile_misregistration(t, params).items()} for t in tiles
        },
        "focus_dof": {
            str(t): dict(zip(map(str, SCANS), focus_planes(t, params).round(4).tolist(), strict=True))
            for t in tiles
        },  # fmt: skip
    }
    with open(os.path.join(out, "synth.json"), "w") as fh:
        json.dump(meta, fh, indent=2)
    return tiles


def read_synth_params(raw: str | os.PathLike) -> SynthParams:
    """The `SynthParams` recorded in ``<raw>/synth.json``."""
    path = os.path.join(os.fspath(raw), "synth.json")
    with open(path) as fh:
        return SynthParams.from_json(json.load(fh))
