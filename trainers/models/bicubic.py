"""Bicubic baseline of the SR-CACO-2 benchmark (no weights).

The benchmark scores an ``Interpolate`` baseline beside every network (docs/protocol.md#bicubic-baseline):
``F.interpolate(lr, scale_factor=s, mode="bicubic", antialias=True)`` clamped to [0, 1]. With
``antialias=True`` an upsampling bicubic in PyTorch uses Keys a = -0.5 with taps outside the image
dropped and the weights renormalised (PIL-style), half-pixel centres. This differs from the
network-internal bicubic of VDSR/DRRN/MemNet/ProSR (a = -0.75, see `srcaco2.trainers.models._interp`).

Hyperparameters: none (``scale`` only); the module has no parameters and no state_dict entries.
"""

from __future__ import annotations

import torch
from torch import nn

from srcaco2.trainers.models._hparams import resolve_hparams
from srcaco2.trainers.models._interp import antialiased_bicubic
from srcaco2.trainers.models._reach import Reach
from srcaco2.trainers.models.registry import register_model

__all__ = ["Bicubic", "build"]


class Bicubic(nn.Module):
    """Antialiased bicubic upsampling (a = -0.5), clamped to [0, 1].

    Parameters
    ----------
    scale : int
        Upscaling factor.
    in_channels : int
        Image channels (only recorded; any channel count works).
    """

    def __init__(self, scale: int, in_channels: int = 1) -> None:
        super().__init__()
        self.scale = int(scale)
        self.in_channels = int(in_channels)

    def forward(self, lr: torch.Tensor) -> torch.Tensor:
        """``lr : (B, C, h, w)`` float in [0, 1] -> ``(B, C, s*h, s*w)`` in [0, 1]."""
        return antialiased_bicubic(lr, self.scale)

    def extra_repr(self) -> str:
        return f"scale={self.scale}, antialias=True, a=-0.5, clamp=[0, 1]"


@register_model(
    "bicubic",
    scales=tuple(range(2, 9)),  # what the architecture builds (tested at every scale)
    family="bicubic",
    display_name="Bicubic",
    table_rank=0,
    paper="bicubic interpolation (antialiased, PyTorch)",
    tiny={},
    hparams={},
    reach=lambda s, hp: Reach.lr().interp(s, 4),
)
def build(scale: int, in_channels: int = 1, **overrides) -> nn.Module:
    """Build the bicubic baseline (no overrides accepted)."""
    resolve_hparams("bicubic", {}, overrides)
    return Bicubic(scale, in_channels)
