"""The parameters of the synthetic specimen and of its four acquisitions (one frozen dataclass).

Every number is a named physical quantity, in HR pixels (lengths) or 8-bit grey levels
(intensities), calibrated on the real SR-CACO-2 sample shipped in ``srdata/data/real_sample``
(see ``benchmarks/synth_realism.py`` for the comparison). Per-scan quantities are 4-tuples in the
order of `SCANS`: HR, /2, /4, /8.
"""

from __future__ import annotations

import dataclasses
import math
from typing import Any

import numpy as np

__all__ = ["SCANS", "LR_SCALES", "MAX_CHANNELS", "SynthParams", "channel_markers", "nuclear_channel"]

SCANS: tuple[int, ...] = (1, 2, 4, 8)
"""The acquisitions of a tile, by scale (1 = HR)."""

LR_SCALES: tuple[int, ...] = (2, 4, 8)
"""The official LR scales."""

MAX_CHANNELS = 8
"""Most channels a synthetic acquisition has."""


def channel_markers(channels: int) -> np.ndarray:
    """(channels, 3) float64: each channel as a mix of the specimen's markers CELL0, CELL1, CELL2.

    3 channels: CELL0, CELL1, CELL2 (the official order); otherwise the nuclei come first: 1: CELL2;
    2: CELL2, CELL1; 4..8: CELL2, CELL1, CELL0, then channels that mix two markers each (0.6 of
    one, 0.4 of the next, each extra channel dimmer by 10 %) so that no two channels are equal.
    The nuclear channel (the ROI channel) is `nuclear_channel`.
    """
    if not 1 <= channels <= MAX_CHANNELS:
        raise ValueError(f"channels must be 1..{MAX_CHANNELS}, got {channels}")
    mix = np.zeros((channels, 3))
    base = [0, 1, 2] if channels == 3 else [2, 1, 0][:channels]
    for i, m in enumerate(base):
        mix[i, m] = 1.0
    for i in range(len(base), channels):
        j = i - 3
        mix[i, j % 3] = 0.6 * 0.9 ** (j + 1)
        mix[i, (j + 1) % 3] = 0.4 * 0.9 ** (j + 1)
    return mix


def nuclear_channel(channels: int) -> int:
    """Index of the nuclear (CELL2) channel among `channels` (2 for the official 3, else 0)."""
    return 2 if channels == 3 else 0


@dataclasses.dataclass(frozen=True)
class SynthParams:
    """Specimen, optics and detector of the synthetic SR-CACO-2 acquisitions.

    The specimen is a monolayer of colonies of cysts (spheroids of epithelial cells). A cyst is a
    disc of packed, touching nuclei (CELL2, mCherry-H2B: bright, textured chromatin), each in a
    cell outlined by its membrane (CELL1) with a few small puncta in its cytoplasm (CELL0, the
    dimmest marker), and glows with out-of-focus light (haze) a little beyond its edge. Every
    cell has a depth z (in units of the depth of field); a scan focused at z_f sees it with
    brightness ``exp(-(z - z_f)² / 2)``, and each scan has its own focus z_f, so the four
    acquisitions of a tile are separate images of the same specimen, not resamplings of one.

    A scan at scale s (s = 1 for HR) records, per pixel of side s HR px::

        light = dark[s] + gain[s] · mean_{s×s}( PSF_s ⊛ scene_s )(y + dy, x + dx)
        photons = Poisson(light / (grey_per_photon[s] · (1 + afterpulse[s])))
        photons += Binomial(photons of the previous pixel of the line, afterpulse[s])
        value = round( offset[s] + grey_per_photon[s] · photons + Normal(0, read_noise[s]) ),
                clipped to 0..255

    with a Gaussian PSF of sigma ``psf_sigma[s]`` HR px, pixel integration over s × s HR px and
    the scan's stage offset (dy, dx) (0 for HR; for LR a random direction and a length uniform
    in ``shift_lr_px`` LR px, rounded to HR px, drawn per tile and scan). A detected photon
    triggers, with probability ``afterpulse[s]``, a second pulse of the detector that the line
    scanner records in the next pixel along its fast axis (x, or y for the scales in
    ``fast_axis_y``): shot noise correlated at lag 1 along that axis only (the mean is unchanged:
    ``light`` counts both pulses). The real /8 scan shows this signature along y (background lag-1
    0.205 along y, 0.100 along x; lag 2: 0.107 and 0.078); the other real scans are as correlated
    along x as along y (the apparent x excess of the /4 scan is one two-pixel speck, left out by
    ``benchmarks/realism_stats.py``). ``light`` also holds the autofluorescence of the medium
    and substrate: a smooth random field of the tile (Gaussian-filtered white noise, correlation
    length ``autofluorescence_scale`` HR px, unit std) times ``autofluorescence[s]``, which
    correlates background neighbours along both axes in every scan, as in the real scans.

    The defaults describe SR-CACO-2 (3 markers, 8 bit, scales 2, 4, 8). Other data sets
    (`channels`, `scales`, `bit_depth`) reuse the same specimen and detectors: a scale outside
    `SCANS` takes its per-scan values by linear interpolation in log2(scale) between the
    neighbouring scans (beyond /8: the /8 values) and the focus plane of the nearest scan; see
    `channel_markers` for the channels; a 16-bit detector records ``offset16 + adu_per_grey16 ·
    (analog - offset)`` (the same photons, a camera-like offset and a finer grey scale).

    Attributes
    ----------
    hr_size : int
        HR tile side, px; LR sides are ``hr_size // s``.
    channels : int
        Channels per acquisition, 1..8 (3: CELL0, CELL1, CELL2, the official order).
    scales : tuple of int
        LR scales, each 2..8, increasing (default: the official 2, 4, 8).
    bit_depth : int
        8 (uint8) or 16 (uint16).
    offset16 : float
        16-bit detector offset, ADU.
    adu_per_grey16 : float
        16-bit ADU per 8-bit grey level of light.
    seed : int
        Root seed; tile ``t`` draws from ``numpy.random.default_rng([seed, t, ...])``.
    noise : bool
        Shot and read noise (off: the rounded expected image).
    misregistration : bool
        Stage offsets of the LR scans (off: LR aligned with HR). With ``noise=False`` and
        ``misregistration=False`` every LR tile is the exact s × s area mean of the HR tile
        (``np.round``, float64): an idealised teaching mode with no physics left in it.
    band : int
        HR rows generated at once (multiple of 8); bounds memory on 9,344² tiles.
    colony_density : float
        Expected colonies per 1e6 HR px².
    cysts_per_colony : (int, int)
        Cysts per colony, uniform in [lo, hi].
    cyst_radius : (float, float)
        Cyst radius, uniform, HR px.
    nucleus_radius : float
        Mean radius of a nucleus, HR px (the geometric mean of its semi-axes varies ±20 %).
    nucleus_aspect : (float, float)
        Long / short semi-axis of a nucleus, uniform.
    packing : float
        Nucleus spacing in units of the mean nucleus diameter (< 1: nuclei touch and press).
    lumen_fraction : float
        Fraction of lattice sites left empty (lumen, dead cells).
    nucleus_brightness : (float, float)
        In-focus CELL2 nucleus brightness, uniform, grey levels before PSF and gain.
    texture : float
        Relative amplitude of the chromatin texture (std of the multiplicative field).
    texture_scale : float
        Correlation length of the chromatin texture, HR px.
    edge_width : float
        Width of a nucleus' soft edge, HR px.
    membrane_brightness : (float, float)
        CELL1 membrane brightness per cyst, uniform, grey levels.
    membrane_width : float
        Membrane half-thickness, HR px.
    puncta_per_cell : float
        Mean CELL0 puncta per cell (Poisson).
    puncta_brightness : (float, float)
        Integrated CELL0 punctum brightness (a point source), grey levels · px².
    cytoplasm : (float, float, float)
        Diffuse level inside cells of CELL0, CELL1, CELL2, grey levels.
    haze : float
        Out-of-focus light of a cyst relative to its mean nucleus brightness.
    haze_width : float
        How far the haze reaches beyond the cyst edge, HR px.
    depth_spread : float
        Std of the cells' depth z, depth-of-field units.
    focus_jitter : (float, float, float, float)
        Std of each scan's focus z_f, depth-of-field units (HR is the reference plane, 0).
    psf_sigma : (float, float, float, float)
        Gaussian PSF sigma of each scan, HR px.
    gain : (float, float, float, float)
        Brightness of each scan relative to the specimen (laser power, detector gain).
    grey_per_photon : (float, float, float, float)
        Grey levels per detected photon (shot noise variance = grey_per_photon · signal).
    dark : (float, float, float, float)
        Background light (autofluorescence, stray light), grey levels, shot-noise limited.
    offset : (float, float, float, float)
        Detector offset, grey levels (noise-free).
    read_noise : (float, float, float, float)
        Read-noise std, grey levels.
    autofluorescence : (float, float, float, float)
        Std of the smooth background light of each scan, grey levels (added before shot noise).
    autofluorescence_scale : float
        Gaussian sigma of the autofluorescence field, HR px.
    afterpulse : (float, float, float, float)
        Probability that a detected photon is followed by an afterpulse in the next pixel along x;
        pure shot noise then has lag-1 correlation ``q / (1 + q)`` along the fast axis.
    fast_axis_y : tuple of int
        Scales whose scan runs along y (scan rotated by 90°): their afterpulses land in the next
        row, not the next column.
    shift_lr_px : (float, float)
        Length of an LR scan's stage offset, uniform, LR px of that scan.
    """

    hr_size: int = 2048
    channels: int = 3
    scales: tuple[int, ...] = LR_SCALES
    bit_depth: int = 8
    offset16: float = 1000.0
    adu_per_grey16: float = 200.0
    seed: int = 0
    noise: bool = True
    misregistration: bool = True
    band: int = 512
    # specimen
    colony_density: float = 3.0
    cysts_per_colony: tuple[int, int] = (2, 6)
    cyst_radius: tuple[float, float] = (80.0, 160.0)
    nucleus_radius: float = 20.5
    nucleus_aspect: tuple[float, float] = (1.0, 2.2)
    packing: float = 0.98
    lumen_fraction: float = 0.08
    nucleus_brightness: tuple[float, float] = (30.0, 110.0)
    texture: float = 0.04
    texture_scale: float = 1.8
    edge_width: float = 1.6
    membrane_brightness: tuple[float, float] = (25.0, 60.0)
    membrane_width: float = 1.3
    puncta_per_cell: float = 3.0
    puncta_brightness: tuple[float, float] = (60.0, 200.0)
    cytoplasm: tuple[float, float, float] = (2.0, 3.0, 4.0)
    haze: float = 0.16
    haze_width: float = 28.0
    depth_spread: float = 0.7
    focus_jitter: tuple[float, float, float, float] = (0.0, 0.05, 0.05, 0.15)
    # optics and detector, per scan (HR, /2, /4, /8)
    psf_sigma: tuple[float, float, float, float] = (1.3, 1.3, 1.4, 1.6)
    gain: tuple[float, float, float, float] = (1.0, 0.97, 0.98, 0.88)
    grey_per_photon: tuple[float, float, float, float] = (0.25, 1.25, 0.75, 0.45)
    dark: tuple[float, float, float, float] = (0.08, 0.2, 0.2, 0.3)
    offset: tuple[float, float, float, float] = (1.0, 1.0, 1.0, 1.0)
    read_noise: tuple[float, float, float, float] = (0.06, 0.25, 0.15, 0.18)
    autofluorescence: tuple[float, float, float, float] = (0.15, 0.2, 0.12, 0.2)
    autofluorescence_scale: float = 10.0
    afterpulse: tuple[float, float, float, float] = (0.0, 0.0, 0.0, 0.15)
    fast_axis_y: tuple[int, ...] = (8,)
    shift_lr_px: tuple[float, float] = (1.0, 2.5)

    def __post_init__(self) -> None:
        problems = []
        if self.hr_size < 8:
            problems.append(f"hr_size must be >= 8 HR px, got {self.hr_size}")
        if self.band < 8 or self.band % 8:
            problems.append(f"band must be a positive multiple of 8, got {self.band}")
        for name in ("focus_jitter", "psf_sigma", "gain", "grey_per_photon", "dark", "offset", "read_noise",
                     "afterpulse", "autofluorescence"):  # fmt: skip
            v = getattr(self, name)
            if len(v) != len(SCANS):
                problems.append(f"{name} needs one value per scan {SCANS}, got {v!r}")
            elif min(v) < 0:
                problems.append(f"{name} must be >= 0, got {v!r}")
        if min(self.grey_per_photon) <= 0 or min(self.psf_sigma) <= 0:
            problems.append("grey_per_photon and psf_sigma must be > 0")
        for name in ("cysts_per_colony", "cyst_radius", "nucleus_brightness", "membrane_brightness",
                     "puncta_brightness", "shift_lr_px", "nucleus_aspect"):  # fmt: skip
            lo, hi = getattr(self, name)
            if not 0 <= lo <= hi:
                problems.append(f"{name} must be (lo, hi) with 0 <= lo <= hi, got {(lo, hi)!r}")
        if self.nucleus_radius < 2 or self.packing <= 0:
            problems.append("nucleus_radius must be >= 2 px and packing > 0")
        if self.nucleus_aspect[0] < 1:
            problems.append(f"nucleus_aspect must be >= 1 (long / short), got {self.nucleus_aspect!r}")
        if len(self.afterpulse) == len(SCANS) and max(self.afterpulse) >= 1:
            problems.append(f"afterpulse must be probabilities < 1, got {self.afterpulse!r}")
        if any(int(v) != v or not 1 <= v <= 8 for v in self.fast_axis_y):
            problems.append(f"fast_axis_y must hold scales 1..8, got {self.fast_axis_y!r}")
        if self.autofluorescence_scale <= 0:
            problems.append(f"autofluorescence_scale must be > 0 HR px, got {self.autofluorescence_scale}")
        if not 1 <= self.channels <= MAX_CHANNELS:
            problems.append(f"channels must be 1..{MAX_CHANNELS}, got {self.channels}")
        sc = tuple(self.scales)
        if not sc or any(int(v) != v or not 2 <= v <= 8 for v in sc) or list(sc) != sorted(set(sc)):
            problems.append(f"scales must be distinct increasing integers in 2..8, got {sc!r}")
        if self.bit_depth not in (8, 16):
            problems.append(f"bit_depth must be 8 or 16, got {self.bit_depth}")
        if self.adu_per_grey16 <= 0 or not 0 <= self.offset16 < 65535:
            problems.append("adu_per_grey16 must be > 0 and offset16 in 0..65534")
        if problems:
            raise ValueError("invalid SynthParams: " + "; ".join(problems))

    def scan(self, scale: int) -> int:
        """Index of a scale in the per-scan tuples (1 → 0, 2 → 1, 4 → 2, 8 → 3)."""
        try:
            return SCANS.index(int(scale))
        except ValueError:
            raise ValueError(f"scale must be one of {SCANS}, got {scale!r}") from None

    def per_scan(self, name: str, scale: int) -> float:
        """Value of the per-scan parameter `name` for any scale (log2-interpolated between `SCANS`)."""
        v = getattr(self, name)
        if scale in SCANS:
            return float(v[SCANS.index(scale)])
        t = min(math.log2(scale), math.log2(SCANS[-1]))
        i = max(k for k in range(len(SCANS)) if math.log2(SCANS[k]) <= t)
        if i == len(SCANS) - 1:
            return float(v[i])
        lo, hi = math.log2(SCANS[i]), math.log2(SCANS[i + 1])
        w = (t - lo) / (hi - lo)
        return float((1 - w) * v[i] + w * v[i + 1])

    def focus_scan(self, scale: int) -> int:
        """Index in `SCANS` of the scan whose focus plane a scale uses (the nearest in log2)."""
        return int(np.argmin([abs(math.log2(scale) - math.log2(s)) for s in SCANS]))

    def to_json(self) -> dict[str, Any]:
        """Plain-JSON dict (tuples as lists); `from_json` inverts it."""
        return {k: list(v) if isinstance(v, tuple) else v for k, v in dataclasses.asdict(self).items()}

    @classmethod
    def from_json(cls, d: dict[str, Any]) -> SynthParams:
        """Parameters from `to_json` output (unknown keys are ignored, e.g. ``synth.json`` extras)."""
        names = {f.name: f for f in dataclasses.fields(cls)}
        kw = {k: tuple(v) if isinstance(v, list) else v for k, v in d.items() if k in names}
        return cls(**kw)
