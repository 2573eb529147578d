"""Synthetic raw tiles in the official layout: epithelial cysts imaged at HR and at /2, /4, /8.

The scene is a set of colonies of cysts (rings of cells around a lumen). Each cell has a membrane
outline (CELL1), a bright nucleus (CELL2) and a few small dim puncta (CELL0), on a dark background.
Each acquisition is simulated separately from the same scene:

* HR: scene blurred by a Gaussian PSF, Poisson (shot) noise and Gaussian read noise, uint8.
* /s (s = 2, 4, 8): the blurred scene shifted by a small per-tile misregistration (integer HR
  pixels), integrated over s x s HR pixels, its own shot and read noise, uint8.

With ``noise=False, misregistration=False`` the HR tile is the rounded blurred scene and every LR
tile is the exact s x s area mean of the HR tile, ``np.round(hr.reshape(...).mean())`` (float64,
round half to even), so that LR and HR align pixel for pixel.

Tiles are generated in row bands (memory ~ a few hundred MB for a 9,344² tile) with vectorised
numpy; everything is a pure function of ``(seed, tile)``.
"""

from __future__ import annotations

import dataclasses
import json
import logging
import os
from collections.abc import Callable

import numpy as np

from srdata.layout import FOLDERS, tile_path

__all__ = ["SynthParams", "synth_tile", "tile_misregistration", "write_synth"]

log = logging.getLogger(__name__)

_LR_SCALES = (2, 4, 8)


@dataclasses.dataclass(frozen=True)
class SynthParams:
    """Parameters of the synthetic acquisition (lengths in HR pixels, intensities in uint8 units).

    Attributes
    ----------
    hr_size : int
        HR tile side; LR sides are ``hr_size // s``.
    seed : int
        Root seed; tile ``t`` uses ``numpy.random.default_rng([seed, t])``.
    colony_density : float
        Expected colonies per 1e6 HR px² (colonies hold the cysts; the rest is background).
    psf_sigma : float
        Gaussian PSF sigma, HR px.
    read_noise : float
        Read-noise standard deviation, uint8 units.
    offset : float
        Dark offset added before noise, uint8 units.
    max_shift : int
        LR misregistration is uniform in [-max_shift, max_shift] HR px per tile, scale and axis.
    noise, misregistration : bool
        Turn the noise / the LR misregistration off (exactly aligned area-mean LR).
    band : int
        Rows generated at once (multiple of 8).
    """

    hr_size: int = 2048
    seed: int = 0
    colony_density: float = 2.2
    psf_sigma: float = 1.4
    read_noise: float = 0.7
    offset: float = 0.4
    max_shift: int = 3
    noise: bool = True
    misregistration: bool = True
    band: int = 512


@dataclasses.dataclass(frozen=True)
class _Cyst:
    cy: float
    cx: float
    radius: float
    thick: float
    n_cells: int
    phase: float
    nucleus: np.ndarray  # (n,) CELL2 brightness
    membrane: float  # CELL1 brightness
    nuc_off: np.ndarray  # (n,) radial offset of the nucleus, px
    puncta: np.ndarray  # (m, 3) y, x, amplitude (CELL0)


def _make_cysts(rng: np.random.Generator, h: int, w: int, p: SynthParams) -> list[_Cyst]:
    n_col = max(1, int(rng.poisson(p.colony_density * h * w / 1e6)))
    cysts: list[_Cyst] = []
    for _ in range(n_col):
        ccy, ccx = rng.uniform(0, h), rng.uniform(0, w)
        crad = rng.uniform(250, 700)
        for _ in range(int(rng.integers(3, 9))):
            ang, dist = rng.uniform(0, 2 * np.pi), crad * np.sqrt(rng.uniform(0, 1))
            radius = float(rng.uniform(50, 190))
            thick = float(np.clip(radius * rng.uniform(0.35, 0.6), 24, 70))
            n = max(6, int(round(2 * np.pi * radius / (0.75 * thick))))
            cy, cx = ccy + dist * np.sin(ang), ccx + dist * np.cos(ang)
            m = int(rng.poisson(2.5 * n))
            pa = rng.uniform(0, 2 * np.pi, m)
            pr = radius + rng.uniform(-0.45, 0.45, m) * thick
            puncta = np.stack([cy + pr * np.sin(pa), cx + pr * np.cos(pa), rng.uniform(120, 380, m)], axis=1)
            cysts.append(
                _Cyst(
                    cy=cy, cx=cx, radius=radius, thick=thick, n_cells=n, phase=float(rng.uniform(0, 1)),
                    nucleus=rng.uniform(40, 170, n), membrane=float(rng.uniform(25, 90)),
                    nuc_off=rng.uniform(-0.12, 0.12, n) * thick, puncta=puncta,
                )
            )  # fmt: skip
    return cysts


def _render(cysts: list[_Cyst], y0: int, y1: int, x0: int, x1: int) -> np.ndarray:
    """Sharp scene on HR rows [y0, y1), cols [x0, x1): (3, y, x) float32."""
    out = np.zeros((3, y1 - y0, x1 - x0), np.float32)
    for c in cysts:
        ext = c.radius + c.thick
        ya, yb = max(y0, int(c.cy - ext)), min(y1, int(c.cy + ext) + 1)
        xa, xb = max(x0, int(c.cx - ext)), min(x1, int(c.cx + ext) + 1)
        if ya >= yb or xa >= xb:
            continue
        yy = np.arange(ya, yb, dtype=np.float32)[:, None] - c.cy
        xx = np.arange(xa, xb, dtype=np.float32)[None, :] - c.cx
        r = np.sqrt(yy * yy + xx * xx)
        half = c.thick / 2
        ring = np.abs(r - c.radius) <= half
        if not ring.any():
            continue
        u = (np.arctan2(yy, xx) / (2 * np.pi) + 0.5) * c.n_cells + c.phase
        k = np.floor(u).astype(np.int64) % c.n_cells
        f = u - np.floor(u)
        arc = 2 * np.pi * np.maximum(r, 1) / c.n_cells  # cell width at this radius, px
        d_ang = np.minimum(f, 1 - f) * arc
        d_rad = half - np.abs(r - c.radius)
        edge = np.minimum(d_ang, d_rad)
        memb = c.membrane * (np.exp(-((edge / 1.6) ** 2)) + 0.08)
        dr = (r - c.radius - c.nuc_off[k]) / (0.36 * c.thick)
        dt = (f - 0.5) * arc / (0.32 * arc + 1e-6)
        q = dr * dr + dt * dt
        nuc = np.where(q < 1, c.nucleus[k] * (1 - 0.45 * q), 0.0) + 1.5
        sl = (slice(ya - y0, yb - y0), slice(xa - x0, xb - x0))
        out[1][sl] += np.where(ring, memb, 0).astype(np.float32)
        out[2][sl] += np.where(ring, nuc, 0).astype(np.float32)
        out[0][sl] += np.where(ring, 1.0, 0).astype(np.float32)
        pts = c.puncta
        sel = (pts[:, 0] >= y0) & (pts[:, 0] < y1) & (pts[:, 1] >= x0) & (pts[:, 1] < x1)
        if sel.any():
            py = pts[sel, 0].astype(np.int64) - y0
            px = pts[sel, 1].astype(np.int64) - x0
            np.add.at(out[0], (py, px), pts[sel, 2].astype(np.float32))
    return out


def _acquire(rng: np.random.Generator, mean: np.ndarray, p: SynthParams) -> np.ndarray:
    """Shot + read noise on an expected image (uint8 units), rounded and clipped to uint8."""
    if p.noise:
        lam = np.maximum(mean + p.offset, 0)
        img = rng.poisson(lam).astype(np.float32) + rng.normal(0, p.read_noise, lam.shape).astype(np.float32)
    else:
        img = mean
    return np.clip(np.rint(img), 0, 255).astype(np.uint8)


def _area_mean(a: np.ndarray, s: int) -> np.ndarray:
    c, h, w = a.shape
    return a[:, : h // s * s, : w // s * s].reshape(c, h // s, s, w // s, s).mean(axis=(2, 4))


def tile_misregistration(tile: int, params: SynthParams = SynthParams()) -> dict[int, tuple[int, int]]:
    """Per-scale misregistration (dy, dx) of a tile's LR scans, HR px.

    The /s scan sees the scene at HR position ``(y + dy, x + dx)`` where HR sees ``(y, x)``, so the
    registration shift that re-aligns it (`srdata.registration.window_shift`) is about ``(-dy, -dx)``
    (plus the (s - 1)/2 px centre offset of s x s integration).
    """
    if not params.misregistration:
        return {s: (0, 0) for s in _LR_SCALES}
    rng = np.random.default_rng([params.seed, int(tile), 2])
    return {
        s: (int(v[0]), int(v[1]))
        for s in _LR_SCALES
        for v in [rng.integers(-params.max_shift, params.max_shift + 1, 2)]
    }


def synth_tile(tile: int, params: SynthParams = SynthParams()) -> dict[int, np.ndarray]:
    """Generate one tile's four acquisitions.

    Parameters
    ----------
    tile : int
        Tile id (part of the seed).
    params : SynthParams

    Returns
    -------
    dict of int to ndarray
        ``{1: hr (3, H, H) uint8, 2: (3, H//2, H//2), 4: ..., 8: ...}``, c = CELL0..CELL2.
    """
    from scipy.ndimage import gaussian_filter

    p = params
    if p.band % 8:
        raise ValueError(f"band must be a multiple of 8, got {p.band}")
    h = w = int(p.hr_size)
    rng = np.random.default_rng([p.seed, int(tile)])
    cysts = _make_cysts(rng, h, w, p)
    shifts = tile_misregistration(tile, p)
    noise_rng = np.random.default_rng([p.seed, int(tile), 1])
    m = int(np.ceil(4 * p.psf_sigma)) + p.max_shift + 8
    out = {1: np.empty((3, h, w), np.uint8)}
    out.update({s: np.empty((3, h // s, w // s), np.uint8) for s in _LR_SCALES})
    for b0 in range(0, h, p.band):
        b1 = min(h, b0 + p.band)
        scene = _render(cysts, b0 - m, b1 + m, -m, w + m)
        blurred = np.stack([gaussian_filter(ch, p.psf_sigma, mode="constant") for ch in scene])
        hr = _acquire(noise_rng, blurred[:, m : m + b1 - b0, m : m + w], p)
        out[1][:, b0:b1] = hr
        for s in _LR_SCALES:
            r0, r1 = b0 // s, min(b1, h // s * s) // s
            if r1 <= r0:
                continue
            if not p.noise and not p.misregistration:
                out[s][:, r0:r1] = np.round(_area_mean(hr.astype(np.float64)[:, : (r1 - r0) * s], s)).astype(
                    np.uint8
                )
                continue
            dy, dx = shifts[s]
            src = blurred[:, m + dy : m + dy + (r1 - r0) * s, m + dx : m + dx + w // s * s]
            out[s][:, r0:r1] = _acquire(noise_rng, _area_mean(src, s), p)
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
        Output directory (created); receives ``HighRes1024/``, ``LowRes512/``, ``LowRes256/``, ``LowRes128/``.
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
        "n_tiles": n_tiles,
        "tiles": tiles,
        **dataclasses.asdict(params),
        "misregistration_hr_px": {
            str(t): {str(s): list(v) for s, v in tile_misregistration(t, params).items()} for t in tiles
        },
    }
    with open(os.path.join(out, "synth.json"), "w") as fh:
        json.dump(meta, fh, indent=2)
    return tiles
