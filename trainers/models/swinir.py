"""SwinIR (Liang et al., "SwinIR: Image Restoration Using Swin Transformer", ICCVW 2021).

A re-implementation of the benchmark's SwinIR, written from the paper and the facts recorded in
``trainers/models/reference/swinir_x{2,4,8}.json`` (the published checkpoints load with
``strict=True``).

Architecture (post-upsampling): ``conv_first`` (3x3, ``in_chans`` -> ``embed_dim``) -> shallow
features ``f``; deep features = ``len(depths)`` residual Swin transformer blocks (RSTB: ``depth``
Swin layers alternating plain / shifted (shift ``window_size // 2``) window attention with a
learned relative-position bias, then a 3x3 conv, plus the RSTB input) -> LayerNorm ->
``conv_after_body`` (3x3) + ``f`` -> ``pixelshuffledirect`` upsampler (one 3x3 conv to
``in_chans * s**2`` channels and one pixel shuffle by ``s``, also at x8).

What the benchmark variant fixes (README settings, not the code defaults): 4 RSTB x 6 layers,
``embed_dim`` 180, 6 heads, window 8, ``mlp_ratio`` 2, ``upsampler='pixelshuffledirect'``,
``resi_connection='1conv'``, ``img_range`` 1 and ``img_size = 128 // s`` (the training patch size
in LR pixels). For one channel the mean is 0, so ``(x - mean) * img_range`` is the identity.

Buffers. Every attention holds ``relative_position_index`` ((ws², ws²) int64) and every shifted
layer (odd index in its RSTB) holds ``attn_mask`` ((nW, ws², ws²) float32, values 0 / -100,
``nW = (img_size / ws)²``): both are persistent (in the state_dict). ``attn_mask`` is used only when
the (padded) input has exactly ``img_size`` LR pixels per side; for any other size the mask is
computed for that size (cached per size and device, outside the state_dict).

Evaluation padding (documented behaviour of :meth:`SwinIR.forward`). In ``eval()`` mode the
model reproduces the benchmark's evaluation: the LR image is extended at the bottom by the
vertically flipped copy of its last ``p_h`` rows, then at the right by the horizontally flipped
copy of the last ``p_w`` columns, with ``p = (n // ws + 1) * ws - n`` (so ``p = ws`` when ``n`` is
already a multiple of the window), the network runs on the extended image and the output is
cropped to ``(s*h, s*w)``. In ``train()`` mode the network runs on the input as is, except that it
reflect-pads bottom/right to the next window multiple when needed (the original
``check_image_size``; a no-op after the evaluation padding) and crops the output.

Hyperparameters (overrides of :func:`build`, named as in the JSON): ``img_size`` (int, 128 // s),
``window_size`` (8), ``img_range`` (1.0), ``depths`` (list of layers per RSTB, [6, 6, 6, 6]),
``embed_dim`` (180), ``num_heads`` (per RSTB, [6, 6, 6, 6]), ``mlp_ratio`` (2), ``upsampler``
(only ``'pixelshuffledirect'``), ``resi_connection`` (only ``'1conv'``), ``qkv_bias`` (True),
``qk_scale`` (None: head_dim ** -0.5), ``drop_path_rate`` (0.1, stochastic depth, training only),
``patch_norm`` (True). Init: Linear trunc_normal(std 0.02) with zero bias, LayerNorm 1 / 0,
relative-position tables trunc_normal(0.02); convs keep PyTorch's default init.
"""

from __future__ import annotations

import math
from typing import Any

import torch
import torch.nn.functional as F
from torch import nn

from srcaco2.kernels.pixel_shuffle import PixelShuffle
from srcaco2.trainers.models._hparams import constructor_kwargs, resolve_hparams
from srcaco2.trainers.models._reach import windowed_radius
from srcaco2.trainers.models.registry import register_model

__all__ = [
    "SwinIR",
    "build",
    "DropPath",
    "Mlp",
    "init_transformer_weights",
    "window_partition",
    "window_reverse",
]


class DropPath(nn.Module):
    """Stochastic depth per sample (training only; identity in eval or when ``drop_prob == 0``)."""

    def __init__(self, drop_prob: float = 0.0) -> None:
        super().__init__()
        self.drop_prob = float(drop_prob)

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        if self.drop_prob == 0.0 or not self.training:
            return x
        keep = 1.0 - self.drop_prob
        shape = (x.shape[0],) + (1,) * (x.ndim - 1)
        mask = x.new_empty(shape).bernoulli_(keep)
        if keep > 0.0:
            mask.div_(keep)
        return x * mask

    def extra_repr(self) -> str:
        return f"drop_prob={self.drop_prob}"


def window_partition(x: torch.Tensor, ws: int) -> torch.Tensor:
    """(B, H, W, C) -> (B * H/ws * W/ws, ws, ws, C), windows in row-major order."""
    b, h, w, c = x.shape
    x = x.view(b, h // ws, ws, w // ws, ws, c)
    return x.permute(0, 1, 3, 2, 4, 5).contiguous().view(-1, ws, ws, c)


def window_reverse(windows: torch.Tensor, ws: int, h: int, w: int) -> torch.Tensor:
    """Inverse of :func:`window_partition`: (B * nW, ws, ws, C) -> (B, H, W, C)."""
    b = int(windows.shape[0] / (h * w / ws / ws))
    x = windows.view(b, h // ws, w // ws, ws, ws, -1)
    return x.permute(0, 1, 3, 2, 4, 5).contiguous().view(b, h, w, -1)


def _relative_position_index(ws: int) -> torch.Tensor:
    """(ws², ws²) int64 index into a ((2ws-1)², heads) bias table (Swin convention)."""
    coords = torch.stack(torch.meshgrid(torch.arange(ws), torch.arange(ws), indexing="ij")).flatten(1)
    rel = (coords[:, :, None] - coords[:, None, :]).permute(1, 2, 0).contiguous()
    rel[:, :, 0] += ws - 1
    rel[:, :, 1] += ws - 1
    rel[:, :, 0] *= 2 * ws - 1
    return rel.sum(-1)


def _shift_mask(h: int, w: int, ws: int, shift: int, device: torch.device | None = None) -> torch.Tensor:
    """Attention mask (nW, ws², ws²) float32 (0 / -100) of a cyclic shift by ``shift`` on an h x w map."""
    img = torch.zeros((1, h, w, 1), device=device)
    slices = (slice(0, -ws), slice(-ws, -shift), slice(-shift, None))
    cnt = 0
    for hs in slices:
        for wsl in slices:
            img[:, hs, wsl, :] = cnt
            cnt += 1
    win = window_partition(img, ws).view(-1, ws * ws)
    mask = win.unsqueeze(1) - win.unsqueeze(2)
    return mask.masked_fill(mask != 0, -100.0).masked_fill(mask == 0, 0.0)


def init_transformer_weights(m: nn.Module) -> None:
    """SwinIR/GRL init (``model.apply``): Linear weights trunc-normal(std 0.02), biases 0; LayerNorm 1, 0."""
    if isinstance(m, nn.Linear):
        nn.init.trunc_normal_(m.weight, std=0.02)
        if m.bias is not None:
            nn.init.constant_(m.bias, 0)
    elif isinstance(m, nn.LayerNorm):
        nn.init.constant_(m.bias, 0)
        nn.init.constant_(m.weight, 1.0)


class Mlp(nn.Module):
    """Transformer MLP: Linear(dim, hidden), GELU, Linear(hidden, dim) (keys ``fc1``, ``fc2``)."""

    def __init__(self, dim: int, hidden: int) -> None:
        super().__init__()
        self.fc1 = nn.Linear(dim, hidden)
        self.act = nn.GELU()
        self.fc2 = nn.Linear(hidden, dim)

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        return self.fc2(self.act(self.fc1(x)))


class _WindowAttention(nn.Module):
    """Multi-head self-attention inside ws x ws windows with a relative-position bias."""

    def __init__(self, dim: int, ws: int, heads: int, qkv_bias: bool, qk_scale: float | None) -> None:
        super().__init__()
        self.ws, self.heads = ws, heads
        self.scale = qk_scale or (dim // heads) ** -0.5
        self.relative_position_bias_table = nn.Parameter(torch.zeros((2 * ws - 1) ** 2, heads))
        self.register_buffer("relative_position_index", _relative_position_index(ws))
        self.qkv = nn.Linear(dim, dim * 3, bias=qkv_bias)
        self.proj = nn.Linear(dim, dim)
        nn.init.trunc_normal_(self.relative_position_bias_table, std=0.02)

    def forward(self, x: torch.Tensor, mask: torch.Tensor | None = None) -> torch.Tensor:
        b_, n, c = x.shape
        qkv = self.qkv(x).reshape(b_, n, 3, self.heads, c // self.heads).permute(2, 0, 3, 1, 4)
        q, k, v = qkv[0], qkv[1], qkv[2]
        attn = (q * self.scale) @ k.transpose(-2, -1)
        bias = self.relative_position_bias_table[self.relative_position_index.view(-1)]
        attn = attn + bias.view(n, n, -1).permute(2, 0, 1).contiguous().unsqueeze(0)
        if mask is not None:
            nw = mask.shape[0]
            attn = attn.view(b_ // nw, nw, self.heads, n, n) + mask.unsqueeze(1).unsqueeze(0)
            attn = attn.view(-1, self.heads, n, n)
        attn = attn.softmax(dim=-1)
        return self.proj((attn @ v).transpose(1, 2).reshape(b_, n, c))


class _SwinLayer(nn.Module):
    """One Swin transformer layer (STL): (shifted) window attention + MLP, both pre-norm residual."""

    def __init__(
        self,
        dim: int,
        resolution: tuple[int, int],
        heads: int,
        ws: int,
        shift: int,
        mlp_ratio: float,
        qkv_bias: bool,
        qk_scale: float | None,
        drop_path: float,
    ) -> None:
        super().__init__()
        self.resolution = tuple(resolution)
        if min(self.resolution) <= ws:  # original quirk: no partition/shift when the image is small
            shift, ws = 0, min(self.resolution)
        self.ws, self.shift = ws, shift
        self.register_buffer("attn_mask", _shift_mask(*self.resolution, ws, shift) if shift > 0 else None)
        self.norm1 = nn.LayerNorm(dim)
        self.attn = _WindowAttention(dim, ws, heads, qkv_bias, qk_scale)
        self.drop_path = DropPath(drop_path) if drop_path > 0.0 else nn.Identity()
        self.norm2 = nn.LayerNorm(dim)
        self.mlp = Mlp(dim, int(dim * mlp_ratio))
        self._masks: dict[tuple[int, int, str], torch.Tensor] = {}

    def _mask_for(self, size: tuple[int, int], device: torch.device) -> torch.Tensor | None:
        if self.shift == 0:
            return None  # the original passes an all-zero mask here: adding 0 changes nothing
        if size == self.resolution:
            return self.attn_mask
        key = (size[0], size[1], str(device))
        if key not in self._masks:
            self._masks[key] = _shift_mask(size[0], size[1], self.ws, self.shift, device=device)
        return self._masks[key]

    def forward(self, x: torch.Tensor, size: tuple[int, int]) -> torch.Tensor:
        h, w = size
        b, _, c = x.shape
        shortcut = x
        x = self.norm1(x).view(b, h, w, c)
        if self.shift > 0:
            x = torch.roll(x, shifts=(-self.shift, -self.shift), dims=(1, 2))
        win = window_partition(x, self.ws).view(-1, self.ws * self.ws, c)
        win = self.attn(win, mask=self._mask_for(size, x.device))
        x = window_reverse(win.view(-1, self.ws, self.ws, c), self.ws, h, w)
        if self.shift > 0:
            x = torch.roll(x, shifts=(self.shift, self.shift), dims=(1, 2))
        x = shortcut + self.drop_path(x.view(b, h * w, c))
        return x + self.drop_path(self.mlp(self.norm2(x)))


class _BasicLayer(nn.Module):
    def __init__(
        self,
        dim: int,
        resolution: tuple[int, int],
        depth: int,
        heads: int,
        ws: int,
        mlp_ratio: float,
        qkv_bias: bool,
        qk_scale: float | None,
        drop_path: list[float],
    ) -> None:
        super().__init__()
        self.blocks = nn.ModuleList(
            _SwinLayer(
                dim,
                resolution,
                heads,
                ws,
                0 if i % 2 == 0 else ws // 2,
                mlp_ratio,
                qkv_bias,
                qk_scale,
                drop_path[i],
            )
            for i in range(depth)
        )

    def forward(self, x: torch.Tensor, size: tuple[int, int]) -> torch.Tensor:
        for blk in self.blocks:
            x = blk(x, size)
        return x


class _RSTB(nn.Module):
    """Residual Swin transformer block: `_BasicLayer` (same arguments) -> 3x3 conv, plus the block input."""

    def __init__(self, dim: int, *layer_args: Any) -> None:
        super().__init__()
        self.residual_group = _BasicLayer(dim, *layer_args)
        self.conv = nn.Conv2d(dim, dim, 3, 1, 1)

    def forward(self, x: torch.Tensor, size: tuple[int, int]) -> torch.Tensor:
        y = self.residual_group(x, size)
        b, _, c = y.shape
        y = self.conv(y.transpose(1, 2).reshape(b, c, size[0], size[1]))
        return y.flatten(2).transpose(1, 2) + x


class _PatchEmbed(nn.Module):
    """(B, C, H, W) -> (B, H*W, C) tokens (patch size 1), then LayerNorm."""

    def __init__(self, dim: int, norm: bool) -> None:
        super().__init__()
        self.norm = nn.LayerNorm(dim) if norm else None

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        x = x.flatten(2).transpose(1, 2)
        return self.norm(x) if self.norm is not None else x


class SwinIR(nn.Module):
    """SwinIR with the ``pixelshuffledirect`` upsampler and ``1conv`` residual connection.

    Parameters
    ----------
    upscale : int
        Scale factor s (2, 4 or 8).
    in_chans : int
        Image channels (1 in the benchmark).
    img_size : int
        Training patch size in LR pixels; sets the stored ``attn_mask`` buffers.
    window_size, embed_dim, depths, num_heads, mlp_ratio, qkv_bias, qk_scale, drop_path_rate,
    patch_norm, img_range
        See the module docstring.

    Notes
    -----
    ``forward`` maps ``(B, C, h, w)`` float32 in [0, 1] to ``(B, C, s*h, s*w)`` (not clamped); in
    eval mode it applies the benchmark's mirror padding first (module docstring). Set
    ``eval_padding = False`` to run the bare network in eval mode too.
    """

    def __init__(
        self,
        upscale: int,
        in_chans: int = 1,
        img_size: int = 64,
        window_size: int = 8,
        img_range: float = 1.0,
        depths: tuple[int, ...] | list[int] = (6, 6, 6, 6),
        embed_dim: int = 180,
        num_heads: tuple[int, ...] | list[int] = (6, 6, 6, 6),
        mlp_ratio: float = 2.0,
        qkv_bias: bool = True,
        qk_scale: float | None = None,
        drop_path_rate: float = 0.1,
        patch_norm: bool = True,
    ) -> None:
        super().__init__()
        if len(depths) != len(num_heads):
            raise ValueError(
                f"SwinIR: depths {list(depths)} and num_heads {list(num_heads)} differ in length"
            )
        for d, nh in zip(depths, num_heads, strict=True):
            if embed_dim % nh:
                raise ValueError(f"SwinIR: embed_dim={embed_dim} is not divisible by num_heads={nh}")
            if d < 1:
                raise ValueError(f"SwinIR: every depth must be >= 1, got depths={list(depths)}")
        self.upscale, self.window_size, self.img_range = int(upscale), int(window_size), float(img_range)
        self.mean = (
            torch.zeros(1, 1, 1, 1)
            if in_chans != 3
            else torch.tensor([0.4488, 0.4371, 0.4040]).view(1, 3, 1, 1)
        )
        self.eval_padding = True
        resolution = (int(img_size), int(img_size))
        self.conv_first = nn.Conv2d(in_chans, embed_dim, 3, 1, 1)
        self.patch_embed = _PatchEmbed(embed_dim, patch_norm)
        dpr = [float(v) for v in torch.linspace(0, drop_path_rate, sum(depths), device="cpu")]
        self.layers = nn.ModuleList(
            _RSTB(
                embed_dim,
                resolution,
                depths[i],
                num_heads[i],
                window_size,
                mlp_ratio,
                qkv_bias,
                qk_scale,
                dpr[sum(depths[:i]) : sum(depths[: i + 1])],
            )
            for i in range(len(depths))
        )
        self.norm = nn.LayerNorm(embed_dim)
        self.conv_after_body = nn.Conv2d(embed_dim, embed_dim, 3, 1, 1)
        self.upsample = nn.Sequential(
            nn.Conv2d(embed_dim, upscale**2 * in_chans, 3, 1, 1), PixelShuffle(upscale)
        )
        self.apply(init_transformer_weights)

    def _features(self, x: torch.Tensor) -> torch.Tensor:
        size = (x.shape[2], x.shape[3])
        t = self.patch_embed(x)
        for layer in self.layers:
            t = layer(t, size)
        t = self.norm(t)
        b, _, c = t.shape
        return t.transpose(1, 2).reshape(b, c, size[0], size[1])

    def forward_network(self, x: torch.Tensor) -> torch.Tensor:
        """The original network's forward: reflect-pad to the window multiple, run, crop.

        Parameters
        ----------
        x : (B, C, h, w) float32
            LR image in [0, 1].

        Returns
        -------
        (B, C, s*h, s*w) float32
        """
        h, w = x.shape[2:]
        ws = self.window_size
        pad_h, pad_w = (ws - h % ws) % ws, (ws - w % ws) % ws
        if pad_h >= h or pad_w >= w:
            raise ValueError(
                f"SwinIR: LR input {h}x{w} is too small to reflect-pad to the window multiple {ws} "
                f"(the padding must be smaller than the side); use LR sides >= {ws // 2 + 1} "
                "(3 in eval mode, whose mirror padding doubles the image first) or a multiple of "
                f"{ws}"
            )
        x = F.pad(x, (0, pad_w, 0, pad_h), "reflect")
        mean = self.mean.to(x)
        x = (x - mean) * self.img_range
        x = self.conv_first(x)
        x = self.conv_after_body(self._features(x)) + x
        x = self.upsample(x)
        x = x / self.img_range + mean
        return x[:, :, : h * self.upscale, : w * self.upscale]

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        """LR ``(B, C, h, w)`` -> SR ``(B, C, s*h, s*w)``; eval mode adds the benchmark's mirror padding."""
        if self.training or not self.eval_padding:
            return self.forward_network(x)
        h, w = x.shape[2:]
        ws = self.window_size
        p_h, p_w = (h // ws + 1) * ws - h, (w // ws + 1) * ws - w
        x = torch.cat([x, torch.flip(x, [2])], 2)[:, :, : h + p_h, :]
        x = torch.cat([x, torch.flip(x, [3])], 3)[:, :, :, : w + p_w]
        return self.forward_network(x)[:, :, : h * self.upscale, : w * self.upscale]


_DEFAULTS: dict[str, Any] = {
    "img_size": None,
    "window_size": 8,
    "img_range": 1.0,
    "depths": [6, 6, 6, 6],
    "embed_dim": 180,
    "num_heads": [6, 6, 6, 6],
    "mlp_ratio": 2,
    "upsampler": "pixelshuffledirect",
    "resi_connection": "1conv",
    "qkv_bias": True,
    "qk_scale": None,
    "drop_path_rate": 0.1,
    "patch_norm": True,
}


def _reach(scale: int, hp: dict[str, Any]) -> int:
    """conv_first; per RSTB its plain / shifted window-attention layers and a 3x3 conv;
    conv_after_body; the upsampler's 3x3 conv (at LR, before the pixel shuffle)."""
    ws = int(hp["window_size"])
    layers: list[tuple[str, int]] = [("conv", 3)]
    for depth in hp["depths"]:
        layers += [("window", ws // 2 if i % 2 else 0) for i in range(int(depth))] + [("conv", 3)]
    return windowed_radius([*layers, ("conv", 3), ("conv", 3)], ws)


@register_model(
    "swinir",
    family="post-upsampling",
    display_name="SwinIR",
    table_rank=2,
    paper="SwinIR, Liang et al., ICCVW 2021",
    tiny={"embed_dim": 12, "depths": [2, 2], "num_heads": [2, 2], "img_size": 16, "drop_path_rate": 0.0},
    hparams=_DEFAULTS,
    reach=_reach,
    input_grid=8,
    min_input=3,
)
def build(scale: int, in_channels: int = 1, **overrides: Any) -> nn.Module:
    """Build the benchmark's SwinIR for ``scale`` (img_size = 128 // scale unless overridden).

    Raises
    ------
    ValueError
        Unknown override name, or an ``upsampler`` / ``resi_connection`` other than the benchmark's.
    """
    cfg = resolve_hparams("swinir", _DEFAULTS, overrides)
    if cfg["upsampler"] != "pixelshuffledirect" or cfg["resi_connection"] != "1conv":
        raise ValueError(
            "swinir: only upsampler='pixelshuffledirect' and resi_connection='1conv' (the benchmark's "
            f"configuration) are implemented, got {cfg['upsampler']!r} / {cfg['resi_connection']!r}"
        )
    img_size = cfg["img_size"] if cfg["img_size"] is not None else 128 // int(scale)
    if int(math.log2(scale)) != math.log2(scale):
        raise ValueError(f"swinir: scale must be a power of 2, got {scale}")
    kwargs = constructor_kwargs(cfg, drop=("img_size", "upsampler", "resi_connection"))
    return SwinIR(int(scale), in_chans=in_channels, img_size=img_size, **kwargs)
