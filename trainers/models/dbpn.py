"""D-DBPN with weight-shared recurrences (benchmark variant), iterative up-and-down.

Paper: M. Haris, G. Shakhnarovich, N. Ukita, "Deep Back-Projection Networks for Super-Resolution",
CVPR 2018 (D-DBPN; the recurrent variant of the TPAMI 2020 extension).

Benchmark variant (``reference/dbpn_x*.json``): ``feat0`` = Conv(1, 256, 3) + PReLU, ``feat1`` =
Conv(256, 64, 1) + PReLU; 13 projection units ``up1, down1, up2, down2, up3, ..., down6, up7``
(dense D-DBPN units: from ``down2``/``up3`` on, a 1x1 Conv + PReLU bottleneck ``conv`` first
reads the concatenation of the previous HR or LR features, newest first). Projection
(kernel, stride, padding) = (6, 2, 2) at x2, (8, 4, 2) at x4, (12, 8, 2) at x8. Every PReLU has a
single parameter (init 0.25).

WEIGHT SHARING: the same 13 units run ``num_stages = 3`` times; pass k starts from the last LR
feature ``l`` of pass k-1 (``feat1`` output for the first); each pass's final HR feature (``up7``)
is kept and ``output_conv`` = Conv(3 * 64, 1, 3) reads their concatenation (in pass order). No
interpolation residual.

Up unit: ``h0 = up_conv1(l); l0 = up_conv2(h0); h1 = up_conv3(l0 - l); return h1 + h0``; the down
unit is symmetric (conv, deconv, conv).

Hyperparameters (overrides): ``base_filter`` (64), ``feat`` (256), ``num_stages`` (3).
Init (as the original): kaiming_normal_ for Conv2d / ConvTranspose2d weights, biases 0.
"""

from __future__ import annotations

from typing import Any

import torch
from torch import nn

from srcaco2.trainers.models._hparams import resolve_hparams
from srcaco2.trainers.models._reach import Reach, union
from srcaco2.trainers.models.registry import register_model

__all__ = ["DBPN", "build"]

_DEFAULTS = {"base_filter": 64, "feat": 256, "num_stages": 3}
_PROJECTION = {2: (6, 2, 2), 4: (8, 4, 2), 8: (12, 8, 2)}


class _ConvBlock(nn.Module):
    def __init__(self, cin: int, cout: int, k: int, s: int, p: int, act: bool = True) -> None:
        super().__init__()
        self.conv = nn.Conv2d(cin, cout, k, s, p)
        self.act = nn.PReLU() if act else None

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        x = self.conv(x)
        return self.act(x) if self.act is not None else x


class _DeconvBlock(nn.Module):
    def __init__(self, cin: int, cout: int, k: int, s: int, p: int) -> None:
        super().__init__()
        self.deconv = nn.ConvTranspose2d(cin, cout, k, s, p)
        self.act = nn.PReLU()

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        return self.act(self.deconv(x))


class _UpBlock(nn.Module):
    """Up-projection; with ``dense > 1`` a 1x1 bottleneck reads ``dense * c`` input channels."""

    def __init__(self, c: int, k: int, s: int, p: int, dense: int = 1) -> None:
        super().__init__()
        if dense > 1:
            self.conv = _ConvBlock(c * dense, c, 1, 1, 0)
        self.dense = dense
        self.up_conv1 = _DeconvBlock(c, c, k, s, p)
        self.up_conv2 = _ConvBlock(c, c, k, s, p)
        self.up_conv3 = _DeconvBlock(c, c, k, s, p)

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        if self.dense > 1:
            x = self.conv(x)
        h0 = self.up_conv1(x)
        l0 = self.up_conv2(h0)
        return self.up_conv3(l0 - x) + h0


class _DownBlock(nn.Module):
    """Down-projection; with ``dense > 1`` a 1x1 bottleneck reads ``dense * c`` input channels."""

    def __init__(self, c: int, k: int, s: int, p: int, dense: int = 1) -> None:
        super().__init__()
        if dense > 1:
            self.conv = _ConvBlock(c * dense, c, 1, 1, 0)
        self.dense = dense
        self.down_conv1 = _ConvBlock(c, c, k, s, p)
        self.down_conv2 = _DeconvBlock(c, c, k, s, p)
        self.down_conv3 = _ConvBlock(c, c, k, s, p)

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        if self.dense > 1:
            x = self.conv(x)
        l0 = self.down_conv1(x)
        h0 = self.down_conv2(l0)
        return self.down_conv3(h0 - x) + l0


class DBPN(nn.Module):
    """D-DBPN run ``num_stages`` times with shared weights (LR -> HR).

    Parameters
    ----------
    scale : int
        2, 4 or 8 (sets the projection kernel, stride and padding).
    in_channels : int
        Image channels.
    base_filter, feat, num_stages : int
        Projection width, first-layer width, weight-shared passes.
    """

    def __init__(
        self, scale: int, in_channels: int = 1, base_filter: int = 64, feat: int = 256, num_stages: int = 3
    ) -> None:
        super().__init__()
        if scale not in _PROJECTION:
            raise ValueError(f"DBPN supports scales {sorted(_PROJECTION)}, got scale={scale}")
        k, s, p = _PROJECTION[scale]
        c = base_filter
        self.scale, self.num_stages = int(scale), int(num_stages)
        self.feat0 = _ConvBlock(in_channels, feat, 3, 1, 1)
        self.feat1 = _ConvBlock(feat, c, 1, 1, 0)
        self.up1 = _UpBlock(c, k, s, p)
        self.down1 = _DownBlock(c, k, s, p)
        self.up2 = _UpBlock(c, k, s, p)
        for i in range(2, 7):
            self.add_module(f"down{i}", _DownBlock(c, k, s, p, dense=i))
            self.add_module(f"up{i + 1}", _UpBlock(c, k, s, p, dense=i))
        self.output_conv = _ConvBlock(num_stages * c, in_channels, 3, 1, 1, act=False)
        for m in self.modules():
            if isinstance(m, (nn.Conv2d, nn.ConvTranspose2d)):
                nn.init.kaiming_normal_(m.weight)
                if m.bias is not None:
                    nn.init.zeros_(m.bias)

    def forward(self, lr: torch.Tensor) -> torch.Tensor:
        """``lr : (B, C, h, w)`` float in [0, 1] -> ``(B, C, s*h, s*w)`` (not clamped)."""
        low = self.feat1(self.feat0(lr))
        results = []
        for _ in range(self.num_stages):
            h1 = self.up1(low)
            l1 = self.down1(h1)
            h2 = self.up2(l1)
            concat_h = torch.cat((h2, h1), 1)
            low = self.down2(concat_h)
            concat_l = torch.cat((low, l1), 1)
            for i in range(3, 7):
                h = getattr(self, f"up{i}")(concat_l)
                concat_h = torch.cat((h, concat_h), 1)
                low = getattr(self, f"down{i}")(concat_h)
                concat_l = torch.cat((low, concat_l), 1)
            results.append(self.up7(concat_l))
        return self.output_conv(torch.cat(results, 1))


def _reach(scale: int, hp: dict[str, Any]) -> Reach:
    """Feature extraction, the dense up/down projection units of every stage, the 3x3 output conv."""
    k, st, p = _PROJECTION[scale]

    def up(x: Reach) -> Reach:
        h0 = x.deconv(k, st, p)
        l0 = h0.strided(k, st, p)
        return (l0 | x).deconv(k, st, p) | h0

    def down(x: Reach) -> Reach:
        l0 = x.strided(k, st, p)
        h0 = l0.deconv(k, st, p)
        return (h0 | x).strided(k, st, p) | l0

    low = Reach.lr().conv(3)
    results = []
    for _ in range(int(hp["num_stages"])):
        h1 = up(low)
        l1 = down(h1)
        concat_h = up(l1) | h1
        low = down(concat_h)
        concat_l = low | l1
        for _i in range(3, 7):
            concat_h = up(concat_l) | concat_h
            low = down(concat_h)
            concat_l = low | concat_l
        results.append(up(concat_l))
    return union(results).conv(3)


@register_model(
    "dbpn",
    family="iterative up-and-down",
    display_name="DBPN",
    table_rank=0,
    paper="DBPN, Haris et al., CVPR 2018",
    tiny={"base_filter": 4, "feat": 8, "num_stages": 1},
    hparams=_DEFAULTS,
    reach=_reach,
)
def build(scale: int, in_channels: int = 1, **overrides) -> nn.Module:
    """Build the benchmark DBPN (overrides: ``base_filter``, ``feat``, ``num_stages``)."""
    hp = resolve_hparams("dbpn", _DEFAULTS, overrides)
    return DBPN(scale, in_channels, **hp)
