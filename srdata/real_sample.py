"""The real SR-CACO-2 sample shipped with the package (``srdata/data/real_sample``, BSD 3-Clause).

One 512² HR region of CELL2 (mCherry-H2B nuclei) and its three separate, unregistered
low-resolution acquisitions (/2, /4, /8), from the benchmark's public repository; see the
``README.md`` and ``LICENSE`` beside the files. Used to calibrate `srcaco2.srdata.synth`, by
``benchmarks/synth_realism.py`` and by the demo report.
"""

from __future__ import annotations

from pathlib import Path

import numpy as np

__all__ = ["real_lr", "REAL_SAMPLE_DIR", "REAL_SAMPLE_MARKER", "load_real_sample", "registered_region"]

REAL_SAMPLE_DIR = Path(__file__).parent / "data" / "real_sample"
"""Folder of ``div1.tif`` (HR 512²), ``div2.tif``, ``div4.tif``, ``div8.tif``, README and LICENSE."""

REAL_SAMPLE_MARKER = "CELL2"


def load_real_sample() -> dict[int, np.ndarray]:
    """The four real acquisitions: ``{1: (512, 512), 2: (256, 256), 4: (128, 128), 8: (64, 64)}`` uint8."""
    import tifffile

    out = {}
    for s in (1, 2, 4, 8):
        path = REAL_SAMPLE_DIR / f"div{s}.tif"
        if not path.exists():
            raise FileNotFoundError(f"{path} is missing: the real sample ships with the package "
                                    "(srdata/data/real_sample); reinstall srcaco2")  # fmt: skip
        out[s] = np.asarray(tifffile.imread(path), dtype=np.uint8)
    return out


def real_lr(scale: int, sample: dict[int, np.ndarray] | None = None) -> np.ndarray:
    """The sample's LR image at `scale`: the real scan at 2, 4 and 8; at another scale (your own data's
    x3, ...) the HR's ``scale``² block means, rounded (uint8; no real scan exists there)."""
    sample = sample if sample is not None else load_real_sample()
    s = int(scale)
    if s in sample:
        return sample[s]
    hr = sample[1]
    n = hr.shape[0] // s * s
    blocks = hr[:n, :n].astype(np.float64).reshape(n // s, s, n // s, s).mean(axis=(1, 3))
    return np.round(blocks).astype(np.uint8)


def registered_region(
    hr: np.ndarray, lr: np.ndarray, scale: int, *, margin: int = 64, shift: tuple[int, int] | None = None
) -> tuple[np.ndarray, np.ndarray, tuple[int, int]]:
    """Register an LR region to its HR region as docs/protocol.md#registration does a window, and crop the
    margins.

    The TV-L1 shift (`srcaco2.srdata.registration.window_shift`) is estimated on the whole region; the
    registered LR patch starts at `srcaco2.srdata.schema.lr_patch_origin` (the block-centre convention of
    the store), zero-filled where it leaves the region.

    Parameters
    ----------
    hr : (H, H) uint8, HR pixels (H a multiple of `scale`)
    lr : (H/s, H/s) uint8, the /`scale` acquisition of the same region
    scale : int
    margin : int
        HR px cropped from every side (64, the registration margin).
    shift : (dy, dx), optional
        Known shift, HR px (skips the TV-L1 estimate).

    Returns
    -------
    lr_patch : ((H - 2·margin)/s)² uint8
    hr_patch : (H - 2·margin)² uint8
    shift : (dy, dx) HR px
    """
    from srcaco2.srdata.registration import window_shift
    from srcaco2.srdata.schema import lr_patch_origin

    s = int(scale)
    hr, lr = np.asarray(hr), np.asarray(lr)
    if hr.ndim != 2 or hr.shape[0] != hr.shape[1] or hr.shape[0] % s or lr.shape != (hr.shape[0] // s,) * 2:
        raise ValueError(f"need a square HR region (side a multiple of {s}) and its /{s} region, "
                         f"got {hr.shape} and {lr.shape}")  # fmt: skip
    if margin % s or 2 * margin >= hr.shape[0]:
        raise ValueError(f"margin {margin} must be a multiple of {s} and leave a patch in {hr.shape}")
    dy, dx = window_shift(hr, lr, s) if shift is None else (int(shift[0]), int(shift[1]))
    n = (hr.shape[0] - 2 * margin) // s
    oy, ox = lr_patch_origin(0, 0, dy, dx, s)
    oy += (margin - 64) // s  # lr_patch_origin adds the store's 64 px margin
    ox += (margin - 64) // s
    out = np.zeros((n, n), np.uint8)
    ys, ye = max(oy, 0), min(oy + n, lr.shape[0])
    xs, xe = max(ox, 0), min(ox + n, lr.shape[1])
    if ye > ys and xe > xs:
        out[ys - oy : ye - oy, xs - ox : xe - ox] = lr[ys:ye, xs:xe]
    return out, hr[margin:-margin, margin:-margin], (int(dy), int(dx))
