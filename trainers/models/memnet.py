"""MemNet, pre-upsampling.

Paper: Y. Tai, J. Yang, X. Liu, C. Xu, "MemNet: A Persistent Memory Network for Image
Restoration", ICCV 2017.

Benchmark variant (``reference/memnet_x*.json``): 64 channels, pre-activation BN-ReLU-Conv units
without biases, 6 memory blocks. Memory block ``i`` (0-based) holds 6 DISTINCT residual blocks in
``recursive_unit`` (each BN, ReLU, Conv3x3, BN, ReLU, Conv3x3 + identity) and runs the whole
6-block Sequential 6 times (36 residual-block calls); its 6 short-term outputs are the outputs
after each full pass. The gate unit (BN, ReLU, Conv1x1) reads
``cat(short outputs + long-term outputs)`` where the long-term list holds the feature extractor
output and every previous memory block output ((6 + i + 1) * 64 channels); the gate output is
appended to the list. ``feature_extractor`` = BN(1), ReLU, Conv(1, 64, 3); ``reconstructor`` =
BN(64), ReLU, Conv(64, 1, 1); output = reconstructor + bicubic image (PyTorch bicubic a = -0.75,
clamp [0, 1], inside `forward`). BatchNorm2d everywhere (eps 1e-5, momentum 0.1): ``eval()`` uses
the running statistics.

Hyperparameters (overrides): ``num_memory_blocks`` (6), ``num_residual_blocks`` (6; also the
number of passes of the recursive unit), ``num_features`` (64).
Init (as the original): kaiming_normal_ (fan_in) for convs, BN weight 1, bias 0.
"""

from __future__ import annotations

import torch
from torch import nn

from srcaco2.trainers.models._hparams import resolve_hparams
from srcaco2.trainers.models._interp import BicubicResidualNet
from srcaco2.trainers.models._reach import pre_upsampled
from srcaco2.trainers.models.registry import register_model

__all__ = ["MemNet", "build"]

_DEFAULTS = {"num_memory_blocks": 6, "num_residual_blocks": 6, "num_features": 64}


def _bn_relu_conv(cin: int, cout: int, k: int) -> list[nn.Module]:
    return [nn.BatchNorm2d(cin), nn.ReLU(inplace=True), nn.Conv2d(cin, cout, k, padding=k // 2, bias=False)]


class _ResidualBlock(nn.Module):
    def __init__(self, channels: int) -> None:
        super().__init__()
        self.residual_block = nn.Sequential(
            *_bn_relu_conv(channels, channels, 3), *_bn_relu_conv(channels, channels, 3)
        )

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        return self.residual_block(x) + x


class _MemoryBlock(nn.Module):
    def __init__(self, channels: int, num_residual_blocks: int, num_long: int) -> None:
        super().__init__()
        self.num_passes = int(num_residual_blocks)
        self.recursive_unit = nn.Sequential(*[_ResidualBlock(channels) for _ in range(num_residual_blocks)])
        gate_in = (num_residual_blocks + num_long) * channels
        self.gate_unit = nn.Sequential(*_bn_relu_conv(gate_in, channels, 1))

    def forward(self, x: torch.Tensor, long_outputs: list[torch.Tensor]) -> torch.Tensor:
        short = []
        for _ in range(self.num_passes):
            x = self.recursive_unit(x)
            short.append(x)
        out = self.gate_unit(torch.cat(short + long_outputs, dim=1))
        long_outputs.append(out)
        return out


class MemNet(BicubicResidualNet):
    """MemNet on the internal bicubic image (`BicubicResidualNet`).

    Parameters
    ----------
    scale, in_channels : int
        Upscaling factor; image channels.
    num_memory_blocks, num_residual_blocks, num_features : int
        See the module docstring.
    """

    def __init__(
        self,
        scale: int,
        in_channels: int = 1,
        num_memory_blocks: int = 6,
        num_residual_blocks: int = 6,
        num_features: int = 64,
    ) -> None:
        super().__init__(scale)
        self.feature_extractor = nn.Sequential(*_bn_relu_conv(in_channels, num_features, 3))
        self.dense_memory_blocks = nn.ModuleList(
            [_MemoryBlock(num_features, num_residual_blocks, i + 1) for i in range(num_memory_blocks)]
        )
        self.reconstructor = nn.Sequential(*_bn_relu_conv(num_features, in_channels, 1))
        for m in self.modules():
            if isinstance(m, nn.Conv2d):
                nn.init.kaiming_normal_(m.weight)
            elif isinstance(m, nn.BatchNorm2d):
                nn.init.ones_(m.weight)
                nn.init.zeros_(m.bias)

    def residual(self, x_interp: torch.Tensor) -> torch.Tensor:
        out = self.feature_extractor(x_interp)
        long_outputs = [out]
        for block in self.dense_memory_blocks:
            out = block(out, long_outputs)
        return self.reconstructor(out)


@register_model(
    "memnet",
    scales=tuple(range(2, 9)),  # what the architecture builds (tested at every scale)
    family="pre-upsampling",
    display_name="MemNet",
    table_rank=3,
    paper="MemNet, Tai et al., ICCV 2017",
    pre_upsampling="torch_bicubic",
    tiny={"num_features": 8, "num_memory_blocks": 2, "num_residual_blocks": 2},
    hparams=_DEFAULTS,
    reach=lambda s, hp: pre_upsampled(
        s, 1 + 2 * int(hp["num_memory_blocks"]) * int(hp["num_residual_blocks"]) ** 2
    ),
)
def build(scale: int, in_channels: int = 1, **overrides) -> nn.Module:
    """Build the benchmark MemNet (overrides: ``num_memory_blocks``, ``num_residual_blocks``,
    ``num_features``)."""
    hp = resolve_hparams("memnet", _DEFAULTS, overrides)
    return MemNet(scale, in_channels, **hp)
