"""ACT: two-branch CNN + transformer SR network with cross-scale token attention and fusion blocks.

Paper: "Enriched CNN-Transformer Feature Aggregation Networks for Super-Resolution", Yoo et al.,
WACV 2023 (called "ACT" in the benchmark).

Benchmark variant (``reference/act_x{2,4,8}.json``)
---------------------------------------------------
- ``head`` = conv(in_chans, 64, 3) + 2 ResBlocks with 5x5 convs (res_scale 1).
- Transformer branch: 3x3 tokens (``F.unfold(k=3, stride=3)``, dim 64*9 = 576); ``linear_encoding(t) + t``;
  per round i: an MHSA block (pre-norm self-attention, 8 heads of 72, + FFN x4, GELU) and a
  cross-scale token attention block: half the channels are folded back to the image, re-tokenised as
  6x6 tokens with stride 3 (LN + MLP 1152 -> 288 -> 288), two pre-norm cross-attentions (4 heads of 72)
  between the 3x3 and 6x6 token sets, MLP 288 -> 288 -> 1152, overlap-add fold back to (h, w),
  re-tokenised 3x3, concatenated with the other half, + pre-norm FFN.
- CNN branch: ``cnn_branch[i]`` = ResidualGroup of 12 RCAB (channel attention, reduction 16) + conv.
- Fusion: ``f = cat(cnn, fold(tokens))`` (128 ch); ``f = f + fusion_block[i](f)`` (4 FB: 1x1 conv, ReLU,
  1x1 conv, no bias, + x); except after the last round, ``f`` is split into halves IN THE ORIGINAL'S
  (crossed) ORDER: ``tokens = fusion_mlp[i](unfold(f[:, :64])) + tokens_before_fusion`` (f[:, :64] is
  the CNN half) and ``cnn = fusion_cnn[i](f[:, 64:]) + cnn_before_fusion`` (the token half).
  After 4 rounds: ``conv_last(f) + head_output``; ``tail`` = Upsampler
  (log2 s x [conv 64->256, PixelShuffle 2]) + conv(64, in_chans, 3).
- ``sub_mean``/``add_mean`` 3-channel MeanShift in the state_dict, unused (docs/protocol.md#normalisation).
- UNUSED LAYER: ``cnn_branch`` has ``n_resgroups + 1`` entries (the groups and a final conv,
  ``cnn_branch.4.*``) but forward only calls ``cnn_branch[0..n_fusionblocks-1]``: ``cnn_branch.4`` is
  in the state_dict and never applied.
- SIZE QUIRK (docs/protocol.md#quirks item 11): no padding to a multiple of the token size. When h or w is not
  a multiple of 3 the last ``h % 3`` rows / ``w % 3`` cols are dropped by the 3x3 unfold and the fold
  writes zeros there, so the token-branch features are zero on those rows/cols (512/s test sizes are
  never multiples of 3). Needs ``h, w >= 6`` (6x6 cross-scale tokens); smaller inputs raise ValueError.

Hyperparameters (overrides): ``n_feats`` (64), ``n_resgroups`` (4), ``n_resblocks`` (12),
``reduction`` (16), ``n_heads`` (8), ``n_layers`` (8: n_layers/2 MHSA + n_layers/2 cross-scale
blocks), ``dropout_rate`` (0.0), ``n_fusionblocks`` (4), ``token_size`` (3), ``expansion_ratio`` (4),
``img_range`` (1.0, MeanShift only). ``upscale``/``in_chans`` come from the builder. Init: PyTorch
defaults. Deterministic in eval.
"""

from __future__ import annotations

import torch
import torch.nn.functional as F
from torch import nn

from srcaco2.trainers.models._edsr_common import MeanShift, ResBlock, Upsampler, default_conv
from srcaco2.trainers.models._hparams import resolve_hparams
from srcaco2.trainers.models.registry import register_model

__all__ = ["ACT", "build", "DEFAULT_HPARAMS"]

DEFAULT_HPARAMS: dict[str, object] = {
    "upscale": 4,
    "in_chans": 1,
    "img_range": 1.0,
    "n_feats": 64,
    "n_resgroups": 4,
    "n_resblocks": 12,
    "reduction": 16,
    "n_heads": 8,
    "n_layers": 8,
    "dropout_rate": 0.0,
    "n_fusionblocks": 4,
    "token_size": 3,
    "expansion_ratio": 4,
}


class _CALayer(nn.Module):
    """Channel attention: ``x * sigmoid(conv(relu(conv(avgpool(x)))))``."""

    def __init__(self, channel: int, reduction: int) -> None:
        super().__init__()
        self.avg_pool = nn.AdaptiveAvgPool2d(1)
        self.conv_du = nn.Sequential(
            nn.Conv2d(channel, channel // reduction, 1, padding=0, bias=True),
            nn.ReLU(inplace=True),
            nn.Conv2d(channel // reduction, channel, 1, padding=0, bias=True),
            nn.Sigmoid(),
        )

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        return x * self.conv_du(self.avg_pool(x))


class _RCAB(nn.Module):
    """Residual channel-attention block: conv, ReLU, conv, CA; ``+ x``."""

    def __init__(self, n_feat: int, kernel_size: int, reduction: int) -> None:
        super().__init__()
        self.body = nn.Sequential(
            default_conv(n_feat, n_feat, kernel_size),
            nn.ReLU(inplace=True),
            default_conv(n_feat, n_feat, kernel_size),
            _CALayer(n_feat, reduction),
        )

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        res = self.body(x)
        res += x
        return res


class _ResidualGroup(nn.Module):
    """``n_resblocks`` RCAB + conv, with a group skip."""

    def __init__(self, n_feat: int, kernel_size: int, reduction: int, n_resblocks: int) -> None:
        super().__init__()
        body: list[nn.Module] = [_RCAB(n_feat, kernel_size, reduction) for _ in range(n_resblocks)]
        body.append(default_conv(n_feat, n_feat, kernel_size))
        self.body = nn.Sequential(*body)

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        res = self.body(x)
        res += x
        return res


class _FB(nn.Module):
    """Fusion block: 1x1 conv (no bias), ReLU, 1x1 conv (no bias), ``+ x``."""

    def __init__(self, n_feat: int) -> None:
        super().__init__()
        self.body = nn.Sequential(
            default_conv(n_feat, n_feat, 1, bias=False),
            nn.ReLU(inplace=True),
            default_conv(n_feat, n_feat, 1, bias=False),
        )

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        res = self.body(x)
        res += x
        return res


class _PreNorm(nn.Module):
    def __init__(self, dim: int, fn: nn.Module) -> None:
        super().__init__()
        self.norm = nn.LayerNorm(dim)
        self.fn = fn

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        return self.fn(self.norm(x))


class _PreNorm2(nn.Module):
    def __init__(self, dim: int, fn: nn.Module) -> None:
        super().__init__()
        self.norm = nn.LayerNorm(dim)
        self.norm2 = nn.LayerNorm(dim)
        self.fn = fn

    def forward(self, x: torch.Tensor, x2: torch.Tensor) -> torch.Tensor:
        return self.fn(self.norm(x), self.norm2(x2))


class _FeedForward(nn.Module):
    def __init__(self, dim: int, hidden: int, dropout: float) -> None:
        super().__init__()
        self.net = nn.Sequential(
            nn.Linear(dim, hidden),
            nn.GELU(),
            nn.Dropout(dropout),
            nn.Linear(hidden, dim),
            nn.Dropout(dropout),
        )

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        return self.net(x)


def _split_heads(t: torch.Tensor, heads: int) -> torch.Tensor:
    """``(b, n, h*d) -> (b, h, n, d)``."""
    b, n, hd = t.shape
    return t.reshape(b, n, heads, hd // heads).permute(0, 2, 1, 3)


def _merge_heads(t: torch.Tensor) -> torch.Tensor:
    """``(b, h, n, d) -> (b, n, h*d)``."""
    b, h, n, d = t.shape
    return t.permute(0, 2, 1, 3).reshape(b, n, h * d)


def _out_proj(inner: int, dim: int, heads: int, dim_head: int, dropout: float) -> nn.Module:
    if heads == 1 and dim_head == dim:
        return nn.Identity()
    return nn.Sequential(nn.Linear(inner, dim), nn.Dropout(dropout))


class _SelfAttention(nn.Module):
    def __init__(self, dim: int, heads: int, dim_head: int, dropout: float) -> None:
        super().__init__()
        inner = dim_head * heads
        self.heads = heads
        self.scale = dim_head**-0.5
        self.to_qkv = nn.Linear(dim, inner * 3, bias=False)
        self.to_out = _out_proj(inner, dim, heads, dim_head, dropout)

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        q, k, v = (_split_heads(t, self.heads) for t in self.to_qkv(x).chunk(3, dim=-1))
        dots = torch.einsum("bhid,bhjd->bhij", q, k) * self.scale
        attn = dots.softmax(dim=-1)
        out = torch.einsum("bhij,bhjd->bhid", attn, v)
        return self.to_out(_merge_heads(out))


class _CrossAttention(nn.Module):
    def __init__(self, dim: int, heads: int, dim_head: int, dropout: float) -> None:
        super().__init__()
        inner = dim_head * heads
        self.heads = heads
        self.scale = dim_head**-0.5
        self.to_q = nn.Linear(dim, inner, bias=False)
        self.to_kv = nn.Linear(dim, inner * 2, bias=False)
        self.to_out = _out_proj(inner, dim, heads, dim_head, dropout)

    def forward(self, x_q: torch.Tensor, x_kv: torch.Tensor) -> torch.Tensor:
        q = _split_heads(self.to_q(x_q), self.heads)
        k, v = (_split_heads(t, self.heads) for t in self.to_kv(x_kv).chunk(2, dim=-1))
        dots = torch.einsum("bhid,bhjd->bhij", q, k) * self.scale
        attn = dots.softmax(dim=-1)
        out = torch.einsum("bhij,bhjd->bhid", attn, v)
        return self.to_out(_merge_heads(out))


def _unfold_tokens(x: torch.Tensor, k: int, stride: int) -> torch.Tensor:
    """``(B, C, H, W) -> (B, T, C*k*k)`` (tokens in raster order, channel-major features)."""
    return F.unfold(x, k, stride=stride).transpose(1, 2)


def _fold_tokens(t: torch.Tensor, size: tuple[int, int], k: int, stride: int) -> torch.Tensor:
    """``(B, T, C*k*k) -> (B, C, H, W)`` with overlap-add; uncovered pixels are 0."""
    return F.fold(t.transpose(1, 2), size, k, stride=stride)


class ACT(nn.Module):
    """ACT network (benchmark variant); see the module docstring for the architecture and quirks."""

    def __init__(
        self,
        *,
        upscale: int,
        in_chans: int = 1,
        img_range: float = 1.0,
        n_feats: int = 64,
        n_resgroups: int = 4,
        n_resblocks: int = 12,
        reduction: int = 16,
        n_heads: int = 8,
        n_layers: int = 8,
        dropout_rate: float = 0.0,
        n_fusionblocks: int = 4,
        token_size: int = 3,
        expansion_ratio: int = 4,
    ) -> None:
        super().__init__()
        if n_layers // 2 < n_fusionblocks or n_resgroups + 1 < n_fusionblocks:
            raise ValueError(
                f"ACT needs n_layers//2 >= n_fusionblocks and n_resgroups+1 >= n_fusionblocks, got "
                f"n_layers={n_layers}, n_resgroups={n_resgroups}, n_fusionblocks={n_fusionblocks}"
            )
        if n_feats % 2 or n_heads % 2:
            raise ValueError(f"ACT needs even n_feats and n_heads, got n_feats={n_feats}, n_heads={n_heads}")
        self.upscale = int(upscale)
        self.n_feats = n_feats
        self.token_size = token_size
        self.n_fusionblocks = n_fusionblocks
        self.embedding_dim = dim = n_feats * token_size**2
        hidden = dim * expansion_ratio
        dim_head = dim // n_heads
        half = dim // 2

        self.sub_mean = MeanShift(img_range, sign=-1)
        self.add_mean = MeanShift(img_range, sign=1)
        self.head = nn.Sequential(
            default_conv(in_chans, n_feats, 3), ResBlock(n_feats, 5), ResBlock(n_feats, 5)
        )
        self.linear_encoding = nn.Linear(dim, dim)
        self.mhsa_block = nn.ModuleList(
            nn.ModuleList(
                [
                    _PreNorm(dim, _SelfAttention(dim, n_heads, dim_head, dropout_rate)),
                    _PreNorm(dim, _FeedForward(dim, hidden, dropout_rate)),
                ]
            )
            for _ in range(n_layers // 2)
        )
        self.csta_block = nn.ModuleList(
            nn.ModuleList(
                [
                    nn.Sequential(
                        nn.LayerNorm(dim * 2), nn.Linear(dim * 2, half), nn.GELU(), nn.Linear(half, half)
                    ),
                    _PreNorm2(half, _CrossAttention(half, n_heads // 2, dim_head, dropout_rate)),
                    _PreNorm2(half, _CrossAttention(half, n_heads // 2, dim_head, dropout_rate)),
                    nn.Sequential(
                        nn.LayerNorm(half), nn.Linear(half, half), nn.GELU(), nn.Linear(half, dim * 2)
                    ),
                    _PreNorm(dim, _FeedForward(dim, hidden, dropout_rate)),
                ]
            )
            for _ in range(n_layers // 2)
        )
        cnn: list[nn.Module] = [
            _ResidualGroup(n_feats, 3, reduction, n_resblocks) for _ in range(n_resgroups)
        ]
        cnn.append(default_conv(n_feats, n_feats, 3))  # never applied with the benchmark config
        self.cnn_branch = nn.Sequential(*cnn)
        self.fusion_block = nn.ModuleList(
            nn.Sequential(*[_FB(n_feats * 2) for _ in range(4)]) for _ in range(n_fusionblocks)
        )
        self.fusion_mlp = nn.ModuleList(
            nn.Sequential(nn.LayerNorm(dim), nn.Linear(dim, hidden), nn.GELU(), nn.Linear(hidden, dim))
            for _ in range(n_fusionblocks - 1)
        )
        self.fusion_cnn = nn.ModuleList(
            nn.Sequential(
                default_conv(n_feats, n_feats, 3), nn.ReLU(inplace=True), default_conv(n_feats, n_feats, 3)
            )
            for _ in range(n_fusionblocks - 1)
        )
        self.conv_last = default_conv(n_feats * 2, n_feats, 3)
        self.tail = nn.Sequential(Upsampler(self.upscale, n_feats), default_conv(n_feats, in_chans, 3))

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        """``(B, C, h, w)`` LR in [0, 1] -> ``(B, C, s*h, s*w)`` (not clamped).

        Needs ``h, w >= 2 * token_size`` (6); see the module docstring for sizes not divisible by 3.
        """
        h, w = x.shape[-2:]
        ts = self.token_size
        if h < 2 * ts or w < 2 * ts:
            raise ValueError(f"ACT needs an LR input of at least {2 * ts}x{2 * ts} pixels, got {h}x{w}")
        size = (h, w)
        half = self.embedding_dim // 2

        x = self.head(x)
        identity = x
        x_tkn = _unfold_tokens(x, ts, ts)
        x_tkn = self.linear_encoding(x_tkn) + x_tkn

        f = x
        for i in range(self.n_fusionblocks):
            attn, ffn = self.mhsa_block[i]
            x_tkn = attn(x_tkn) + x_tkn
            x_tkn = ffn(x_tkn) + x_tkn

            # cross-scale token attention: half the channels as 6x6 tokens (stride 3)
            pre, cross_a, cross_b, post, ffn2 = self.csta_block[i]
            x_tkn_a, x_tkn_b = torch.split(x_tkn, half, -1)
            x_tkn_b = _fold_tokens(x_tkn_b, size, ts, ts)
            x_tkn_b = _unfold_tokens(x_tkn_b, ts * 2, ts)
            x_tkn_b = pre(x_tkn_b)
            old_a, old_b = x_tkn_a, x_tkn_b
            x_tkn_a = cross_a(x_tkn_a, old_b) + x_tkn_a
            x_tkn_b = cross_b(x_tkn_b, old_a) + x_tkn_b
            x_tkn_b = post(x_tkn_b)
            x_tkn_b = _fold_tokens(x_tkn_b, size, ts * 2, ts)
            x_tkn_b = _unfold_tokens(x_tkn_b, ts, ts)
            x_tkn = torch.cat((x_tkn_a, x_tkn_b), -1)
            x_tkn = ffn2(x_tkn) + x_tkn

            x = self.cnn_branch[i](x)
            x_tkn_res, x_res = x_tkn, x
            f = torch.cat((x, _fold_tokens(x_tkn, size, ts, ts)), 1)
            f = f + self.fusion_block[i](f)
            if i != self.n_fusionblocks - 1:
                x_tkn, x = torch.split(f, self.n_feats, 1)
                x_tkn = self.fusion_mlp[i](_unfold_tokens(x_tkn, ts, ts)) + x_tkn_res
                x = self.fusion_cnn[i](x) + x_res

        x = self.conv_last(f)
        x = x + identity
        return self.tail(x)


@register_model(
    "act",
    scales=(2, 3, 4, 8),  # what the architecture builds (tested at every scale)
    family="post-upsampling",
    display_name="ACT",
    table_rank=6,
    paper="ACT, Yoo et al., WACV 2023",
    tiny={
        "n_feats": 8,
        "n_resgroups": 2,
        "n_resblocks": 1,
        "reduction": 4,
        "n_heads": 4,
        "n_layers": 4,
        "n_fusionblocks": 2,
    },
    hparams=DEFAULT_HPARAMS,
    reach=None,
    input_grid=3,
    min_input=lambda hp: 2 * int(hp["token_size"]),
    global_reason="self-attention over all 3x3 tokens and channel attention (global pooling)",
)
def build(scale: int, in_channels: int = 1, **overrides: object) -> nn.Module:
    """Build the benchmark's ACT: ``reference/act_x<scale>.json``'s exact layout without overrides.

    ``scale`` 2, 4 or 8 sets ``log2(scale)`` pixel-shuffle stages; ``in_channels`` is 1 in the
    benchmark. Overrides: ``n_feats``, ``n_resgroups``, ``n_resblocks``, ``reduction``, ``n_heads``,
    ``n_layers``, ``dropout_rate``, ``n_fusionblocks``, ``token_size``, ``expansion_ratio``,
    ``img_range``; another name or inconsistent sizes raise ValueError. The `ACT` maps
    ``(B, C, h, w)`` float32 in [0, 1] (``h, w >= 6``) to ``(B, C, s*h, s*w)``.
    """
    fixed = {"upscale": int(scale), "in_chans": int(in_channels)}
    hp = resolve_hparams("act", DEFAULT_HPARAMS, overrides, fixed=fixed)
    return ACT(**hp)  # type: ignore[arg-type]
