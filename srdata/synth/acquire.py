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
from srcaco2.srdata.synth.model import LR_SCALES, SCANS, SynthParams, channel_markers
from srcaco2.srdata.synth.scene import make_specimen, render

__all__ = ["synth_tile", "tile_misregistration", "write_synth", "read_synth_params", "is_official"]

log = logging.getLogger(__name__)


def tile_misregistration(tile: int, params: SynthParams = SynthParams()) -> dict[int, tuple[int, int]]:
    """Stage offset (dy, dx) of each LR scan of a tile, HR px.

    The /s scan sees the specimen at HR position ``(y + dy, x + dx)`` where HR sees ``(y, x)``;
    the offset has a random direction and a length uniform in ``params.shift_lr_px`` LR px
    (rounded to HR px: sub-LR-pixel), drawn per tile and scan (``params.scales`` in order). The
    registration shift that re-aligns the scan (`srcaco2.srdata.registration.window_shift`) is
    about ``(-dy, -dx)`` (plus the (s - 1)/2 px centre offset of s × s integration).
    """
    if not params.misregistration:
        return {s: (0, 0) for s in params.scales}
    rng = np.random.default_rng([params.seed, int(tile), 2])
    out = {}
    for s in params.scales:
        length = rng.uniform(*params.shift_lr_px) * s
        ang = rng.uniform(0, 2 * np.pi)
        out[s] = (int(np.round(length * np.sin(ang))), int(np.round(length * np.cos(ang))))
    return out


_AF_STEP = 4
"""Grid step of the autofluorescence field, HR px (interpolated bilinearly in between)."""


def _autofluorescence_grid(tile: int, p: SynthParams) -> np.ndarray:
    """The tile's unit-std smooth field on a grid of step `_AF_STEP` HR px starting at HR (-64, -64)."""
    from scipy.ndimage import gaussian_filter

    n = (p.hr_size + 128) // _AF_STEP + 2
    white = np.random.default_rng([p.seed, int(tile), 5]).standard_normal((n, n))
    field = gaussian_filter(white, p.autofluorescence_scale / _AF_STEP, mode="wrap")
    return (field / max(float(field.std()), 1e-12)).astype(np.float32)


def _autofluorescence(grid: np.ndarray, y0: int, y1: int, x0: int, x1: int) -> np.ndarray:
    """(y1 - y0, x1 - x0) float32: the field at HR rows [y0, y1), columns [x0, x1) (bilinear)."""
    from scipy.ndimage import map_coordinates

    yy = (np.arange(y0, y1, dtype=np.float64) + 64) / _AF_STEP
    xx = (np.arange(x0, x1, dtype=np.float64) + 64) / _AF_STEP
    coords = np.stack(np.meshgrid(yy, xx, indexing="ij"))
    return map_coordinates(grid, coords, order=1, mode="nearest").astype(np.float32)


def _area_mean(a: np.ndarray, s: int) -> np.ndarray:
    c, h, w = a.shape
    return a[:, : h // s * s, : w // s * s].reshape(c, h // s, s, w // s, s).mean(axis=(2, 4))


def _quantise(img: np.ndarray, p: SynthParams, offset: float) -> np.ndarray:
    """Analog grey levels (8-bit units) to the detector's integers: uint8, or uint16 (see `SynthParams`)."""
    if p.bit_depth == 16:
        adu = p.offset16 + (img.astype(np.float64) - offset) * p.adu_per_grey16
        return np.clip(np.rint(adu), 0, 65535).astype(np.uint16)
    return np.clip(np.rint(img), 0, 255).astype(np.uint8)


def _record(
    rng: np.random.Generator, signal: np.ndarray, p: SynthParams, s: int, carry: dict[int, np.ndarray]
) -> np.ndarray:
    """Detector of the /s scan: background light, shot noise and afterpulses, read noise, offset, rounding.

    `carry` holds, per scale, the photons of the last row of the previous band (afterpulses along
    y reach into the next band's first row).
    """
    dark, offset, read = p.per_scan("dark", s), p.per_scan("offset", s), p.per_scan("read_noise", s)
    light = np.maximum(signal + dark, 0.0)
    if p.noise:
        g, q = p.per_scan("grey_per_photon", s), p.per_scan("afterpulse", s)
        photons = rng.poisson(light / (g * (1.0 + q)))
        if q > 0:  # afterpulses land in the next pixel along the scan's fast axis
            after = np.zeros_like(photons)
            if s in p.fast_axis_y:
                after[..., 1:, :] = rng.binomial(photons[..., :-1, :], q)
                if s in carry:
                    after[..., 0, :] = rng.binomial(carry[s], q)
                carry[s] = photons[..., -1, :].copy()
            else:
                after[..., 1:] = rng.binomial(photons[..., :-1], q)
            photons += after
        img = photons.astype(np.float32) * g + offset
        if read > 0:
            img += rng.normal(0.0, read, light.shape).astype(np.float32)
    else:
        img = light + offset
    return _quantise(img, p, offset)


def synth_tile(tile: int, params: SynthParams = SynthParams()) -> dict[int, np.ndarray]:
    """Generate one tile's acquisitions: HR and one separate scan per LR scale.

    Parameters
    ----------
    tile : int
        Tile id (part of every seed).
    params : SynthParams

    Returns
    -------
    dict of int to ndarray
        ``{1: hr (C, H, H), s: (C, H//s, H//s) for s in params.scales}``, uint8 (or uint16 for
        ``bit_depth=16``); C = ``params.channels`` (3: CELL0..CELL2, see
        `srcaco2.srdata.synth.model.channel_markers`).
    """
    from scipy.ndimage import gaussian_filter

    p = params
    h = w = int(p.hr_size)
    dtype = np.uint16 if p.bit_depth == 16 else np.uint8
    mix = None if p.channels == 3 else channel_markers(p.channels)
    nch = p.channels
    spec = make_specimen(tile, p)
    shifts = tile_misregistration(tile, p)
    noise_rng = np.random.default_rng([p.seed, int(tile), 1])
    carry: dict[int, np.ndarray] = {}
    ideal = not p.noise and not p.misregistration
    max_shift = max((max(abs(v) for v in d) for d in shifts.values()), default=0)
    scans = (1, *p.scales)
    m = int(math.ceil(4 * max(p.per_scan("psf_sigma", s) for s in scans))) + max_shift + 8
    out = {s: np.empty((nch, h // s, w // s), dtype) for s in scans}
    af_grid = _autofluorescence_grid(tile, p) if max(p.autofluorescence) > 0 else None
    lcm = math.lcm(*p.scales)  # every band starts on a row of every LR scan
    band = p.band if p.band % lcm == 0 else lcm * max(1, round(p.band / lcm))
    for b0 in range(0, h, band):
        b1 = min(h, b0 + band)
        scene = render(spec, p, b0 - m, b1 + m, -m, w + m)  # (SCANS, 3, rows, cols)
        af = None if af_grid is None else _autofluorescence(af_grid, b0 - m, b1 + m, -m, w + m)
        for s in scans:
            if s == 1:
                r0, r1, dy, dx = b0, b1, 0, 0
            else:
                r0, r1 = b0 // s, min(b1, h // s * s) // s
                dy, dx = shifts[s]
            if r1 <= r0 or (ideal and s > 1):
                continue
            sigma = p.per_scan("psf_sigma", s)
            blurred = np.stack([gaussian_filter(ch, sigma, mode="constant") for ch in scene[p.focus_scan(s)]])
            if mix is not None:  # channels as mixes of the markers (a selection for 1 or 2 channels)
                blurred = np.einsum("cm,myx->cyx", mix.astype(np.float32), blurred)
            src = blurred[:, m + dy : m + dy + (r1 - r0) * s, m + dx : m + dx + w // s * s]
            signal = p.per_scan("gain", s) * (src if s == 1 else _area_mean(src, s))
            if af is not None:  # the medium's smooth background light, the same in every channel
                a = af[None, m + dy : m + dy + (r1 - r0) * s, m + dx : m + dx + w // s * s]
                signal = signal + p.per_scan("autofluorescence", s) * (a if s == 1 else _area_mean(a, s))
            out[s][:, r0:r1] = _record(noise_rng, signal, p, s, carry)
        if ideal:  # the teaching mode: LR = exact area mean of the HR tile
            hr = out[1][:, b0:b1].astype(np.float64)
            for s in p.scales:
                r0, r1 = b0 // s, min(b1, h // s * s) // s
                if r1 > r0:
                    out[s][:, r0:r1] = np.round(_area_mean(hr[:, : (r1 - r0) * s], s)).astype(dtype)
    return out


def is_official(params: SynthParams) -> bool:
    """Whether `params` describe SR-CACO-2 acquisitions (3 channels, 8 bit, scales 2, 4, 8)."""
    return params.channels == 3 and params.bit_depth == 8 and tuple(params.scales) == LR_SCALES


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
    if not is_official(params):
        raise ValueError(
            "the official layout holds 3 channels, 8 bit, scales 2, 4, 8; write other settings with "
            "srcaco2.srdata.synth.own.write_own_synth"
        )
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
