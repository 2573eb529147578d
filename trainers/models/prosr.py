"""ProSR (progressive multi-scale residual dense network), progressive.

Paper: Y. Wang, F. Perazzi, B. McWilliams, A. Sorkine-Hornung, O. Sorkine-Hornung, C. Schroers,
"A Fully Progressive Approach to Single-Image Super-Resolution", CVPRW 2018.

Benchmark variant (``reference/prosr_x*.json``): residual dense blocks, 160 initial features,
growth 40, bn_size 4, res_factor 0.2, max 312 features; ``level_config`` [[8]*9] at x2,
[[8]*9, [8]*3] at x4, [[8]*9, [8]*3, [8]] at x8 (8 dense layers per block).

* ``init_conv_1..init_conv_L`` (L = log2 s) all exist but forward uses ONLY ``init_conv_L``.
* Level k: ``feats = pyramid_residual_k(feats) + feats``; ``feats = upsampler_k(feats)``
  (3x3 conv to 4x width, PixelShuffle(2), ReLU); ``out_k = reconst_k(feats) +
  clamp(bicubic(lr, 2^k))`` (PyTorch bicubic a = -0.75, ``align_corners=False``, clamp [0, 1]).
* ``pyramid_residual_k`` = [``compression_{k-1}`` (1x1, no bias, back to 160) for k > 1],
  residual dense blocks, ``final_conv`` (3x3; a 1x1 ``final_comp`` first if width > 312).
* Dense layer = conv_1 (1x1, bias) -> ReLU -> conv_2 (3x3); output ``cat([x, new])``.
  Residual dense block = ``res_factor * comp(dense_block(x)) + x`` (comp 1x1, no bias).
* PADDING QUIRK: every 3x3 conv is ``Sequential(ReflectionPad2d(1), Conv2d(padding=0))`` (keys
  ``.conv.1.``): reflect padding, not zeros. Hence the LR must be at least 2x2 pixels.

Outputs: in ``train()`` mode `forward` returns ``[out_1, ..., out_L]`` (sizes ``2^k * (h, w)``, final
last; the loss compares out_k with the bicubic-downsampled HR); in ``eval()`` mode only the final
tensor (intermediate reconstructions are skipped).

Hyperparameters (overrides, named as the original): ``residual_denseblock`` (True),
``num_init_features`` (160), ``bn_size`` (4), ``growth_rate`` (40), ``ps_woReLU`` (False),
``level_config``, ``level_compression`` (-1), ``res_factor`` (0.2), ``max_num_feature`` (312),
``block_compression`` (0.4, unused by residual dense blocks). Init quirk (reproduced): the
original's ``init_weights(self)`` matches no layer type, so PyTorch defaults everywhere.
"""

from __future__ import annotations

import math
from collections import OrderedDict
from typing import Any

import torch
from torch import nn

from srcaco2.kernels.pixel_shuffle import PixelShuffle
from srcaco2.trainers.models._hparams import resolve_hparams
from srcaco2.trainers.models._interp import torch_bicubic
from srcaco2.trainers.models._reach import Reach, pyramid_levels
from srcaco2.trainers.models.registry import register_model

__all__ = ["ProSR", "build"]

_LEVELS = {2: [[8] * 9], 4: [[8] * 9, [8] * 3], 8: [[8] * 9, [8] * 3, [8]]}


def _defaults(scale: int) -> dict[str, Any]:
    return {
        "residual_denseblock": True,
        "num_init_features": 160,
        "bn_size": 4,
        "growth_rate": 40,
        "ps_woReLU": False,
        "level_config": [list(c) for c in _LEVELS[scale]],
        "level_compression": -1,
        "res_factor": 0.2,
        "max_num_feature": 312,
        "block_compression": 0.4,
    }


class _Conv(nn.Module):
    """ProSR's conv wrapper: reflection padding then an unpadded Conv2d (keys ``conv.1.*``)."""

    def __init__(self, cin: int, cout: int, k: int) -> None:
        super().__init__()
        self.conv = nn.Sequential(nn.ReflectionPad2d((k - 1) // 2), nn.Conv2d(cin, cout, k, padding=0))

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        return self.conv(x)


class _Compression(nn.Sequential):
    def __init__(self, cin: int, cout: int) -> None:
        super().__init__(OrderedDict(conv1=nn.Conv2d(cin, cout, 1, bias=False)))


class _DenseLayer(nn.Sequential):
    def __init__(self, cin: int, growth_rate: int, bn_size: int) -> None:
        super().__init__(
            OrderedDict(
                conv_1=nn.Conv2d(cin, bn_size * growth_rate, 1),
                relu_2=nn.ReLU(inplace=True),
                conv_2=_Conv(bn_size * growth_rate, growth_rate, 3),
            )
        )

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        return torch.cat([x, super().forward(x)], 1)


class _DenseResidualBlock(nn.Module):
    def __init__(self, cin: int, num_layers: int, growth_rate: int, bn_size: int, res_factor: float) -> None:
        super().__init__()
        self.res_factor = float(res_factor)
        self.dense_block = nn.Sequential(
            OrderedDict(
                (f"denselayer{i + 1}", _DenseLayer(cin + i * growth_rate, growth_rate, bn_size))
                for i in range(num_layers)
            )
        )
        self.comp = _Compression(cin + num_layers * growth_rate, cin)

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        return self.res_factor * self.comp(self.dense_block(x)) + x


class _Upsampler(nn.Module):
    def __init__(self, c: int, with_relu: bool) -> None:
        super().__init__()
        # shuffle + ReLU in one pass (srcaco2.kernels.pixel_shuffle epilogue); parameter-free, so keys are
        # unchanged
        self.m = nn.Sequential(_Conv(c, 4 * c, 3), PixelShuffle(2, activation="relu" if with_relu else None))

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        return self.m(x)


class ProSR(nn.Module):
    """ProSR as configured by the benchmark (LR -> HR; one output per x2 level).

    Parameters
    ----------
    scale : int
        2, 4 or 8; ``log2(scale)`` pyramid levels (``len(level_config)`` must match).
    in_channels : int
        Image channels.
    residual_denseblock, num_init_features, bn_size, growth_rate, ps_woReLU, level_config,
    level_compression, res_factor, max_num_feature, block_compression
        The original's constructor arguments (see the module docstring).
    """

    def __init__(
        self,
        scale: int,
        in_channels: int = 1,
        *,
        residual_denseblock: bool = True,
        num_init_features: int = 160,
        bn_size: int = 4,
        growth_rate: int = 40,
        ps_woReLU: bool = False,
        level_config: list[list[int]] | None = None,
        level_compression: float = -1,
        res_factor: float = 0.2,
        max_num_feature: int = 312,
        block_compression: float = 0.4,
    ) -> None:
        super().__init__()
        levels = int(round(math.log2(scale)))
        level_config = _LEVELS[scale] if level_config is None else level_config
        if 2**levels != scale or len(level_config) != levels:
            raise ValueError(
                f"ProSR needs a power-of-two scale and one level_config entry per x2 level; "
                f"got scale={scale}, level_config={level_config}"
            )
        self.scale, self.levels = int(scale), levels
        self.residual_denseblock = bool(residual_denseblock)
        self.block_compression = block_compression  # only for non-residual dense blocks (unused)
        for k in range(1, levels + 1):
            self.add_module(f"init_conv_{k}", _Conv(in_channels, num_init_features, 3))
        c = num_init_features
        for i, block_config in enumerate(level_config):
            body: OrderedDict[str, nn.Module] = OrderedDict()
            if i != 0:
                out = num_init_features if level_compression <= 0 else int(level_compression * c)
                body[f"compression_{i}"] = _Compression(c, out)
                c = out
            for b, num_layers in enumerate(block_config):
                body[f"residual_denseblock_{b + 1}"] = _DenseResidualBlock(
                    c, num_layers, growth_rate, bn_size, res_factor
                )
            final: OrderedDict[str, nn.Module] = OrderedDict()
            if c > max_num_feature:
                final["final_comp"] = _Compression(c, max_num_feature)
                c = max_num_feature
            final["final_conv"] = _Conv(c, c, 3)
            body["final_conv"] = nn.Sequential(final)
            self.add_module(f"pyramid_residual_{i + 1}", nn.Sequential(body))
            self.add_module(f"pyramid_residual_{i + 1}_residual_upsampler", _Upsampler(c, not ps_woReLU))
            reconst = nn.Sequential(OrderedDict(final_conv=_Conv(c, in_channels, 3)))
            self.add_module(f"reconst_{i + 1}", reconst)

    def forward(self, lr: torch.Tensor) -> torch.Tensor | list[torch.Tensor]:
        """``lr : (B, C, h, w)`` in [0, 1] -> ``(B, C, s*h, s*w)`` in eval, the level list in train.

        Raises ValueError when ``h`` or ``w`` is 1 (reflection padding needs at least 2 pixels).
        """
        if min(lr.shape[-2:]) < 2:
            raise ValueError(
                f"ProSR needs an LR image of at least 2x2 pixels (reflection padding), "
                f"got {tuple(lr.shape[-2:])}"
            )
        feats = getattr(self, f"init_conv_{self.levels}")(lr)
        outs = []
        for k in range(1, self.levels + 1):
            body = getattr(self, f"pyramid_residual_{k}")(feats)
            feats = body + feats if self.residual_denseblock else body
            feats = getattr(self, f"pyramid_residual_{k}_residual_upsampler")(feats)
            if self.training or k == self.levels:
                base = torch_bicubic(lr, 2**k)
                outs.append(getattr(self, f"reconst_{k}")(feats) + base)
        return outs if self.training else outs[-1]


def _reach(scale: int, hp: dict[str, Any]) -> Reach:
    """Per x2 level: the dense blocks (one 3x3 each) + final conv, a 3x3 conv and a shuffle; the
    last level's 3x3 reconstruction plus the bicubic of the LR."""
    feats = Reach.lr().conv(3)
    out = feats
    for k, blocks in enumerate(hp["level_config"], start=1):
        body = feats.conv(3, times=sum(blocks) + 1)
        feats = (body | feats).conv(3).shuffle(2)
        out = feats.conv(3) | Reach.lr().interp(2**k, 4)
    return out


@register_model(
    "prosr",
    family="progressive",
    display_name="ProSR",
    table_rank=0,
    paper="ProSR, Wang et al., CVPRW 2018",
    multi_output=True,
    pre_upsampling="torch_bicubic",
    tiny=lambda s: {
        "num_init_features": 8,
        "growth_rate": 4,
        "bn_size": 2,
        "level_config": [[2]] * pyramid_levels(s),
    },
    hparams=_defaults,
    reach=_reach,
    min_input=2,
)
def build(scale: int, in_channels: int = 1, **overrides) -> nn.Module:
    """Build the benchmark ProSR (overrides: the original's constructor argument names)."""
    if scale not in _LEVELS:
        raise ValueError(f"ProSR supports scales {sorted(_LEVELS)}, got scale={scale}")
    hp = resolve_hparams("prosr", _defaults(scale), overrides)
    return ProSR(scale, in_channels, **hp)
