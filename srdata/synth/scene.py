"""The synthetic specimen: colonies of cysts of packed, textured nuclei, and its sharp rendering.

`make_specimen` draws one tile's specimen (a pure function of ``(seed, tile)``); `render` paints
any rectangle of it at HR sampling, as each scan sees it (per-cell focus factors), before the
optics: ``(scans, 3 markers, rows, cols)`` float32 grey levels. Everything is defined by
position, so rendering a rectangle in bands gives the same pixels as rendering it whole.
"""

from __future__ import annotations

import dataclasses

import numpy as np

from srcaco2.srdata.synth.model import SCANS, SynthParams

__all__ = ["Specimen", "make_specimen", "render", "focus_planes"]


@dataclasses.dataclass(frozen=True)
class Specimen:
    """One tile's specimen (HR px, grey levels before optics).

    Attributes
    ----------
    cyst : (C, 3) float64
        Cyst centre y, x and radius.
    cyst_membrane : (C,) float64
        CELL1 membrane brightness of each cyst.
    cyst_haze : (C, 3) float64
        Out-of-focus haze level of each cyst, per marker.
    nucleus : (N, 6) float64
        Nucleus centre y, x, semi-axes a, b, orientation (rad), in-focus CELL2 brightness.
    nucleus_cyst : (N,) int64
        Cyst of each nucleus (rows of `nucleus` are grouped by cyst, in order).
    depth : (N,) float64
        Depth z of each cell, depth-of-field units.
    puncta : (P, 4) float64
        CELL0 punctum y, x, integrated brightness, and its cell (row of `nucleus`).
    focus : (len(SCANS),) float64
        Focus z_f of each scan.
    seed : tuple of int
        Root of the per-nucleus texture seeds.
    """

    cyst: np.ndarray
    cyst_membrane: np.ndarray
    cyst_haze: np.ndarray
    nucleus: np.ndarray
    nucleus_cyst: np.ndarray
    depth: np.ndarray
    puncta: np.ndarray
    focus: np.ndarray
    seed: tuple[int, ...]

    def focus_factor(self) -> np.ndarray:
        """(N, scans) brightness of each cell in each scan, ``exp(-(z - z_f)² / 2)``."""
        return np.exp(-0.5 * (self.depth[:, None] - self.focus[None, :]) ** 2)


def focus_planes(tile: int, p: SynthParams) -> np.ndarray:
    """Focus z_f of each scan of a tile, (len(SCANS),) float64, depth-of-field units (HR = 0)."""
    rng = np.random.default_rng([p.seed, int(tile), 3])
    return rng.normal(0.0, 1.0, len(SCANS)) * np.asarray(p.focus_jitter, np.float64)


def _place_cysts(rng: np.random.Generator, h: int, w: int, p: SynthParams) -> np.ndarray:
    r_hi = p.cyst_radius[1]
    n_col = max(1, int(rng.poisson(p.colony_density * h * w / 1e6)))
    out: list[tuple[float, float, float]] = []
    for _ in range(n_col):
        ccy, ccx = rng.uniform(-r_hi, h + r_hi), rng.uniform(-r_hi, w + r_hi)
        lo, hi = p.cysts_per_colony
        for _ in range(int(rng.integers(lo, hi + 1))):
            radius = float(rng.uniform(*p.cyst_radius))
            for _try in range(20):  # cysts of a colony touch but do not overlap much
                ang, dist = rng.uniform(0, 2 * np.pi), rng.uniform(0, 2.2 * r_hi)
                cy, cx = ccy + dist * np.sin(ang), ccx + dist * np.cos(ang)
                if all(np.hypot(cy - y, cx - x) > 0.92 * (radius + r) for y, x, r in out):
                    out.append((cy, cx, radius))
                    break
    return np.asarray(out, np.float64).reshape(-1, 3)


def _nuclei_in_cyst(
    rng: np.random.Generator, cy: float, cx: float, radius: float, p: SynthParams
) -> np.ndarray:
    """Jittered hexagonal packing of nuclei in a disc: (n, 6) y, x, a, b, theta, brightness."""
    d = 2.0 * p.nucleus_radius * p.packing
    k = int(np.ceil(radius / d)) + 2
    j, i = np.meshgrid(np.arange(-k, k + 1), np.arange(-k, k + 1), indexing="ij")
    u = (i + 0.5 * (j % 2)) * d
    v = j * d * np.sqrt(3) / 2
    rot = rng.uniform(0, np.pi)
    y = (u * np.sin(rot) + v * np.cos(rot)).ravel() + rng.uniform(-d / 2, d / 2)
    x = (u * np.cos(rot) - v * np.sin(rot)).ravel() + rng.uniform(-d / 2, d / 2)
    y = y + rng.normal(0, 0.12 * d, y.shape)
    x = x + rng.normal(0, 0.12 * d, x.shape)
    keep = (np.hypot(y, x) < radius - 0.45 * p.nucleus_radius) & (
        rng.uniform(0, 1, y.shape) >= p.lumen_fraction
    )
    y, x = y[keep] + cy, x[keep] + cx
    n = len(y)
    size = p.nucleus_radius * rng.uniform(0.8, 1.2, n)
    aspect = rng.uniform(*p.nucleus_aspect, n)
    a, b = size * np.sqrt(aspect), size / np.sqrt(aspect)
    theta = rng.uniform(0, np.pi, n)
    amp = rng.uniform(*p.nucleus_brightness, n)
    return np.stack([y, x, a, b, theta, amp], axis=1)


def make_specimen(tile: int, p: SynthParams) -> Specimen:
    """Draw the specimen of one tile (HR extent ``hr_size``², cysts may cross the edges)."""
    rng = np.random.default_rng([p.seed, int(tile)])
    h = w = int(p.hr_size)
    cysts = _place_cysts(rng, h, w, p)
    nuclei, owner, membrane, haze = [], [], [], []
    for c, (cy, cx, radius) in enumerate(cysts):
        nuc = _nuclei_in_cyst(rng, cy, cx, radius, p)
        nuclei.append(nuc)
        owner.append(np.full(len(nuc), c, np.int64))
        m = float(rng.uniform(*p.membrane_brightness))
        membrane.append(m)
        mean_amp = float(nuc[:, 5].mean()) if len(nuc) else float(np.mean(p.nucleus_brightness))
        haze.append(p.haze * np.array([3.0 * p.cytoplasm[0], 0.4 * m, mean_amp]))
    nucleus = np.concatenate(nuclei) if nuclei else np.zeros((0, 6))
    n = len(nucleus)
    depth = rng.normal(0.0, p.depth_spread, n)
    counts = rng.poisson(p.puncta_per_cell, n)
    cell = np.repeat(np.arange(n), counts)
    ang = rng.uniform(0, 2 * np.pi, len(cell))
    reach = np.maximum(nucleus[cell, 2], nucleus[cell, 3]) * rng.uniform(0.95, 1.5, len(cell))
    py, px = nucleus[cell, 0] + reach * np.sin(ang), nucleus[cell, 1] + reach * np.cos(ang)
    bright = rng.uniform(*p.puncta_brightness, len(cell))
    puncta = np.stack([py, px, bright, cell.astype(np.float64)], axis=1)
    return Specimen(
        cyst=cysts,
        cyst_membrane=np.asarray(membrane, np.float64),
        cyst_haze=np.asarray(haze, np.float64).reshape(-1, 3),
        nucleus=nucleus,
        nucleus_cyst=np.concatenate(owner) if owner else np.zeros(0, np.int64),
        depth=depth,
        puncta=puncta.reshape(-1, 4),
        focus=focus_planes(tile, p),
        seed=(int(p.seed), int(tile)),
    )


def _texture(seed: tuple[int, ...], n: int, shape: tuple[int, int], scale: float) -> np.ndarray:
    """Unit-std smooth random field of one nucleus (its own seed: the same in every band)."""
    from scipy.ndimage import gaussian_filter

    field = gaussian_filter(np.random.default_rng([*seed, 7, n]).standard_normal(shape), scale, mode="wrap")
    return field / max(float(field.std()), 1e-6)


def render(spec: Specimen, p: SynthParams, y0: int, y1: int, x0: int, x1: int) -> np.ndarray:
    """The sharp specimen on HR rows [y0, y1), columns [x0, x1) as each scan sees it.

    Parameters
    ----------
    spec : Specimen
    p : SynthParams
    y0, y1, x0, x1 : int
        HR pixel rectangle (may extend beyond the tile).

    Returns
    -------
    (len(SCANS), 3, y1 - y0, x1 - x0) float32
        Grey levels before PSF, gain and noise; markers CELL0, CELL1, CELL2.
    """
    from scipy.spatial import cKDTree

    ns = len(SCANS)
    out = np.zeros((ns, 3, y1 - y0, x1 - x0), np.float32)
    if not len(spec.cyst):
        return out
    f = spec.focus_factor().astype(np.float32)  # (N, scans)
    nuc = spec.nucleus
    ext = p.haze_width * 3
    for c, (cy, cx, radius) in enumerate(spec.cyst):
        ya, yb = max(y0, int(cy - radius - ext)), min(y1, int(cy + radius + ext) + 1)
        xa, xb = max(x0, int(cx - radius - ext)), min(x1, int(cx + radius + ext) + 1)
        if ya >= yb or xa >= xb:
            continue
        sl = (slice(ya - y0, yb - y0), slice(xa - x0, xb - x0))
        yy = np.arange(ya, yb, dtype=np.float32)[:, None]
        xx = np.arange(xa, xb, dtype=np.float32)[None, :]
        r = np.hypot(yy - cy, xx - cx)
        inside = 1.0 / (1.0 + np.exp(np.clip((r - radius) / p.edge_width, -30, 30)))
        hz = 0.5 * (1.0 - np.tanh((r - radius) / (p.haze_width / 2)))
        own = np.nonzero(spec.nucleus_cyst == c)[0]
        for m in range(3):
            out[:, m][(slice(None), *sl)] += (p.cytoplasm[m] * inside + spec.cyst_haze[c, m] * hz)[None]
        if not len(own):
            continue
        # CELL1: membranes on the Voronoi boundaries between neighbouring nuclei, and the cyst's rim
        pts = np.stack(np.broadcast_arrays(yy, xx), axis=-1).reshape(-1, 2)
        tree = cKDTree(nuc[own, :2])
        k = min(2, len(own))
        d, i = tree.query(pts, k=k)
        if k == 1:
            d, i = np.stack([d, np.full_like(d, np.inf)], 1), np.stack([i, i], 1)
        gap = ((d[:, 1] - d[:, 0]) / 2).reshape(r.shape)
        near = own[i[:, 0]].reshape(r.shape)
        memb = spec.cyst_membrane[c] * (np.exp(-((gap / p.membrane_width) ** 2)) * inside
                                        + np.exp(-(((r - radius) / p.membrane_width) ** 2)))  # fmt: skip
        out[:, 1][(slice(None), *sl)] += memb[None].astype(np.float32) * np.moveaxis(f[near], -1, 0)
    # CELL2: nuclei (max-composited: nuclei exclude each other in the focal plane)
    reach = np.maximum(nuc[:, 2], nuc[:, 3]) + 3 * p.edge_width + 2
    sel = np.nonzero((nuc[:, 0] + reach > y0) & (nuc[:, 0] - reach < y1)
                     & (nuc[:, 1] + reach > x0) & (nuc[:, 1] - reach < x1))[0]  # fmt: skip
    for n in sel:
        ny, nx, a, b, th, amp = nuc[n]
        # the nucleus' own box (independent of the band), then its overlap with the band
        by0, bx0 = int(np.floor(ny - reach[n])), int(np.floor(nx - reach[n]))
        side = int(np.ceil(2 * reach[n])) + 1
        ya, yb = max(y0, by0), min(y1, by0 + side)
        xa, xb = max(x0, bx0), min(x1, bx0 + side)
        if ya >= yb or xa >= xb:
            continue
        tex = _texture(spec.seed, int(n), (side, side), p.texture_scale)[
            ya - by0 : yb - by0, xa - bx0 : xb - bx0
        ]
        dy = np.arange(ya, yb, dtype=np.float64)[:, None] - ny
        dx = np.arange(xa, xb, dtype=np.float64)[None, :] - nx
        u = dx * np.cos(th) + dy * np.sin(th)
        v = -dx * np.sin(th) + dy * np.cos(th)
        q = np.sqrt((u / a) ** 2 + (v / b) ** 2)
        edge = 1.0 / (1.0 + np.exp(np.clip((q - 1.0) * np.sqrt(a * b) / p.edge_width, -30, 30)))
        prof = amp * edge * (1.0 - 0.2 * np.minimum(q, 1.0) ** 2) * np.maximum(1.0 + p.texture * tex, 0.0)
        prof = prof.astype(np.float32)
        sl = (slice(ya - y0, yb - y0), slice(xa - x0, xb - x0))
        for s in range(ns):
            np.maximum(out[s, 2][sl], prof * f[n, s], out=out[s, 2][sl])
    # CELL0: puncta, point sources
    pu = spec.puncta
    iy, ix = np.floor(pu[:, 0]).astype(np.int64), np.floor(pu[:, 1]).astype(np.int64)
    ok = (iy >= y0) & (iy < y1) & (ix >= x0) & (ix < x1)
    if ok.any():
        cells = pu[ok, 3].astype(np.int64)
        for s in range(ns):
            np.add.at(out[s, 0], (iy[ok] - y0, ix[ok] - x0), (pu[ok, 2] * f[cells, s]).astype(np.float32))
    return out
