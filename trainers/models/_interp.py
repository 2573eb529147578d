"""Interpolations the benchmark networks use around their layers.

Three bicubic rules appear in SR-CACO-2 (docs/protocol.md#training-crops, #bicubic-baseline, #method-table):

* `torch_bicubic`: PyTorch's default bicubic (Keys a = -0.75, half-pixel centres, replicated
  border, no antialias) followed by clamp to [0, 1]. VDSR, DRRN, MemNet and ProSR call it inside
  their `forward`.
* `opencv_bicubic_uint8`: what SRCNN's evaluation input is: OpenCV ``INTER_CUBIC`` on the 8-bit
  LR, rounded and saturated, then /255. For integer factors this equals
  ``round(255 * clamp(torch_bicubic(lr), 0, 1)) / 255`` except at rare rounding ties.
* `antialiased_bicubic`: the benchmark's bicubic *baseline*, ``F.interpolate(...,
  mode="bicubic", antialias=True)`` (Keys a = -0.5, taps outside the image dropped and weights
  renormalised) then clamp to [0, 1].

All functions take ``x : (B, C, h, w)`` float in [0, 1] (LR pixels) and return
``(B, C, s*h, s*w)`` of the same dtype.
"""

from __future__ import annotations

import torch
import torch.nn.functional as F
from torch import nn

__all__ = [
    "torch_bicubic",
    "opencv_bicubic_uint8",
    "antialiased_bicubic",
    "BicubicResidualNet",
]


def _check(x: torch.Tensor, scale: int) -> None:
    if x.dim() != 4:
        raise ValueError(f"expected an image batch (B, C, h, w), got a tensor of shape {tuple(x.shape)}")
    if int(scale) != scale or scale < 1:
        raise ValueError(f"scale must be a positive integer, got {scale!r}")


def torch_bicubic(x: torch.Tensor, scale: int, *, clamp: bool = True) -> torch.Tensor:
    """PyTorch bicubic upsampling (a = -0.75, ``align_corners=False``), clamped to [0, 1].

    Parameters
    ----------
    x : (B, C, h, w) float tensor in [0, 1]
        LR image.
    scale : int
        Integer upscaling factor; the output size is ``(s*h, s*w)``.
    clamp : bool
        Clamp the result to [0, 1] (the benchmark always does).

    Returns
    -------
    (B, C, s*h, s*w) tensor, same dtype as `x`.
    """
    _check(x, scale)
    h, w = x.shape[-2:]
    up = F.interpolate(x, size=(scale * h, scale * w), mode="bicubic", align_corners=False)
    return up.clamp(0.0, 1.0) if clamp else up


def opencv_bicubic_uint8(x: torch.Tensor, scale: int) -> torch.Tensor:
    """OpenCV-equivalent uint8 bicubic: ``round(255 * clamp(torch_bicubic(x), 0, 1)) / 255``.

    The rule SRCNN's evaluation input follows (the original resizes the 8-bit LR with
    ``cv2.INTER_CUBIC`` and divides by 255). Equal to OpenCV's fixed-point result except at rare
    rounding ties (about 5e-6 of the pixels).

    Parameters
    ----------
    x : (B, C, h, w) float tensor in [0, 1]
        LR image (values k/255 in the benchmark).
    scale : int
        Integer upscaling factor.

    Returns
    -------
    (B, C, s*h, s*w) tensor, same dtype as `x`, values k/255.
    """
    up = torch_bicubic(x.float(), scale, clamp=True)
    return (torch.round(up * 255.0) / 255.0).to(x.dtype)


def antialiased_bicubic(x: torch.Tensor, scale: int) -> torch.Tensor:
    """The benchmark's bicubic baseline: ``F.interpolate(x, scale_factor=s, mode="bicubic",
    antialias=True)`` then clamp to [0, 1] (Keys a = -0.5, renormalised borders;
    docs/protocol.md#bicubic-baseline).

    Parameters
    ----------
    x : (B, C, h, w) float tensor in [0, 1]
        LR image.
    scale : int
        Integer upscaling factor.

    Returns
    -------
    (B, C, s*h, s*w) tensor, same dtype as `x`.
    """
    _check(x, scale)
    up = F.interpolate(x, scale_factor=scale, mode="bicubic", align_corners=False, antialias=True)
    return up.clamp(0.0, 1.0)


class BicubicResidualNet(nn.Module):
    """Base of VDSR, DRRN and MemNet: ``forward(lr) = residual(up) + up``, ``up = torch_bicubic(lr, s)``.

    Subclasses call ``super().__init__(scale)`` first, build their layers, and implement
    `residual`. No module or parameter is added here, so the subclasses' state_dict keys are
    exactly their own.

    Parameters
    ----------
    scale : int
        Upscaling factor of the internal bicubic pre-upsampling.
    """

    def __init__(self, scale: int) -> None:
        super().__init__()
        self.scale = int(scale)

    def residual(self, x_interp: torch.Tensor) -> torch.Tensor:
        """The network body on the upsampled image ``(B, C, s*h, s*w)`` (same shape out)."""
        raise NotImplementedError

    def forward(self, lr: torch.Tensor) -> torch.Tensor:
        """``lr : (B, C, h, w)`` float in [0, 1] -> ``(B, C, s*h, s*w)`` (not clamped)."""
        x_interp = torch_bicubic(lr, self.scale)
        return self.residual(x_interp) + x_interp
