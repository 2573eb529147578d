"""DRRN (B1U25), pre-upsampling.

Paper: Y. Tai, J. Yang, X. Liu, "Image Super-Resolution via Deep Recursive Residual Network",
CVPR 2017.

Benchmark variant (``reference/drrn_x*.json``): 128 channels, no biases, ONE recursive block
holding ONE residual unit (pre-activation ReLU-conv-ReLU-conv) applied 25 times with shared
weights; global residual on the bicubic image. Layers: ``conv1`` = ReLU, Conv(1, 128, 3);
``trunk.residual_unit`` = ReLU, Conv(128, 128, 3), ReLU, Conv(128, 128, 3); ``conv2`` = ReLU,
Conv(128, 1, 3). The LR is upsampled inside `forward` (PyTorch bicubic a = -0.75, clamp [0, 1]).

In-place quirk of the original (reproduced): the unit's first ReLU is in place and at the first
recursion its input IS the trunk input ``x = conv1(bicubic)``, so ``x`` is rectified in place and
the skip added at every recursion is ``relu(x)``, not ``x``:
``out_0 = x; out_u = unit(out_{u-1}) + relu(x)``.

Hyperparameters (overrides): ``num_residual_units`` (25), ``num_features`` (128).
Init (as the original): kaiming_normal_(mode="fan_out", nonlinearity="relu").
"""

from __future__ import annotations

import torch
import torch.nn.functional as F
from torch import nn

from srcaco2.trainers.models._hparams import resolve_hparams
from srcaco2.trainers.models._interp import BicubicResidualNet
from srcaco2.trainers.models._reach import pre_upsampled
from srcaco2.trainers.models.registry import register_model

__all__ = ["DRRN", "build"]

_DEFAULTS = {"num_residual_units": 25, "num_features": 128}


def _relu_conv(cin: int, cout: int) -> list[nn.Module]:
    return [nn.ReLU(), nn.Conv2d(cin, cout, 3, padding=1, bias=False)]


class _RecursiveBlock(nn.Module):
    """One residual unit applied ``num_residual_units`` times with shared weights."""

    def __init__(self, channels: int, num_residual_units: int) -> None:
        super().__init__()
        self.num_residual_units = int(num_residual_units)
        self.residual_unit = nn.Sequential(*_relu_conv(channels, channels), *_relu_conv(channels, channels))

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        skip = F.relu(x)  # the original's in-place ReLU rectifies x at the first recursion
        out = x
        for _ in range(self.num_residual_units):
            out = self.residual_unit(out) + skip
        return out


class DRRN(BicubicResidualNet):
    """DRRN B1U25 on the internal bicubic image (`BicubicResidualNet`).

    Parameters
    ----------
    scale, in_channels : int
        Upscaling factor; image channels.
    num_residual_units : int
        Recursions of the shared residual unit.
    num_features : int
        Width.
    """

    def __init__(
        self, scale: int, in_channels: int = 1, num_residual_units: int = 25, num_features: int = 128
    ) -> None:
        super().__init__(scale)
        self.conv1 = nn.Sequential(*_relu_conv(in_channels, num_features))
        self.trunk = _RecursiveBlock(num_features, num_residual_units)
        self.conv2 = nn.Sequential(*_relu_conv(num_features, in_channels))
        for m in self.modules():
            if isinstance(m, nn.Conv2d):
                nn.init.kaiming_normal_(m.weight, mode="fan_out", nonlinearity="relu")

    def residual(self, x_interp: torch.Tensor) -> torch.Tensor:
        return self.conv2(self.trunk(self.conv1(x_interp)))


@register_model(
    "drrn",
    scales=tuple(range(2, 9)),  # what the architecture builds (tested at every scale)
    family="pre-upsampling",
    display_name="DRRN",
    table_rank=2,
    paper="DRRN, Tai et al., CVPR 2017",
    pre_upsampling="torch_bicubic",
    tiny={"num_features": 8, "num_residual_units": 3},
    hparams=_DEFAULTS,
    reach=lambda s, hp: pre_upsampled(s, 2 * int(hp["num_residual_units"]) + 2),
)
def build(scale: int, in_channels: int = 1, **overrides) -> nn.Module:
    """Build the benchmark DRRN (overrides: ``num_residual_units``, ``num_features``)."""
    hp = resolve_hparams("drrn", _DEFAULTS, overrides)
    return DRRN(scale, in_channels, **hp)
