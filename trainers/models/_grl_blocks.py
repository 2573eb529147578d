"""Building blocks of GRL (see :mod:`srcaco2.trainers.models.grl`): shared tables/indices/masks, attentions,
block.

Shapes use B (batch), H x W (padded LR feature map), C (``embed_dim``), L = H*W tokens.
"""

from __future__ import annotations

import math

import torch
import torch.nn.functional as F
from torch import nn

from srcaco2.trainers.models.swinir import DropPath, Mlp, window_partition, window_reverse

__all__ = ["table_index_mask", "MixAttnBlock", "BUFFER_NAMES"]

BUFFER_NAMES: tuple[str, ...] = (
    "table_w",
    "table_sh",
    "table_sv",
    "index_w",
    "index_sh_a2w",
    "index_sh_w2a",
    "index_sv_a2w",
    "index_sv_w2a",
    "mask_w",
    "mask_sh_a2w",
    "mask_sh_w2a",
    "mask_sv_a2w",
    "mask_sv_w2a",
)
"""Names (and state_dict order) of the shared buffers held once by the GRL top module."""


def _partition(x: torch.Tensor, wh: int, ww: int) -> torch.Tensor:
    """(B, H, W, C) -> (B*nW, wh, ww, C) for a possibly non-square window."""
    if wh == ww:
        return window_partition(x, wh)
    b, h, w, c = x.shape
    x = x.view(b, h // wh, wh, w // ww, ww, c)
    return x.permute(0, 1, 3, 2, 4, 5).contiguous().view(-1, wh, ww, c)


def _reverse(x: torch.Tensor, wh: int, ww: int, h: int, w: int) -> torch.Tensor:
    if wh == ww:
        return window_reverse(x, wh, h, w)
    b = int(x.shape[0] / (h * w / wh / ww))
    x = x.view(b, h // wh, w // ww, wh, ww, -1)
    return x.permute(0, 1, 3, 2, 4, 5).contiguous().view(b, h, w, -1)


def _region_ids(
    size: tuple[int, int], win: tuple[int, int], shift: tuple[int, int], device: torch.device | None
) -> torch.Tensor:
    """(nW, wh*ww) float32 id of the shift region of every token (Swin's cyclic-shift mask recipe)."""
    img = torch.zeros((1, size[0], size[1], 1), device=device)
    hs = (slice(0, -win[0]), slice(-win[0], -shift[0]), slice(-shift[0], None))
    ws = (slice(0, -win[1]), slice(-win[1], -shift[1]), slice(-shift[1], None))
    cnt = 0
    for a in hs:
        for b in ws:
            img[:, a, b, :] = cnt
            cnt += 1
    return _partition(img, win[0], win[1]).reshape(-1, win[0] * win[1])


def _to_mask(diff: torch.Tensor) -> torch.Tensor:
    return diff.masked_fill(diff != 0, -100.0).masked_fill(diff == 0, 0.0)


def _coords_table(
    win: tuple[int, int], pretrained: tuple[int, int], df: int, device: torch.device | None
) -> torch.Tensor:
    """(1, Th, Tw, 2) float32 log-spaced relative coordinates between a window and its anchor window."""
    aws = [w // df for w in win]
    paws = [w // df for w in pretrained]
    ts_p = [w1 - 1 - (w1 - w2) // 2 for w1, w2 in zip(win, aws, strict=True)]
    ts_n = [-(w2 - 1) - (w1 - w2) // 2 for w1, w2 in zip(win, aws, strict=True)]
    pts = [w1 - 1 - (w1 - w2) // 2 for w1, w2 in zip(pretrained, paws, strict=True)]
    ch = torch.arange(ts_n[0], ts_p[0] + 1, dtype=torch.float32, device=device)
    cw = torch.arange(ts_n[1], ts_p[1] + 1, dtype=torch.float32, device=device)
    table = torch.stack(torch.meshgrid([ch, cw], indexing="ij")).permute(1, 2, 0).contiguous().unsqueeze(0)
    div = pts if pts[0] > 0 else ts_p
    table[:, :, :, 0] /= div[0]
    table[:, :, :, 1] /= div[1]
    table *= 8
    return torch.sign(table) * torch.log2(torch.abs(table) + 1.0) / math.log2(8)


def _coords(end: tuple[int, int] | list[int], device: torch.device | None) -> torch.Tensor:
    ch = torch.arange(end[0], device=device)
    cw = torch.arange(end[1], device=device)
    return torch.stack(torch.meshgrid([ch, cw], indexing="ij")).flatten(1)


def _position_index(
    win: tuple[int, int], df: int, window_to_anchor: bool, device: torch.device | None
) -> torch.Tensor:
    """int64 index into the flattened coordinates table: (N_win, N_anchor) or (N_anchor, N_win)."""
    aws = [w // df for w in win]
    c_win, c_anc = _coords(win, device), _coords(aws, device)
    max_diff = aws[1] + win[1] - 1
    if window_to_anchor:
        c1, c2, offset = c_win, c_anc, [w - 1 for w in aws]
    else:
        c1, c2, offset = c_anc, c_win, [w - 1 for w in win]
    rel = (c1[:, :, None] - c2[:, None, :]).permute(1, 2, 0).contiguous()
    rel[:, :, 0] += offset[0]
    rel[:, :, 1] += offset[1]
    rel[:, :, 0] *= max_diff
    return rel.sum(-1)


def table_index_mask(
    size: tuple[int, int],
    window: int,
    stripe: tuple[int, int],
    df: int,
    pretrained_window: tuple[int, int] = (0, 0),
    pretrained_stripe: tuple[int, int] = (0, 0),
    device: torch.device | None = None,
) -> dict[str, torch.Tensor]:
    """The 13 shared buffers of GRL for an (H, W) feature map, keyed as in :data:`BUFFER_NAMES`.

    ``stripe`` is the stripe size with ``stripe_groups`` None (the only supported case): stripes
    of ``stripe`` pixels and, for the masks, a shift of half a stripe. Window masks use a shift of
    ``window // 2``; anchors are ``df`` times smaller than their window or stripe.
    """
    ws = (window, window)
    ss = (stripe[0], stripe[1])
    sv = (stripe[1], stripe[0])
    sss = (ss[0] // 2, ss[1] // 2)
    out: dict[str, torch.Tensor] = {
        "table_w": _coords_table(ws, pretrained_window, 1, device),
        "table_sh": _coords_table(ss, pretrained_stripe, df, device),
        "table_sv": _coords_table(sv, pretrained_stripe, df, device),
        "index_w": _position_index(ws, 1, True, device),
        "index_sh_a2w": _position_index(ss, df, False, device),
        "index_sh_w2a": _position_index(ss, df, True, device),
        "index_sv_a2w": _position_index(sv, df, False, device),
        "index_sv_w2a": _position_index(sv, df, True, device),
    }
    win_ids = _region_ids(size, ws, (window // 2, window // 2), device)
    out["mask_w"] = _to_mask(win_ids.unsqueeze(1) - win_ids.unsqueeze(2))
    anchor_size = (size[0] // df, size[1] // df)
    for tag, s, sh in (("sh", ss, sss), ("sv", sv, sss[::-1])):
        ids = _region_ids(size, s, sh, device)
        anc = _region_ids(anchor_size, (s[0] // df, s[1] // df), (sh[0] // df, sh[1] // df), device)
        out[f"mask_{tag}_a2w"] = _to_mask(anc.unsqueeze(2) - ids.unsqueeze(1))
        out[f"mask_{tag}_w2a"] = _to_mask(ids.unsqueeze(2) - anc.unsqueeze(1))
    return out


class _AffineTransform(nn.Module):
    """Scaled cosine attention logits + continuous relative-position bias (16·sigmoid(MLP)) + mask."""

    def __init__(self, heads: int) -> None:
        super().__init__()
        self.logit_scale = nn.Parameter(torch.log(10 * torch.ones((heads, 1, 1))))
        self.cpb_mlp = nn.Sequential(
            nn.Linear(2, 512, bias=True), nn.ReLU(inplace=True), nn.Linear(512, heads, bias=False)
        )

    def forward(
        self, attn: torch.Tensor, table: torch.Tensor, index: torch.Tensor, mask: torch.Tensor | None
    ) -> torch.Tensor:
        b_, h, n1, n2 = attn.shape
        attn = attn * torch.clamp(self.logit_scale, max=math.log(1.0 / 0.01)).exp()
        bias = self.cpb_mlp(table).view(-1, h)[index.view(-1)]
        bias = 16 * torch.sigmoid(bias.view(n1, n2, -1).permute(2, 0, 1).contiguous())
        attn = attn + bias.unsqueeze(0)
        if mask is not None:
            nw = mask.shape[0]
            attn = attn.view(b_ // nw, nw, h, n1, n2) + mask.unsqueeze(1).unsqueeze(0)
            attn = attn.view(-1, h, n1, n2)
        return attn


def _cosine_attn(
    q: torch.Tensor,
    k: torch.Tensor,
    v: torch.Tensor,
    transform: _AffineTransform,
    table: torch.Tensor,
    index: torch.Tensor,
    mask: torch.Tensor | None,
    reshape: bool = True,
) -> torch.Tensor:
    b_, heads, _, hd = q.shape
    attn = F.normalize(q, dim=-1) @ F.normalize(k, dim=-1).transpose(-2, -1)
    attn = transform(attn, table, index, mask).softmax(dim=-1)
    x = attn @ v
    return x.transpose(1, 2).reshape(b_, -1, heads * hd) if reshape else x


class _WindowAttention(nn.Module):
    def __init__(self, window: int, heads: int, shift: bool) -> None:
        super().__init__()
        self.window, self.heads = window, heads
        self.shift = window // 2 if shift else 0
        self.attn_transform = _AffineTransform(heads)

    def forward(
        self,
        qkv: torch.Tensor,
        size: tuple[int, int],
        table: torch.Tensor,
        index: torch.Tensor,
        mask: torch.Tensor | None,
    ) -> torch.Tensor:
        h, w = size
        b, L, c = qkv.shape
        ws = self.window
        qkv = qkv.view(b, h, w, c)
        if self.shift > 0:
            qkv = torch.roll(qkv, shifts=(-self.shift, -self.shift), dims=(1, 2))
        qkv = window_partition(qkv, ws).view(-1, ws * ws, c)
        b_, n, _ = qkv.shape
        qkv = qkv.reshape(b_, n, 3, self.heads, -1).permute(2, 0, 3, 1, 4)
        x = _cosine_attn(qkv[0], qkv[1], qkv[2], self.attn_transform, table, index, mask)
        x = window_reverse(x.view(-1, ws, ws, c // 3), ws, h, w)
        if self.shift > 0:
            x = torch.roll(x, shifts=(self.shift, self.shift), dims=(1, 2))
        return x.view(b, L, c // 3)


class _AnchorStripeAttention(nn.Module):
    """Stripe attention through anchors: anchor <- window (a2w), then window <- anchor (w2a)."""

    def __init__(self, stripe: tuple[int, int], heads: int, df: int) -> None:
        super().__init__()
        self.stripe, self.heads, self.df = stripe, heads, df
        self.attn_transform1 = _AffineTransform(heads)
        self.attn_transform2 = _AffineTransform(heads)

    def forward(
        self,
        qkv: torch.Tensor,
        anchor: torch.Tensor,
        size: tuple[int, int],
        table: torch.Tensor,
        index_a2w: torch.Tensor,
        index_w2a: torch.Tensor,
    ) -> torch.Tensor:
        h, w = size
        b, _, c = qkv.shape
        sh, sw = self.stripe
        ah, aw = sh // self.df, sw // self.df
        qkv = _partition(qkv.view(b, h, w, c), sh, sw).view(-1, sh * sw, c)
        anchor = _partition(anchor, ah, aw).view(-1, ah * aw, c // 3)
        b_, n1, _ = qkv.shape
        n2 = anchor.shape[1]
        qkv = qkv.reshape(b_, n1, 3, self.heads, -1).permute(2, 0, 3, 1, 4)
        q, k, v = qkv[0], qkv[1], qkv[2]
        anchor = anchor.reshape(b_, n2, self.heads, -1).permute(0, 2, 1, 3)
        x = _cosine_attn(anchor, k, v, self.attn_transform1, table, index_a2w, None, reshape=False)
        x = _cosine_attn(q, anchor, x, self.attn_transform2, table, index_w2a, None)
        x = _reverse(x.view(b_, sh, sw, c // 3), sh, sw, h, w)
        return x.view(b, h * w, c // 3)


class _Linear(nn.Module):
    """Wrapper so that the key is ``<name>.body.weight`` (the original's QKVProjection)."""

    def __init__(self, dim_in: int, dim_out: int, bias: bool) -> None:
        super().__init__()
        self.body = nn.Linear(dim_in, dim_out, bias=bias)

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        return self.body(x)


class _AnchorLinear(nn.Module):
    """Anchor projection: pool by ``df``, then Linear(C, C/2); output (B, H/df, W/df, C/2)."""

    def __init__(self, dim: int, df: int, mode: str) -> None:
        super().__init__()
        self.df = df
        self.pooling = nn.MaxPool2d(df, df) if mode == "maxpool" else nn.AvgPool2d(df, df)
        self.reduction = nn.Linear(dim, dim // 2, bias=True)

    def forward(self, x: torch.Tensor, size: tuple[int, int]) -> torch.Tensor:
        b, _, c = x.shape
        x = self.pooling(x.transpose(1, 2).view(b, c, size[0], size[1])).flatten(2).transpose(1, 2)
        return self.reduction(x).view(b, size[0] // self.df, size[1] // self.df, c // 2)


class _AnchorProjection(nn.Module):
    def __init__(self, dim: int, df: int, mode: str) -> None:
        super().__init__()
        self.body = nn.ModuleList([_AnchorLinear(dim, df, mode)])

    def forward(self, x: torch.Tensor, size: tuple[int, int]) -> torch.Tensor:
        for m in self.body:
            x = m(x, size)
        return x


class _MixedAttention(nn.Module):
    """Shared qkv projection; half the channels to window attention, half to anchor stripe attention."""

    def __init__(
        self,
        dim: int,
        heads_w: int,
        heads_s: int,
        window: int,
        window_shift: bool,
        stripe: tuple[int, int],
        qkv_bias: bool,
        anchor_mode: str,
        df: int,
    ) -> None:
        super().__init__()
        self.qkv = _Linear(dim, dim * 3, qkv_bias)
        self.anchor = _AnchorProjection(dim, df, anchor_mode)
        self.window_attn = _WindowAttention(window, heads_w, window_shift)
        self.stripe_attn = _AnchorStripeAttention(stripe, heads_s, df)
        self.proj = nn.Linear(dim, dim)

    def forward(
        self,
        x: torch.Tensor,
        size: tuple[int, int],
        tim: dict[str, torch.Tensor | None],
        stripe_tag: str,
        window_shift: bool,
    ) -> torch.Tensor:
        c = x.shape[-1]
        qkv_w, qkv_s = torch.split(self.qkv(x), c * 3 // 2, dim=-1)
        anchor = self.anchor(x, size)
        x_w = self.window_attn(
            qkv_w, size, tim["table_w"], tim["index_w"], tim["mask_w"] if window_shift else None
        )
        x_s = self.stripe_attn(
            qkv_s,
            anchor,
            size,
            tim[f"table_{stripe_tag}"],
            tim[f"index_{stripe_tag}_a2w"],
            tim[f"index_{stripe_tag}_w2a"],
        )
        return self.proj(torch.cat([x_w, x_s], dim=-1))


class _ChannelAttention(nn.Module):
    def __init__(self, dim: int, reduction: int) -> None:
        super().__init__()
        self.attention = nn.Sequential(
            nn.AdaptiveAvgPool2d(1),
            nn.Conv2d(dim, dim // reduction, 1, padding=0),
            nn.ReLU(inplace=True),
            nn.Conv2d(dim // reduction, dim, 1, padding=0),
            nn.Sigmoid(),
        )

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        return x * self.attention(x)


class _CAB(nn.Module):
    """Local connection: conv3x3 (C -> C/4), GELU, conv3x3 (C/4 -> C), RCAN channel attention (C/18)."""

    def __init__(self, dim: int, compress: int = 4, reduction: int = 18) -> None:
        super().__init__()
        self.cab = nn.Sequential(
            nn.Conv2d(dim, dim // compress, 3, 1, 1),
            nn.GELU(),
            nn.Conv2d(dim // compress, dim, 3, 1, 1),
            _ChannelAttention(dim, reduction),
        )

    def forward(self, x: torch.Tensor, size: tuple[int, int]) -> torch.Tensor:
        b, _, c = x.shape
        y = self.cab(x.transpose(1, 2).view(b, c, size[0], size[1]).contiguous())
        return y.flatten(2).transpose(1, 2)


class MixAttnBlock(nn.Module):
    """GRL transformer block (post-norm): x + norm1(attn(x)) + CAB(x); then x + norm2(mlp(x)).

    Even blocks (index % 2 == 0) use shifted windows and horizontal stripes ("H"); odd blocks plain
    windows and vertical stripes ("W", stripe size reversed).
    """

    def __init__(
        self,
        index: int,
        dim: int,
        heads_w: int,
        heads_s: int,
        window: int,
        stripe: tuple[int, int],
        mlp_ratio: float,
        qkv_bias: bool,
        anchor_mode: str,
        df: int,
        local_connection: bool,
        drop_path: float,
    ) -> None:
        super().__init__()
        self.window_shift = index % 2 == 0
        self.stripe_tag = "sh" if index % 2 == 0 else "sv"
        stripe_b = stripe if index % 2 == 0 else (stripe[1], stripe[0])
        self.attn = _MixedAttention(
            dim, heads_w, heads_s, window, self.window_shift, stripe_b, qkv_bias, anchor_mode, df
        )
        self.norm1 = nn.LayerNorm(dim)
        self.conv = _CAB(dim) if local_connection else None
        self.drop_path = DropPath(drop_path) if drop_path > 0.0 else nn.Identity()
        self.mlp = Mlp(dim, int(dim * mlp_ratio))
        self.norm2 = nn.LayerNorm(dim)

    def forward(
        self, x: torch.Tensor, size: tuple[int, int], tim: dict[str, torch.Tensor | None]
    ) -> torch.Tensor:
        y = x + self.drop_path(self.norm1(self.attn(x, size, tim, self.stripe_tag, self.window_shift)))
        x = y + self.conv(x, size) if self.conv is not None else y
        return x + self.drop_path(self.norm2(self.mlp(x)))
