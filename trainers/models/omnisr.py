"""OmniSR (Wang et al., "Omni Aggregation Networks for Lightweight Image Super-Resolution", CVPR 2023).

A re-implementation of the benchmark's OmniSR, written from the paper and the facts recorded in
``trainers/models/reference/omnisr_x{2,4,8}.json`` (the published checkpoints load with
``strict=True``).

Architecture (post-upsampling): ``input`` conv 3x3 (C -> ``num_feat``) gives ``r``; ``res_num``
OSAGs in sequence; ``output`` conv 3x3 + ``r``; ``up`` = one conv 3x3 (``num_feat`` -> C·s²) and one
pixel shuffle by ``s`` (a single step, also at x8). An OSAG (omni self-attention group) is
``block_num`` OSA blocks and a 1x1 conv, plus the group input, followed by ESA (enhanced spatial
attention: 1x1 reduce to ``max(num_feat // 4, 16)``, 3x3 stride-2 conv without padding, 7x7/3
max-pool, 3x3 conv, bilinear upsampling back (align_corners False), + 1x1 branch, 1x1 expand,
sigmoid gate). An OSA block is, in order (the indices of ``layer``):

0. MBConv (1x1 conv, GELU, depthwise 3x3, GELU, squeeze-excitation (mean, Linear/4, SiLU, Linear,
   sigmoid), 1x1 conv) + input;
1-3. block attention: ws x ws windows, pre-LayerNorm (channels last, eps 1e-5) multi-head
   attention (4 heads, ``dim_head = num_feat // 4``, no qkv bias) with a learned relative-position
   bias (``rel_pos_bias`` Embedding((2ws-1)², 4) indexed by the NON-persistent buffer
   ``rel_pos_indices``, recomputed here), + input;
4. gated conv FFN (1x1 -> 2C, depthwise 3x3, GELU(x1)·x2, 1x1; no bias) after a channel-first
   LayerNorm (eps 1e-6), + input;
5. channel ("transposed") attention within each ws x ws window (L2-normalised q, k, learned
   temperature per head), pre-LayerNorm2d, + input;  6. gated FFN;
7-9. grid attention: the same attention over the ws x ws grid of pixels strided by H/ws;
10. gated FFN;  11. channel attention over grid groups;  12. gated FFN.

The benchmark configuration: ``num_feat`` 64, ``res_num`` 5, ``block_num`` 4, ``window_size`` 8,
``pe`` True, ``bias`` True (the OSAG 1x1 and the head/tail convs), ``ffn_bias`` True (accepted but,
as in the original, unused: the FFN and attention convs have no bias). Init: PyTorch defaults.

Input sizes: ``forward`` zero-pads ('constant' 0) bottom/right to a multiple of ``window_size``
and crops the output to ``(s*h, s*w)``; the padded size must be >= 15 per side for ESA's
stride-2 conv + 7x7 max-pool (so h, w >= 9 with window 8): smaller inputs raise ValueError.

Hyperparameters (overrides of :func:`build`, named as in the JSON): ``num_feat`` (64, divisible by
4), ``res_num`` (5), ``block_num`` (4), ``window_size`` (8), ``pe`` (True), ``bias`` (True),
``ffn_bias`` (True, no effect).
"""

from __future__ import annotations

import math
from typing import Any

import torch
import torch.nn.functional as F
from torch import nn

from srcaco2.kernels.pixel_shuffle import PixelShuffle
from srcaco2.trainers.models._hparams import resolve_hparams
from srcaco2.trainers.models.registry import register_model

__all__ = ["OmniSR", "build"]


class _LayerNorm2d(nn.Module):
    """LayerNorm over channels of (B, C, H, W) with eps 1e-6 (weight/bias as parameters)."""

    def __init__(self, channels: int, eps: float = 1e-6) -> None:
        super().__init__()
        self.weight = nn.Parameter(torch.ones(channels))
        self.bias = nn.Parameter(torch.zeros(channels))
        self.eps = eps

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        c = x.shape[1]
        mu = x.mean(1, keepdim=True)
        var = (x - mu).pow(2).mean(1, keepdim=True)
        y = (x - mu) / (var + self.eps).sqrt()
        return self.weight.view(1, c, 1, 1) * y + self.bias.view(1, c, 1, 1)


class _Residual(nn.Module):
    """``fn(norm(x)) + x`` with ``norm`` channels-last LayerNorm (``conv=False``) or LayerNorm2d."""

    def __init__(self, dim: int, fn: nn.Module, conv: bool) -> None:
        super().__init__()
        self.norm = _LayerNorm2d(dim) if conv else nn.LayerNorm(dim)
        self.fn = fn

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        return self.fn(self.norm(x)) + x


class _MeanHW(nn.Module):
    def forward(self, x: torch.Tensor) -> torch.Tensor:
        return x.mean(dim=(2, 3))


class _ToMap(nn.Module):
    def forward(self, x: torch.Tensor) -> torch.Tensor:
        return x[:, :, None, None]


class _SqueezeExcitation(nn.Module):
    def __init__(self, dim: int, shrinkage: float = 0.25) -> None:
        super().__init__()
        hidden = int(dim * shrinkage)
        self.gate = nn.Sequential(
            _MeanHW(),
            nn.Linear(dim, hidden, bias=False),
            nn.SiLU(),
            nn.Linear(hidden, dim, bias=False),
            nn.Sigmoid(),
            _ToMap(),
        )

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        return x * self.gate(x)


class _MBConv(nn.Module):
    """MBConv with expansion 1, no BatchNorm, + input."""

    def __init__(self, dim: int) -> None:
        super().__init__()
        self.fn = nn.Sequential(
            nn.Conv2d(dim, dim, 1),
            nn.GELU(),
            nn.Conv2d(dim, dim, 3, padding=1, groups=dim),
            nn.GELU(),
            _SqueezeExcitation(dim),
            nn.Conv2d(dim, dim, 1),
        )

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        return self.fn(x) + x


class _Partition(nn.Module):
    """(B, C, H, W) <-> (B, X, Y, ws, ws, C): windows (``grid=False``) or strided grid (``grid=True``)."""

    def __init__(self, ws: int, grid: bool, inverse: bool) -> None:
        super().__init__()
        self.ws, self.grid, self.inverse = ws, grid, inverse

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        ws = self.ws
        if not self.inverse:
            b, c, h, w = x.shape
            if self.grid:  # 'b d (w1 x) (w2 y) -> b x y w1 w2 d'
                return x.view(b, c, ws, h // ws, ws, w // ws).permute(0, 3, 5, 2, 4, 1)
            return x.view(b, c, h // ws, ws, w // ws, ws).permute(0, 2, 4, 3, 5, 1)
        b, nx, ny, _, _, c = x.shape
        if self.grid:  # 'b x y w1 w2 d -> b d (w1 x) (w2 y)'
            return x.permute(0, 5, 3, 1, 4, 2).reshape(b, c, ws * nx, ws * ny)
        return x.permute(0, 5, 1, 3, 2, 4).reshape(b, c, nx * ws, ny * ws)

    def extra_repr(self) -> str:
        return f"ws={self.ws}, grid={self.grid}, inverse={self.inverse}"


class _Attention(nn.Module):
    """Multi-head attention over ws x ws tokens of (B, X, Y, ws, ws, C), optional relative-position bias."""

    def __init__(self, dim: int, dim_head: int, ws: int, with_pe: bool) -> None:
        super().__init__()
        self.heads = dim // dim_head
        self.scale = dim_head**-0.5
        self.with_pe = with_pe
        self.to_qkv = nn.Linear(dim, dim * 3, bias=False)
        self.to_out = nn.Sequential(nn.Linear(dim, dim, bias=False), nn.Dropout(0.0))
        if with_pe:
            self.rel_pos_bias = nn.Embedding((2 * ws - 1) ** 2, self.heads)
            pos = torch.arange(ws)
            grid = torch.stack(torch.meshgrid(pos, pos, indexing="ij")).flatten(1).t()  # (ws², 2)
            rel = grid[:, None, :] - grid[None, :, :] + (ws - 1)
            idx = rel[..., 0] * (2 * ws - 1) + rel[..., 1]
            self.register_buffer("rel_pos_indices", idx, persistent=False)

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        b, nx, ny, w1, w2, c = x.shape
        h = self.heads
        t = x.reshape(b * nx * ny, w1 * w2, c)
        q, k, v = self.to_qkv(t).chunk(3, dim=-1)
        q, k, v = (u.reshape(u.shape[0], u.shape[1], h, c // h).permute(0, 2, 1, 3) for u in (q, k, v))
        sim = (q * self.scale) @ k.transpose(-2, -1)
        if self.with_pe:
            sim = sim + self.rel_pos_bias(self.rel_pos_indices).permute(2, 0, 1)
        out = sim.softmax(dim=-1) @ v
        out = out.permute(0, 2, 1, 3).reshape(b * nx * ny, w1, w2, c)
        return self.to_out(out).reshape(b, nx, ny, w1, w2, c)


class _GatedFFN(nn.Module):
    def __init__(self, dim: int) -> None:
        super().__init__()
        self.project_in = nn.Conv2d(dim, dim * 2, 1, bias=False)
        self.dwconv = nn.Conv2d(dim * 2, dim * 2, 3, padding=1, groups=dim * 2, bias=False)
        self.project_out = nn.Conv2d(dim, dim, 1, bias=False)

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        x1, x2 = self.dwconv(self.project_in(x)).chunk(2, dim=1)
        return self.project_out(F.gelu(x1) * x2)


class _ChannelAttention(nn.Module):
    """Transposed (channel) attention within ws x ws windows (``grid=False``) or grid groups."""

    def __init__(self, dim: int, heads: int, ws: int, grid: bool) -> None:
        super().__init__()
        self.heads, self.ps, self.grid = heads, ws, grid
        self.temperature = nn.Parameter(torch.ones(heads, 1, 1))
        self.qkv = nn.Conv2d(dim, dim * 3, 1, bias=False)
        self.qkv_dwconv = nn.Conv2d(dim * 3, dim * 3, 3, padding=1, groups=dim * 3, bias=False)
        self.project_out = nn.Conv2d(dim, dim, 1, bias=False)

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        b, c, h, w = x.shape
        nh, ps = self.heads, self.ps
        hn, wn = h // ps, w // ps

        def split(t: torch.Tensor) -> torch.Tensor:
            t = t.reshape(b, nh, c // nh, hn, ps, wn, ps)
            if self.grid:  # 'b (head d) (h ph) (w pw) -> b (ph pw) head d (h w)'
                return t.permute(0, 4, 6, 1, 2, 3, 5).reshape(b, ps * ps, nh, c // nh, hn * wn)
            return t.permute(0, 3, 5, 1, 2, 4, 6).reshape(b, hn * wn, nh, c // nh, ps * ps)

        q, k, v = (split(t) for t in self.qkv_dwconv(self.qkv(x)).chunk(3, dim=1))
        q, k = F.normalize(q, dim=-1), F.normalize(k, dim=-1)
        attn = ((q @ k.transpose(-2, -1)) * self.temperature).softmax(dim=-1)
        out = attn @ v
        if self.grid:
            out = out.reshape(b, ps, ps, nh, c // nh, hn, wn).permute(0, 3, 4, 5, 1, 6, 2)
        else:
            out = out.reshape(b, hn, wn, nh, c // nh, ps, ps).permute(0, 3, 4, 1, 5, 2, 6)
        return self.project_out(out.reshape(b, c, h, w))


class _OSABlock(nn.Module):
    def __init__(self, dim: int, ws: int, with_pe: bool) -> None:
        super().__init__()
        layers: list[nn.Module] = [_MBConv(dim)]
        for grid in (False, True):  # indices 1-6: window branch; 7-12: the same on the strided grid
            layers += [
                _Partition(ws, grid=grid, inverse=False),
                _Residual(dim, _Attention(dim, dim // 4, ws, with_pe), conv=False),
                _Partition(ws, grid=grid, inverse=True),
                _Residual(dim, _GatedFFN(dim), conv=True),
                _Residual(dim, _ChannelAttention(dim, 4, ws, grid=grid), conv=True),
                _Residual(dim, _GatedFFN(dim), conv=True),
            ]
        self.layer = nn.Sequential(*layers)

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        return self.layer(x)


class _ESA(nn.Module):
    def __init__(self, f: int, n_feats: int) -> None:
        super().__init__()
        self.conv1 = nn.Conv2d(n_feats, f, 1)
        self.conv_f = nn.Conv2d(f, f, 1)
        self.conv2 = nn.Conv2d(f, f, 3, stride=2, padding=0)
        self.conv3 = nn.Conv2d(f, f, 3, padding=1)
        self.conv4 = nn.Conv2d(f, n_feats, 1)

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        c1_ = self.conv1(x)
        c3 = self.conv3(F.max_pool2d(self.conv2(c1_), kernel_size=7, stride=3))
        c3 = F.interpolate(c3, (x.size(2), x.size(3)), mode="bilinear", align_corners=False)
        return x * torch.sigmoid(self.conv4(c3 + self.conv_f(c1_)))


class _OSAG(nn.Module):
    def __init__(self, dim: int, bias: bool, block_num: int, ws: int, pe: bool) -> None:
        super().__init__()
        blocks: list[nn.Module] = [_OSABlock(dim, ws, pe) for _ in range(block_num)]
        blocks.append(nn.Conv2d(dim, dim, 1, 1, 0, bias=bias))
        self.residual_layer = nn.Sequential(*blocks)
        self.esa = _ESA(max(dim // 4, 16), dim)

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        return self.esa(self.residual_layer(x) + x)


class OmniSR(nn.Module):
    """OmniSR network (see the module docstring for the architecture and hyperparameters).

    ``forward`` maps ``(B, C, h, w)`` float32 in [0, 1] to ``(B, C, s*h, s*w)`` (not clamped),
    zero-padding internally to the window multiple (the original behaviour, train and eval alike).
    """

    def __init__(
        self,
        upscale: int,
        in_chans: int = 1,
        num_feat: int = 64,
        res_num: int = 5,
        bias: bool = True,
        window_size: int = 8,
        block_num: int = 4,
        pe: bool = True,
        ffn_bias: bool = True,
    ) -> None:
        super().__init__()
        if num_feat % 4:
            raise ValueError(f"OmniSR: num_feat must be divisible by 4 (4 heads), got {num_feat}")
        self.up_scale, self.window_size, self.ffn_bias = int(upscale), int(window_size), ffn_bias
        self.residual_layer = nn.Sequential(
            *(_OSAG(num_feat, bias, block_num, window_size, pe) for _ in range(res_num))
        )
        self.input = nn.Conv2d(in_chans, num_feat, 3, 1, 1, bias=bias)
        self.output = nn.Conv2d(num_feat, num_feat, 3, 1, 1, bias=bias)
        self.up = nn.Sequential(
            nn.Conv2d(num_feat, in_chans * upscale**2, 3, 1, 1, bias=bias), PixelShuffle(upscale)
        )

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        """LR ``(B, C, h, w)`` -> SR ``(B, C, s*h, s*w)``."""
        h, w = x.shape[2:]
        ws = self.window_size
        ph, pw = (ws - h % ws) % ws, (ws - w % ws) % ws
        if min(h + ph, w + pw) < 15:
            raise ValueError(
                f"OmniSR: input {h}x{w} is too small: padded to {h + ph}x{w + pw} (window {ws}) it must be "
                ">= 15 per side for ESA's stride-2 conv and 7x7 max-pool; give LR patches of at least 9x9"
            )
        x = F.pad(x, (0, pw, 0, ph), "constant", 0)
        residual = self.input(x)
        out = self.output(self.residual_layer(residual)) + residual
        return self.up(out)[:, :, : h * self.up_scale, : w * self.up_scale]


_DEFAULTS: dict[str, Any] = {
    "num_feat": 64,
    "res_num": 5,
    "bias": True,
    "window_size": 8,
    "block_num": 4,
    "pe": True,
    "ffn_bias": True,
}


def _min_input(hp: dict[str, Any]) -> int:
    """Zero-padded size >= 15 for ESA's stride-2 conv + 7x7 max-pool (9 with window 8)."""
    ws = int(hp["window_size"])
    return 1 if ws >= 15 else ws * (math.ceil(15 / ws) - 1) + 1


@register_model(
    "omnisr",
    scales=tuple(range(2, 9)),  # what the architecture builds (tested at every scale)
    family="post-upsampling",
    display_name="Omni-SR",
    table_rank=7,
    paper="Omni-SR, Wang et al., CVPR 2023",
    tiny={"num_feat": 16, "res_num": 1, "block_num": 1},
    hparams=_DEFAULTS,
    reach=None,
    input_grid=8,
    min_input=_min_input,
    global_reason="grid attention across the whole image and squeeze-excitation (global mean)",
)
def build(scale: int, in_channels: int = 1, **overrides: Any) -> nn.Module:
    """Build the benchmark's OmniSR for ``scale``; overrides as named in the module docstring.

    Raises
    ------
    ValueError
        Unknown override name or ``num_feat`` not divisible by 4.
    """
    cfg = resolve_hparams("omnisr", _DEFAULTS, overrides)
    return OmniSR(int(scale), in_chans=in_channels, **cfg)
