"""SRCNN (benchmark variant), pre-upsampling.

Paper: C. Dong, C. C. Loy, K. He, X. Tang, "Learning a Deep Convolutional Network for Image
Super-Resolution", ECCV 2014 (9-5-5 network, 64/32 filters).

Benchmark variant (docs/protocol.md#method-table, #quirks item 11; ``reference/srcnn_x*.json``): ``features``
= Conv(1, 1024, 5, pad 2) + ReLU; ``map`` = Conv(1024, 128, 1) + ReLU; ``reconstruction`` =
Conv(128, 1, 1); no residual, no clamp. Identical for every scale (157,953 parameters).

The original feeds the network an image upsampled OUTSIDE the network by OpenCV bicubic. Here
`forward` takes the LR image and does it itself, so every model maps LR -> HR:

* ``eval()``: the evaluation rule, OpenCV ``INTER_CUBIC`` on the 8-bit LR, rounded, /255,
  reproduced as ``round(255 * clamp(torch_bicubic(lr), 0, 1)) / 255``;
* ``train()``: the training rule, bicubic of the float LR crop clipped to [0, 1] (no rounding).

Hyperparameters (overrides): ``num_features`` (1024, first layer width), ``num_map_features``
(128, second layer width). Init (as the original): conv weights N(0, sqrt(2 / (out * kh * kw))),
reconstruction N(0, 0.001), biases 0.
"""

from __future__ import annotations

import math

import torch
from torch import nn

from srcaco2.trainers.models._hparams import resolve_hparams
from srcaco2.trainers.models._interp import opencv_bicubic_uint8, torch_bicubic
from srcaco2.trainers.models._reach import Reach
from srcaco2.trainers.models.registry import register_model

__all__ = ["SRCNN", "build"]

_DEFAULTS = {"num_features": 1024, "num_map_features": 128}


class SRCNN(nn.Module):
    """SRCNN benchmark variant taking the LR image (pre-upsampling done in `forward`).

    Parameters
    ----------
    scale : int
        Upscaling factor of the pre-upsampling.
    in_channels : int
        Image channels.
    num_features, num_map_features : int
        Widths of the 5x5 and 1x1 layers.
    """

    def __init__(
        self, scale: int, in_channels: int = 1, num_features: int = 1024, num_map_features: int = 128
    ) -> None:
        super().__init__()
        self.scale = int(scale)
        self.features = nn.Sequential(
            nn.Conv2d(in_channels, num_features, 5, padding=2), nn.ReLU(inplace=True)
        )
        self.map = nn.Sequential(nn.Conv2d(num_features, num_map_features, 1), nn.ReLU(inplace=True))
        self.reconstruction = nn.Conv2d(num_map_features, in_channels, 1)
        for m in self.modules():
            if isinstance(m, nn.Conv2d):
                n = m.out_channels * m.kernel_size[0] * m.kernel_size[1]
                nn.init.normal_(m.weight, 0.0, math.sqrt(2.0 / n))
                nn.init.zeros_(m.bias)
        nn.init.normal_(self.reconstruction.weight, 0.0, 0.001)

    def upsample(self, lr: torch.Tensor) -> torch.Tensor:
        """The network input: uint8-rule bicubic in eval, float bicubic clipped to [0, 1] in train."""
        if self.training:
            return torch_bicubic(lr, self.scale, clamp=True)
        return opencv_bicubic_uint8(lr, self.scale)

    def forward(self, lr: torch.Tensor) -> torch.Tensor:
        """``lr : (B, C, h, w)`` float in [0, 1] -> ``(B, C, s*h, s*w)`` (not clamped)."""
        x = self.upsample(lr)
        return self.reconstruction(self.map(self.features(x)))


@register_model(
    "srcnn",
    scales=tuple(range(2, 9)),  # what the architecture builds (tested at every scale)
    family="pre-upsampling",
    display_name="SRCNN",
    table_rank=0,
    paper="SRCNN, Dong et al., ECCV 2014",
    pre_upsampling="opencv_bicubic_uint8",
    tiny={"num_features": 8, "num_map_features": 4},
    hparams=_DEFAULTS,
    reach=lambda s, hp: Reach.lr().interp(s, 4).conv(5),  # bicubic, then the 5x5 conv (1x1 after)
)
def build(scale: int, in_channels: int = 1, **overrides) -> nn.Module:
    """Build the benchmark SRCNN (overrides: ``num_features``, ``num_map_features``)."""
    hp = resolve_hparams("srcnn", _DEFAULTS, overrides)
    return SRCNN(scale, in_channels, **hp)
