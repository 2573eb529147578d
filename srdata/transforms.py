"""Paired sample transforms: the 8 dihedral augmentations and the interpolated-low LR variant.

The dihedral modes follow docs/protocol.md#training-crops step 5 (numbering of the original benchmark),
applied to the last two axes so that LR, HR and ROI crops of any leading shape get the *same* transform:

====  ===========================  ====  ===========================
mode  transform                    mode  transform
====  ===========================  ====  ===========================
0     identity                     4     flipud ∘ rot90², i.e. fliplr
1     flipud ∘ rot90               5     rot90
2     flipud                       6     rot90²
3     rot90³                       7     flipud ∘ rot90³
====  ===========================  ====  ===========================

(rot90 is counter-clockwise, ``np.rot90``; flipud reverses rows.) Each mode maps an LR crop that is
the s×s area mean of its HR crop to one that is still the area mean of the transformed HR crop.
"""

from __future__ import annotations

from typing import Any

import numpy as np

__all__ = ["N_DIHEDRAL", "dihedral", "interpolated_low", "add_roi_noise", "to_float"]

N_DIHEDRAL: int = 8

_AXES = (-2, -1)


def dihedral(img: np.ndarray, mode: int, *, copy: bool = True) -> np.ndarray:
    """Dihedral transform `mode` (0..7, table in the module docstring) of the last two axes.

    Parameters
    ----------
    img : (..., y, x) array
    mode : int
    copy : bool
        True: a C-contiguous copy; False: a (strided) view, for callers that copy anyway.

    Returns
    -------
    (..., y', x') array
    """
    m = int(mode)
    if m == 0:
        out = img
    elif m == 1:
        out = np.flip(np.rot90(img, 1, _AXES), -2)
    elif m == 2:
        out = np.flip(img, -2)
    elif m == 3:
        out = np.rot90(img, 3, _AXES)
    elif m == 4:
        out = np.flip(np.rot90(img, 2, _AXES), -2)
    elif m == 5:
        out = np.rot90(img, 1, _AXES)
    elif m == 6:
        out = np.rot90(img, 2, _AXES)
    elif m == 7:
        out = np.flip(np.rot90(img, 3, _AXES), -2)
    else:
        raise ValueError(f"dihedral mode must be in 0..7, got {mode!r}")
    return np.ascontiguousarray(out) if copy else out


def interpolated_low(hr: np.ndarray, scale: int) -> np.ndarray:
    """LR synthesised from HR as the original's ``use_interpolated_low`` (docs/protocol.md#training-crops).

    PyTorch bicubic (a = −0.75, half-pixel centres, no antialias) to ``1/scale``, clamped to
    [0, 255] and truncated to uint8.

    Parameters
    ----------
    hr : (C, y, x) uint8, HR pixels

    Returns
    -------
    (C, y/scale, x/scale) uint8, LR pixels
    """
    import torch
    import torch.nn.functional as F

    c, h, w = hr.shape
    t = torch.from_numpy(np.ascontiguousarray(hr, dtype=np.float32))[None]
    lr = F.interpolate(t, size=(h // scale, w // scale), mode="bicubic", align_corners=False, antialias=False)
    return lr[0].clamp_(0, 255).to(torch.uint8).numpy()


def add_roi_noise(
    lr: np.ndarray, rng: np.random.Generator, *, threshold: int = 7, sigma: float = 6.0
) -> np.ndarray:
    """Gaussian noise N(0, sigma²) added inside the LR's own ROI (``lr >= threshold``) only.

    Clamped to [0, 255] and truncated to uint8, as the original's interpolated-low branch
    (``inter_low_th = 7``, ``inter_low_sigma = 6``).

    Parameters
    ----------
    lr : (..., y, x) uint8
    rng : numpy Generator (per sample, `srcaco2.srdata.samplers.sample_rng`)

    Returns
    -------
    (..., y, x) uint8, a new array
    """
    roi = lr >= threshold
    noise = rng.normal(0.0, sigma, size=lr.shape)
    out = lr.astype(np.float64) + noise * roi
    return np.clip(out, 0, 255).astype(np.uint8)


def to_float(batch: dict[str, Any], intensity: Any = None) -> dict[str, Any]:
    """A raw batch (numpy ``lr``/``hr`` of the store's dtype, bool ``roi``, int64 columns) as torch tensors.

    ``lr`` and ``hr`` (B, C, ...) become float32 in [0, 1] by the store's intensity scaling
    (`srcaco2.srdata.intensity.Intensity`, its channels in the batch's order; default: uint8
    ``/ 255``, in numpy, single-threaded: torch's intra-op pool is slow for these small ops on busy
    CPUs; float32 division by 255 is correctly rounded in both, so values equal torch's). Other
    numpy arrays become tensors sharing their memory; other entries (ints) are kept. Returns a new dict.
    """
    import torch

    out = {}
    for k, v in batch.items():
        if k in ("lr", "hr"):
            unit = (
                np.divide(v, np.float32(255), dtype=np.float32) if intensity is None else intensity.to_unit(v)
            )
            v = torch.from_numpy(unit)
        elif isinstance(v, np.ndarray):
            v = torch.from_numpy(v)
        out[k] = v
    return out
