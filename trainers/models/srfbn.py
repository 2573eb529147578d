"""SRFBN (Super-Resolution Feedback Network), iterative up-and-down.

Paper: Z. Li, J. Yang, Z. Liu, X. Yang, G. Jeon, W. Wu, "Feedback Network for Image
Super-Resolution", CVPR 2019.

Benchmark variant (``reference/srfbn_x*.json``): 64 features, 4 time steps, 6 projection groups,
PReLU (ONE parameter, init 0.2), no normalisation. ``conv_in`` = Conv(1, 256, 3) + PReLU;
``feat_in`` = Conv(256, 64, 1) + PReLU; feedback ``block``: ``compress_in`` = Conv(128, 64, 1) +
PReLU on ``cat(x, last_hidden)``, 6 groups of up (ConvTranspose, k/s/p = (6,2,2), (8,4,2),
(12,8,2) at x2/x4/x8) and down (Conv, same k/s/p) projections with 1x1 PReLU bottlenecks
(``uptranBlocks`` / ``downtranBlocks``) for groups >= 1 reading all previous LR / HR features,
``compress_out`` = Conv(6 * 64, 64, 1) + PReLU on the 6 new LR features; ``out`` =
ConvTranspose(64, 64, k, s, p) + PReLU; ``conv_out`` = Conv(64, 1, 3). The same block runs at every
step; at step 0 the hidden state is a copy of the step input, afterwards the block's previous
output. Step output = ``conv_out(out(h_t)) + bilinear(lr, x s)`` (``align_corners=False``).

The 3-channel ``sub_mean`` / ``add_mean`` MeanShift convs exist in the state_dict (frozen) but are
not applied (the benchmark commented them out). The original calls ``.cuda()`` to create the
hidden state; this one runs on any device.

Outputs: in ``train()`` mode `forward` returns the ``num_steps`` step outputs (each
``(B, C, s*h, s*w)``, final last; the loss averages them); in ``eval()`` mode the last one.

Hyperparameters (overrides): ``num_features`` (64), ``num_steps`` (4), ``num_groups`` (6).
Init: PyTorch defaults (PReLU 0.2).
"""

from __future__ import annotations

from typing import Any

import torch
import torch.nn.functional as F
from torch import nn

from srcaco2.trainers.models._hparams import resolve_hparams
from srcaco2.trainers.models._reach import Reach, union
from srcaco2.trainers.models.registry import register_model

__all__ = ["SRFBN", "build"]

_DEFAULTS = {"num_features": 64, "num_steps": 4, "num_groups": 6}
_PROJECTION = {2: (6, 2, 2), 3: (7, 3, 2), 4: (8, 4, 2), 8: (12, 8, 2)}


def _conv(cin: int, cout: int, k: int, s: int = 1, p: int | None = None, act: bool = True) -> nn.Sequential:
    layers: list[nn.Module] = [nn.Conv2d(cin, cout, k, s, (k - 1) // 2 if p is None else p)]
    if act:
        layers.append(nn.PReLU(num_parameters=1, init=0.2))
    return nn.Sequential(*layers)


def _deconv(cin: int, cout: int, k: int, s: int, p: int) -> nn.Sequential:
    return nn.Sequential(nn.ConvTranspose2d(cin, cout, k, s, p), nn.PReLU(num_parameters=1, init=0.2))


class _MeanShift(nn.Conv2d):
    """Frozen 3-channel 1x1 conv of the original (present for strict loading, unused)."""

    def __init__(self, sign: float) -> None:
        super().__init__(3, 3, 1)
        with torch.no_grad():
            self.weight.copy_(torch.eye(3).view(3, 3, 1, 1))
            self.bias.copy_(sign * 255.0 * torch.tensor([0.4488, 0.4371, 0.4040]))
        self.weight.requires_grad_(False)
        self.bias.requires_grad_(False)


class _FeedbackBlock(nn.Module):
    def __init__(self, c: int, num_groups: int, k: int, s: int, p: int) -> None:
        super().__init__()
        self.num_groups = int(num_groups)
        self.compress_in = _conv(2 * c, c, 1)
        self.upBlocks = nn.ModuleList([_deconv(c, c, k, s, p) for _ in range(num_groups)])
        self.downBlocks = nn.ModuleList([_conv(c, c, k, s, p) for _ in range(num_groups)])
        self.uptranBlocks = nn.ModuleList([_conv(c * (i + 1), c, 1) for i in range(1, num_groups)])
        self.downtranBlocks = nn.ModuleList([_conv(c * (i + 1), c, 1) for i in range(1, num_groups)])
        self.compress_out = _conv(num_groups * c, c, 1)

    def forward(self, x: torch.Tensor, last_hidden: torch.Tensor) -> torch.Tensor:
        x = self.compress_in(torch.cat((x, last_hidden), dim=1))
        lr_features, hr_features = [x], []
        for i in range(self.num_groups):
            ld_l = torch.cat(lr_features, 1)
            if i > 0:
                ld_l = self.uptranBlocks[i - 1](ld_l)
            hr_features.append(self.upBlocks[i](ld_l))
            ld_h = torch.cat(hr_features, 1)
            if i > 0:
                ld_h = self.downtranBlocks[i - 1](ld_h)
            lr_features.append(self.downBlocks[i](ld_h))
        return self.compress_out(torch.cat(lr_features[1:], 1))


class SRFBN(nn.Module):
    """SRFBN as configured by the benchmark (LR -> HR, one output per feedback step).

    Parameters
    ----------
    scale : int
        2, 4 or 8.
    in_channels : int
        Image channels.
    num_features, num_steps, num_groups : int
        Width, feedback steps, projection groups.
    """

    def __init__(
        self,
        scale: int,
        in_channels: int = 1,
        num_features: int = 64,
        num_steps: int = 4,
        num_groups: int = 6,
    ) -> None:
        super().__init__()
        if scale not in _PROJECTION:
            raise ValueError(f"SRFBN supports scales {sorted(_PROJECTION)}, got scale={scale}")
        k, s, p = _PROJECTION[scale]
        c = num_features
        self.scale, self.num_steps = int(scale), int(num_steps)
        self.sub_mean = _MeanShift(-1.0)
        self.conv_in = _conv(in_channels, 4 * c, 3)
        self.feat_in = _conv(4 * c, c, 1)
        self.block = _FeedbackBlock(c, num_groups, k, s, p)
        self.out = _deconv(c, c, k, s, p)
        self.conv_out = _conv(c, in_channels, 3, act=False)
        self.add_mean = _MeanShift(1.0)

    def forward(self, lr: torch.Tensor) -> torch.Tensor | list[torch.Tensor]:
        """``lr : (B, C, h, w)`` in [0, 1] -> ``(B, C, s*h, s*w)`` in eval, the step list in train."""
        inter_res = F.interpolate(lr, scale_factor=self.scale, mode="bilinear", align_corners=False)
        x = self.feat_in(self.conv_in(lr))
        hidden = x
        outs = []
        for _ in range(self.num_steps):
            hidden = self.block(x, hidden)
            outs.append(inter_res + self.conv_out(self.out(hidden)))
        return outs if self.training else outs[-1]


def _reach(scale: int, hp: dict[str, Any]) -> Reach:
    """Bilinear base + the last feedback step (hidden state of all previous steps)."""
    k, st, p = _PROJECTION[scale]
    base = Reach.lr().interp(scale, 2)
    x = Reach.lr().conv(3)
    hidden, outs = x, []
    for _ in range(int(hp["num_steps"])):
        lr_feats = [x | hidden]
        hr_feats = []
        for _g in range(int(hp["num_groups"])):
            hr_feats.append(union(lr_feats).deconv(k, st, p))
            lr_feats.append(union(hr_feats).strided(k, st, p))
        hidden = union(lr_feats[1:])
        outs.append(base | hidden.deconv(k, st, p).conv(3))
    return outs[-1]


@register_model(
    "srfbn",
    scales=(2, 3, 4, 8),  # what the architecture builds (tested at every scale)
    family="iterative up-and-down",
    display_name="SRFBN",
    table_rank=1,
    paper="SRFBN, Li et al., CVPR 2019",
    multi_output=True,
    tiny={"num_features": 8, "num_steps": 3, "num_groups": 2},
    hparams=_DEFAULTS,
    reach=_reach,
)
def build(scale: int, in_channels: int = 1, **overrides) -> nn.Module:
    """Build the benchmark SRFBN (overrides: ``num_features``, ``num_steps``, ``num_groups``)."""
    hp = resolve_hparams("srfbn", _DEFAULTS, overrides)
    return SRFBN(scale, in_channels, **hp)
