"""Shared EDSR-style building blocks (conv, ResBlock, Upsampler, MeanShift).

Used by NLSN, ENLCN, EDSR-LIIF and ACT, whose original implementations all descend from the EDSR
code base (Lim et al., CVPRW 2017). The module layouts (``Sequential`` indices) are chosen so that
state_dict keys match the benchmark's checkpoints exactly:

- `ResBlock`: ``body.0`` conv, ``body.1`` activation, ``body.2`` conv; ``out = body(x) * res_scale + x``.
- `Upsampler`: ``log2(s)`` stages of ``[conv(n, 4n, 3), PixelShuffle(2)]`` (keys ``0, 2, 4``) for
  ``s`` a power of two, one ``[conv(n, 9n, 3), PixelShuffle(3)]`` stage for ``s = 3``.
- `MeanShift`: a frozen 3-channel 1x1 conv. The benchmark builds it (so it is in the state_dict, with
  ``requires_grad=False``) but never applies it (docs/protocol.md#normalisation: inputs are only divided by
  255).
"""

from __future__ import annotations

import math
from collections.abc import Callable

import torch
from torch import nn

from srcaco2.kernels.pixel_shuffle import PixelShuffle

__all__ = [
    "default_conv",
    "MeanShift",
    "ResBlock",
    "Upsampler",
    "attention_edsr_parts",
]

_RGB_MEAN = (0.4488, 0.4371, 0.4040)
_RGB_STD = (1.0, 1.0, 1.0)


def default_conv(in_channels: int, out_channels: int, kernel_size: int, bias: bool = True) -> nn.Conv2d:
    """``nn.Conv2d`` with stride 1 and 'same' zero padding ``kernel_size // 2`` (EDSR's default conv)."""
    return nn.Conv2d(in_channels, out_channels, kernel_size, padding=kernel_size // 2, bias=bias)


class MeanShift(nn.Conv2d):
    """Frozen 3-channel 1x1 conv adding ``sign * rgb_range * mean / std`` (built, never applied).

    Parameters
    ----------
    rgb_range : float
        Intensity range of the images (1.0 in the benchmark).
    sign : int
        -1 subtracts the mean (``sub_mean``), +1 adds it back (``add_mean``).

    Notes
    -----
    Always 3 channels, even for 1-channel networks: the benchmark's checkpoints hold
    ``weight (3, 3, 1, 1)`` and ``bias (3,)`` for ``sub_mean``/``add_mean``. No network of this
    toolkit calls it in ``forward`` (the original code has those calls commented out).
    """

    def __init__(self, rgb_range: float = 1.0, sign: int = -1) -> None:
        super().__init__(3, 3, kernel_size=1)
        if self.weight.device.type != "meta":
            std = torch.tensor(_RGB_STD)
            with torch.no_grad():
                self.weight.copy_(torch.eye(3).view(3, 3, 1, 1) / std.view(3, 1, 1, 1))
                self.bias.copy_(sign * rgb_range * torch.tensor(_RGB_MEAN) / std)
        for p in self.parameters():
            p.requires_grad = False


class ResBlock(nn.Module):
    """EDSR residual block: conv, activation, conv; ``out = body(x) * res_scale + x``.

    Parameters
    ----------
    n_feats : int
        Channels in and out.
    kernel_size : int
        Square kernel size of both convs (3 in EDSR/NLSN/ENLCN, 5 in ACT's head).
    res_scale : float
        Residual scaling (0.1 in NLSN/ENLCN, 1 elsewhere).
    bias : bool
        Conv biases.
    """

    def __init__(
        self, n_feats: int, kernel_size: int = 3, *, res_scale: float = 1.0, bias: bool = True
    ) -> None:
        super().__init__()
        self.body = nn.Sequential(
            default_conv(n_feats, n_feats, kernel_size, bias=bias),
            nn.ReLU(inplace=True),
            default_conv(n_feats, n_feats, kernel_size, bias=bias),
        )
        self.res_scale = float(res_scale)

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        res = self.body(x).mul(self.res_scale)
        res += x
        return res


class Upsampler(nn.Sequential):
    """Sub-pixel upsampler: ``log2(scale)`` stages of conv(n, 4n, 3) + PixelShuffle(2) (or one x3 stage).

    Parameters
    ----------
    scale : int
        2, 4, 8 (any power of two) or 3.
    n_feats : int
        Feature channels (kept after every stage).

    Raises
    ------
    ValueError
        Scale not a power of two nor 3.
    """

    def __init__(self, scale: int, n_feats: int, *, bias: bool = True) -> None:
        m: list[nn.Module] = []
        if scale >= 1 and (scale & (scale - 1)) == 0:
            for _ in range(int(math.log2(scale))):
                m.append(default_conv(n_feats, 4 * n_feats, 3, bias=bias))
                m.append(PixelShuffle(2))
        elif scale == 3:
            m.append(default_conv(n_feats, 9 * n_feats, 3, bias=bias))
            m.append(PixelShuffle(3))
        else:
            raise ValueError(f"Upsampler supports scale 3 or a power of two (2, 4, 8), got scale={scale!r}")
        super().__init__(*m)


def attention_edsr_parts(
    *,
    upscale: int,
    in_chans: int,
    n_resblocks: int,
    n_feats: int,
    res_scale: float,
    img_range: float,
    attention: Callable[[], nn.Module],
) -> tuple[MeanShift, nn.Sequential, list[nn.Module], nn.Sequential]:
    """``sub_mean, head, body, tail`` of NLSN / ENLCN, built in the original's order.

    ``head`` = conv(in_chans, n_feats, 3); ``body`` = ``attention()``, then ``n_resblocks``
    ResBlocks (``res_scale``) with one more ``attention()`` after every 8th, then conv(n_feats,
    n_feats, 3); ``tail`` = `Upsampler` + conv(n_feats, in_chans, 3). Construction order (and so
    the global RNG draws at init) is sub_mean, head, body, tail: the caller builds ``add_mean``
    after this and registers the parts in the original's state_dict order.
    """
    sub_mean = MeanShift(img_range, sign=-1)
    head = nn.Sequential(default_conv(in_chans, n_feats, 3))
    body: list[nn.Module] = [attention()]
    for i in range(n_resblocks):
        body.append(ResBlock(n_feats, 3, res_scale=res_scale))
        if (i + 1) % 8 == 0:
            body.append(attention())
    body.append(default_conv(n_feats, n_feats, 3))
    tail = nn.Sequential(Upsampler(int(upscale), n_feats), default_conv(n_feats, in_chans, 3))
    return sub_mean, head, body, tail
