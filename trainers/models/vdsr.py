"""VDSR, pre-upsampling.

Paper: J. Kim, J. K. Lee, K. M. Lee, "Accurate Image Super-Resolution Using Very Deep
Convolutional Networks", CVPR 2016.

Benchmark variant (``reference/vdsr_x*.json``): 20 conv 3x3 layers, 64 channels, NO biases,
ReLU: ``conv1`` = Conv(1, 64) + ReLU, ``trunk`` = 18 x [Conv(64, 64) + ReLU] (keys
``trunk.i.conv.weight``), ``conv2`` = Conv(64, 1); global residual on the clamped bicubic image.
The LR input is upsampled inside `forward` with PyTorch bicubic (a = -0.75,
``align_corners=False``) and clamped to [0, 1]. Same network at every scale (664,704 params).

Hyperparameters (overrides): ``num_features`` (64), ``num_trunk_layers`` (18).
Init (as the original): N(0, sqrt(2 / (kh * kw * out_channels))).
"""

from __future__ import annotations

import math

import torch
from torch import nn

from srcaco2.trainers.models._hparams import resolve_hparams
from srcaco2.trainers.models._interp import BicubicResidualNet
from srcaco2.trainers.models._reach import pre_upsampled
from srcaco2.trainers.models.registry import register_model

__all__ = ["VDSR", "build"]

_DEFAULTS = {"num_features": 64, "num_trunk_layers": 18}


class _ConvReLU(nn.Module):
    def __init__(self, channels: int) -> None:
        super().__init__()
        self.conv = nn.Conv2d(channels, channels, 3, padding=1, bias=False)
        self.relu = nn.ReLU(inplace=True)

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        return self.relu(self.conv(x))


class VDSR(BicubicResidualNet):
    """VDSR on the internal bicubic image (`BicubicResidualNet`).

    Parameters
    ----------
    scale, in_channels : int
        Upscaling factor; image channels.
    num_features : int
        Width of the hidden layers.
    num_trunk_layers : int
        Hidden 64 -> 64 layers between ``conv1`` and ``conv2``.
    """

    def __init__(
        self, scale: int, in_channels: int = 1, num_features: int = 64, num_trunk_layers: int = 18
    ) -> None:
        super().__init__(scale)
        self.conv1 = nn.Sequential(
            nn.Conv2d(in_channels, num_features, 3, padding=1, bias=False), nn.ReLU(inplace=True)
        )
        self.trunk = nn.Sequential(*[_ConvReLU(num_features) for _ in range(num_trunk_layers)])
        self.conv2 = nn.Conv2d(num_features, in_channels, 3, padding=1, bias=False)
        for m in self.modules():
            if isinstance(m, nn.Conv2d):
                n = m.kernel_size[0] * m.kernel_size[1] * m.out_channels
                nn.init.normal_(m.weight, 0.0, math.sqrt(2.0 / n))

    def residual(self, x_interp: torch.Tensor) -> torch.Tensor:
        return self.conv2(self.trunk(self.conv1(x_interp)))


@register_model(
    "vdsr",
    scales=tuple(range(2, 9)),  # what the architecture builds (tested at every scale)
    family="pre-upsampling",
    display_name="VDSR",
    table_rank=1,
    paper="VDSR, Kim et al., CVPR 2016",
    pre_upsampling="torch_bicubic",
    tiny={"num_features": 8, "num_trunk_layers": 2},
    hparams=_DEFAULTS,
    reach=lambda s, hp: pre_upsampled(s, int(hp["num_trunk_layers"]) + 2),
)
def build(scale: int, in_channels: int = 1, **overrides) -> nn.Module:
    """Build the benchmark VDSR (overrides: ``num_features``, ``num_trunk_layers``)."""
    hp = resolve_hparams("vdsr", _DEFAULTS, overrides)
    return VDSR(scale, in_channels, **hp)
