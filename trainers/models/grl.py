"""GRL (Li et al., "Efficient and Explicit Modelling of Image Hierarchies for Image Restoration", CVPR 2023).

A re-implementation of the benchmark's "Big" GRL, written from the paper and the facts recorded in
``trainers/models/reference/grl_x{2,4,8}.json`` (the published checkpoints load with ``strict=True``).
Blocks live in :mod:`srcaco2.trainers.models._grl_blocks`.

Architecture (post-upsampling): reflect-pad bottom/right to a multiple of ``pad_size`` (= window 8;
F.pad 'reflect', falling back to zero padding when reflect is impossible, i.e. pad >= size);
``conv_first`` 3x3 (C -> ``embed_dim``) = ``f``; tokens -> ``norm_start``; ``len(depths)`` transformer
stages (each: ``depth`` mixed-attention blocks, then a 3x3 conv on the map, plus the stage input);
``norm_end``; ``conv_after_body`` 3x3 + ``f``; ``conv_before_upsample`` (3x3 -> 64, LeakyReLU 0.01);
``upsample`` (log2 s x [conv 3x3 64 -> 256, pixel shuffle 2]); ``conv_last`` 3x3 (64 -> C); crop.

Mixed-attention block (post-norm, ``local_connection``): one Linear makes q, k, v (3C channels);
the first half (3C/2) feeds *window attention* (8x8 windows, shifted by 4 in even blocks,
``num_heads_window`` heads), the second half *anchor stripe attention* (``num_heads_stripe``
heads): anchors = avg-pool x2 of the block input, Linear(C, C/2); within each 8x8 stripe
(stripe_groups None, so stripes are 8x8 and never shifted), the 4x4 anchors first attend to the
stripe's keys/values, then the stripe's queries attend to the anchors. Both attentions use cosine
similarity scaled by ``exp(min(logit_scale, log 100))`` plus a continuous relative-position bias
``16·sigmoid(MLP(2 -> 512 -> heads)(log-spaced coordinates table))`` (Swin V2); shifted windows
add the -100 mask. The two halves are concatenated and projected (Linear). Block:
``x = x + norm1(attn(x)) + CAB(x)``, ``x = x + norm2(mlp(x))`` with CAB = conv3x3 (C -> C/4),
GELU, conv3x3 (C/4 -> C), RCAN channel attention (reduction 18); MLP ratio 2, GELU.

Shared buffers (persistent, held once at the top level, see ``_grl_blocks.BUFFER_NAMES``): the
relative-coordinate tables ``table_w`` (1, 15, 15, 2), ``table_sh``/``table_sv`` (1, 11, 11, 2),
the indices ``index_*`` (int64) and the masks ``mask_*`` (float32, 0 / -100) computed for
``img_size = 128 // s``. They are used when the padded input equals ``img_size``; for any other size
they are recomputed (cached per size and device, outside the state_dict). The stripe masks are
stored but unused (``stripe_shift`` False), as in the original.

Benchmark values (all overridable by name in :func:`build`): ``img_size`` 128 // s,
``window_size`` 8, ``img_range`` 1.0, ``depths`` [4, 4, 8, 8, 8, 4, 4], ``embed_dim`` 180,
``num_heads_window`` / ``num_heads_stripe`` [3] * 7, ``mlp_ratio`` 2, ``upsampler``
'pixelshuffle' (only), ``qkv_proj_type`` 'linear' (only), ``anchor_proj_type`` 'avgpool'
('maxpool' also accepted), ``anchor_window_down_factor`` 2, ``out_proj_type`` 'linear' (only),
``conv_type`` '1conv' (only), ``local_connection`` True, ``stripe_size`` [8, 8], ``qkv_bias`` True,
``drop_path_rate`` 0.1 (stochastic depth, training only). Init: Linear trunc_normal(0.02) with zero
bias (cpb MLPs included), LayerNorm 1 / 0, ``logit_scale`` log 10; convs keep PyTorch's default.
"""

from __future__ import annotations

from typing import Any

import torch
import torch.nn.functional as F
from torch import nn

from srcaco2.kernels.pixel_shuffle import PixelShuffle
from srcaco2.trainers.models._grl_blocks import BUFFER_NAMES, MixAttnBlock, table_index_mask
from srcaco2.trainers.models._hparams import constructor_kwargs, resolve_hparams
from srcaco2.trainers.models.registry import register_model
from srcaco2.trainers.models.swinir import init_transformer_weights

__all__ = ["GRL", "build"]


class _Stage(nn.Module):
    """``depth`` `MixAttnBlock` s (block ``i`` gets ``drop_path[i]``; ``block_args`` are the block's
    arguments from ``heads_w`` to ``local_connection``), a 3x3 conv, plus the stage input."""

    def __init__(self, dim: int, depth: int, drop_path: list[float], *block_args: Any) -> None:
        super().__init__()
        self.blocks = nn.ModuleList(MixAttnBlock(i, dim, *block_args, drop_path[i]) for i in range(depth))
        self.conv = nn.Conv2d(dim, dim, 3, 1, 1)

    def forward(self, x: torch.Tensor, size: tuple[int, int], tim: dict[str, Any]) -> torch.Tensor:
        res = x
        for blk in self.blocks:
            res = blk(res, size, tim)
        b, _, c = res.shape
        res = self.conv(res.transpose(1, 2).view(b, c, size[0], size[1])).flatten(2).transpose(1, 2)
        return res + x


class _Upsample(nn.Module):
    def __init__(self, layers: list[nn.Module]) -> None:
        super().__init__()
        self.up = nn.Sequential(*layers)

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        return self.up(x)


class GRL(nn.Module):
    """GRL with the ``pixelshuffle`` upsampler (see the module docstring).

    ``forward`` maps ``(B, C, h, w)`` float32 in [0, 1] to ``(B, C, s*h, s*w)`` (not clamped), padding
    internally to the window multiple (the original behaviour, train and eval alike).
    """

    def __init__(
        self,
        upscale: int,
        in_chans: int = 1,
        img_size: int = 64,
        window_size: int = 8,
        img_range: float = 1.0,
        depths: list[int] | tuple[int, ...] = (4, 4, 8, 8, 8, 4, 4),
        embed_dim: int = 180,
        num_heads_window: list[int] | tuple[int, ...] = (3,) * 7,
        num_heads_stripe: list[int] | tuple[int, ...] = (3,) * 7,
        mlp_ratio: float = 2.0,
        anchor_proj_type: str = "avgpool",
        anchor_window_down_factor: int = 2,
        local_connection: bool = True,
        stripe_size: list[int] | tuple[int, int] = (8, 8),
        qkv_bias: bool = True,
        drop_path_rate: float = 0.1,
    ) -> None:
        super().__init__()
        if not (len(depths) == len(num_heads_window) == len(num_heads_stripe)):
            raise ValueError(
                f"GRL: depths {list(depths)}, num_heads_window {list(num_heads_window)} and "
                f"num_heads_stripe {list(num_heads_stripe)} must have the same length"
            )
        if embed_dim % 2 or any((embed_dim // 2) % h for h in (*num_heads_window, *num_heads_stripe)):
            raise ValueError(
                f"GRL: embed_dim={embed_dim} must be even and embed_dim/2 divisible by every head count"
            )
        df = int(anchor_window_down_factor)
        stripe = (int(stripe_size[0]), int(stripe_size[1]))
        if any(s % df for s in (*stripe, window_size)):
            raise ValueError(
                f"GRL: window_size {window_size} and stripe_size {list(stripe)} must be multiples of "
                f"anchor_window_down_factor {df}"
            )
        self.upscale, self.img_range = int(upscale), float(img_range)
        self.window_size, self.stripe, self.df = int(window_size), stripe, df
        self.mean = (
            torch.zeros(1, 1, 1, 1)
            if in_chans != 3
            else torch.tensor([0.4488, 0.4371, 0.4040]).view(1, 3, 1, 1)
        )
        self.pad_size = max(self.window_size, max(stripe))
        self.input_resolution = (int(img_size), int(img_size))
        self.conv_first = nn.Conv2d(in_chans, embed_dim, 3, 1, 1)
        self.norm_start = nn.LayerNorm(embed_dim)
        dpr = [float(v) for v in torch.linspace(0, drop_path_rate, sum(depths), device="cpu")]
        for k, v in self._tables(self.input_resolution, None).items():
            self.register_buffer(k, v)
        self.layers = nn.ModuleList(
            _Stage(
                embed_dim,
                depths[i],
                dpr[sum(depths[:i]) : sum(depths[: i + 1])],
                num_heads_window[i],
                num_heads_stripe[i],
                self.window_size,
                stripe,
                mlp_ratio,
                qkv_bias,
                anchor_proj_type,
                df,
                local_connection,
            )
            for i in range(len(depths))
        )
        self.norm_end = nn.LayerNorm(embed_dim)
        self.conv_after_body = nn.Conv2d(embed_dim, embed_dim, 3, 1, 1)
        self.conv_before_upsample = nn.Sequential(
            nn.Conv2d(embed_dim, 64, 3, 1, 1), nn.LeakyReLU(inplace=True)
        )
        up: list[nn.Module] = []
        for _ in range(int(upscale).bit_length() - 1):
            up += [nn.Conv2d(64, 256, 3, 1, 1), PixelShuffle(2)]
        self.upsample = _Upsample(up)
        self.conv_last = nn.Conv2d(64, in_chans, 3, 1, 1)
        self._cache: dict[tuple[int, int, str], dict[str, torch.Tensor]] = {}
        self.apply(init_transformer_weights)

    def _tables(self, size: tuple[int, int], device: torch.device | None) -> dict[str, torch.Tensor]:
        d = table_index_mask(size, self.window_size, self.stripe, self.df, device=device)
        return {k: d[k] for k in BUFFER_NAMES}

    def _tables_for(self, size: tuple[int, int], device: torch.device) -> dict[str, torch.Tensor]:
        if size == self.input_resolution:
            return {k: getattr(self, k) for k in BUFFER_NAMES}
        key = (size[0], size[1], str(device))
        if key not in self._cache:
            self._cache[key] = {k: v.to(device) for k, v in self._tables(size, None).items()}
        return self._cache[key]

    def _pad(self, x: torch.Tensor) -> torch.Tensor:
        h, w = x.shape[2:]
        p = self.pad_size
        pad = (0, (p - w % p) % p, 0, (p - h % p) % p)
        try:
            return F.pad(x, pad, "reflect")
        except RuntimeError:  # reflect needs pad < size: the original falls back to zeros
            return F.pad(x, pad, "constant")

    def _features(self, x: torch.Tensor) -> torch.Tensor:
        size = (x.shape[2], x.shape[3])
        t = self.norm_start(x.flatten(2).transpose(1, 2))
        tim = self._tables_for(size, x.device)
        for layer in self.layers:
            t = layer(t, size, tim)
        t = self.norm_end(t)
        b, _, c = t.shape
        return t.transpose(1, 2).view(b, c, size[0], size[1])

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        """LR ``(B, C, h, w)`` -> SR ``(B, C, s*h, s*w)``."""
        h, w = x.shape[2:]
        x = self._pad(x)
        mean = self.mean.to(x)
        x = (x - mean) * self.img_range
        x = self.conv_first(x)
        x = self.conv_after_body(self._features(x)) + x
        x = self.conv_last(self.upsample(self.conv_before_upsample(x)))
        x = x / self.img_range + mean
        return x[:, :, : h * self.upscale, : w * self.upscale]


_DEFAULTS: dict[str, Any] = {
    "img_size": None,
    "window_size": 8,
    "img_range": 1.0,
    "depths": [4, 4, 8, 8, 8, 4, 4],
    "embed_dim": 180,
    "num_heads_window": [3] * 7,
    "num_heads_stripe": [3] * 7,
    "mlp_ratio": 2,
    "upsampler": "pixelshuffle",
    "qkv_proj_type": "linear",
    "anchor_proj_type": "avgpool",
    "anchor_window_down_factor": 2,
    "out_proj_type": "linear",
    "conv_type": "1conv",
    "local_connection": True,
    "stripe_size": [8, 8],
    "qkv_bias": True,
    "drop_path_rate": 0.1,
}
_ONLY = {
    "upsampler": "pixelshuffle",
    "qkv_proj_type": "linear",
    "out_proj_type": "linear",
    "conv_type": "1conv",
}


@register_model(
    "grl",
    family="post-upsampling",
    display_name="GRL",
    table_rank=5,
    paper="GRL, Li et al., CVPR 2023",
    tiny={
        "embed_dim": 36,
        "depths": [2, 1],
        "num_heads_window": [3, 3],
        "num_heads_stripe": [3, 3],
        "img_size": 16,
        "drop_path_rate": 0.0,
    },
    hparams=_DEFAULTS,
    reach=None,
    input_grid=8,
    global_reason="channel attention (global average pooling) in every block",
)
def build(scale: int, in_channels: int = 1, **overrides: Any) -> nn.Module:
    """Build the benchmark's GRL ("Big") for ``scale`` (img_size = 128 // scale unless overridden).

    Raises
    ------
    ValueError
        Unknown override, or a choice other than the benchmark's for a fixed option (``upsampler``,
        ``qkv_proj_type``, ``out_proj_type``, ``conv_type``), or an ``anchor_proj_type`` that is not a pool.
    """
    cfg = resolve_hparams("grl", _DEFAULTS, overrides)
    for k, v in _ONLY.items():
        if cfg[k] != v:
            raise ValueError(f"grl: only {k}={v!r} (the benchmark's) is implemented, got {cfg[k]!r}")
    if cfg["anchor_proj_type"] not in ("avgpool", "maxpool"):
        raise ValueError(
            f"grl: anchor_proj_type must be 'avgpool' or 'maxpool', got {cfg['anchor_proj_type']!r}"
        )
    if scale & (scale - 1) or scale < 2:
        raise ValueError(f"grl: scale must be a power of 2 (pixelshuffle upsampler), got {scale}")
    img_size = cfg["img_size"] if cfg["img_size"] is not None else 128 // int(scale)
    kwargs = constructor_kwargs(cfg, drop=("img_size", *_ONLY))
    return GRL(int(scale), in_chans=in_channels, img_size=img_size, **kwargs)
