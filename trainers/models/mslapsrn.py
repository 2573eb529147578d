"""MS-LapSRN (benchmark variant without weight sharing), progressive.

Paper: W.-S. Lai, J.-B. Huang, N. Ahuja, M.-H. Yang, "Fast and Accurate Image Super-Resolution
with Deep Laplacian Pyramid Networks", TPAMI 2019 (MS-LapSRN; LapSRN, CVPR 2017).

Benchmark variant (``reference/mslapsrn_x*.json``): NO weight sharing between pyramid levels
(unlike the paper's recursive MS-LapSRN). Head ``conv1`` = Conv(1, 64, 3) + LeakyReLU(0.2). Level
k = 1..log2(s) uses three modules ``laplacian_pyramid_conv{3k-2, 3k-1, 3k}``:

* feature branch ``conv{3k-2}`` = 10 x [Conv(64, 64, 3) + LeakyReLU(0.2)] (keys ``i.cl.0``) +
  ConvTranspose(64, 64, 4, 2, 1) + LeakyReLU(0.2);
* image branch ``conv{3k-1}`` = ConvTranspose(1, 1, 4, 2, 1) (a learned x2 upsampling of the
  previous output; single-channel only);
* residual ``conv{3k}`` = Conv(64, 1, 3).

``out_1 = conv2(lr) + conv3(feat_1)``, ``out_k = conv{3k-1}(out_{k-1}) + conv{3k}(feat_k)``.

Outputs: in ``train()`` mode `forward` returns ``[out_1, ..., out_L]`` (sizes ``2^k * (h, w)``, the
final ``s * (h, w)`` last) for the multi-scale loss; in ``eval()`` mode only the final tensor.

Hyperparameters (overrides): ``num_features`` (64), ``num_convs`` (10 per level).
Init quirk (reproduced): the original defines a bilinear deconv init but never calls it, so all
layers keep PyTorch's default initialisation.
"""

from __future__ import annotations

import math
from typing import Any

import torch
from torch import nn

from srcaco2.trainers.models._hparams import resolve_hparams
from srcaco2.trainers.models._reach import Reach, pyramid_levels
from srcaco2.trainers.models.registry import register_model

__all__ = ["MSLapSRN", "build"]

_DEFAULTS = {"num_features": 64, "num_convs": 10}


class _ConvBlock(nn.Module):
    def __init__(self, channels: int) -> None:
        super().__init__()
        self.cl = nn.Sequential(nn.Conv2d(channels, channels, 3, padding=1), nn.LeakyReLU(0.2, inplace=True))

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        return self.cl(x)


class MSLapSRN(nn.Module):
    """MS-LapSRN without weight sharing (LR -> HR, one output per x2 level).

    Parameters
    ----------
    scale : int
        2, 4 or 8 (a power of two); ``log2(scale)`` levels.
    in_channels : int
        Must be 1 (the image branch is 1 -> 1 channel, as in the original).
    num_features, num_convs : int
        Feature width and 3x3 convs per level.
    """

    def __init__(self, scale: int, in_channels: int = 1, num_features: int = 64, num_convs: int = 10) -> None:
        super().__init__()
        levels = int(round(math.log2(scale)))
        if 2**levels != scale or levels < 1:
            raise ValueError(f"MS-LapSRN needs a power-of-two scale >= 2, got scale={scale}")
        if in_channels != 1:
            raise ValueError(
                f"MS-LapSRN's image branch is single-channel (as in the original); got "
                f"in_channels={in_channels}"
            )
        self.scale, self.levels = int(scale), levels
        self.conv1 = nn.Sequential(
            nn.Conv2d(in_channels, num_features, 3, padding=1), nn.LeakyReLU(0.2, inplace=True)
        )
        for k in range(1, levels + 1):
            feat = nn.Sequential(
                *[_ConvBlock(num_features) for _ in range(num_convs)],
                nn.ConvTranspose2d(num_features, num_features, 4, 2, 1),
                nn.LeakyReLU(0.2, inplace=True),
            )
            self.add_module(f"laplacian_pyramid_conv{3 * k - 2}", feat)
            self.add_module(f"laplacian_pyramid_conv{3 * k - 1}", nn.ConvTranspose2d(1, 1, 4, 2, 1))
            self.add_module(f"laplacian_pyramid_conv{3 * k}", nn.Conv2d(num_features, 1, 3, padding=1))

    def forward(self, lr: torch.Tensor) -> torch.Tensor | list[torch.Tensor]:
        """``lr : (B, 1, h, w)`` in [0, 1] -> ``(B, 1, s*h, s*w)`` in eval, the level list in train."""
        feat, img = self.conv1(lr), lr
        outs = []
        for k in range(1, self.levels + 1):
            feat = getattr(self, f"laplacian_pyramid_conv{3 * k - 2}")(feat)
            img = getattr(self, f"laplacian_pyramid_conv{3 * k - 1}")(img) + getattr(
                self, f"laplacian_pyramid_conv{3 * k}"
            )(feat)
            outs.append(img)
        return outs if self.training else outs[-1]


def _reach(scale: int, hp: dict[str, Any]) -> Reach:
    """Per x2 level: the shared conv block, a 4x4/2 transposed conv, the residual and the image branch."""
    feat = Reach.lr().conv(3)
    img = Reach.lr()
    for _ in range(pyramid_levels(scale)):
        feat = feat.conv(3, times=int(hp["num_convs"])).deconv(4, 2, 1)
        img = img.deconv(4, 2, 1) | feat.conv(3)
    return img


@register_model(
    "mslapsrn",
    family="progressive",
    display_name="MS-LapSRN",
    table_rank=1,
    paper="MS-LapSRN, Lai et al., TPAMI 2019",
    multi_output=True,
    tiny={"num_features": 8, "num_convs": 2},
    hparams=_DEFAULTS,
    reach=_reach,
)
def build(scale: int, in_channels: int = 1, **overrides) -> nn.Module:
    """Build the benchmark MS-LapSRN (overrides: ``num_features``, ``num_convs``)."""
    hp = resolve_hparams("mslapsrn", _DEFAULTS, overrides)
    return MSLapSRN(scale, in_channels, **hp)
