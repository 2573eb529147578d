"""Image borders in a bioimage.io package: the consumer's halo padding is cut off before the network.

A package with an output halo is run by bioimage.io consumers on an input padded by the input halo
on every side of the *image* (and, when tiled, on the image-side edges of border tiles), then the
output halo is cropped. The toolkit's own prediction pads nothing: each network's convolutions
zero-pad at the image border. The package therefore declares constant padding with grey level 255
(`PAD_VALUE`), and its network cuts off every whole edge row / column that holds only that value
(1.0 after the package's pre-processing; tiles near the image border hold part of the padded
strip) before running, then fills the matching output strip with 1.0 (which the consumer crops):
border pixels then equal whole-image prediction, as inside.

A real row saturated (255) across a whole tile edge would be taken for padding (its output stays
saturated: the fill value); consumers that pad otherwise (deepImageJ mirrors) see ordinary context.
`BorderCut` is TorchScript-compatible: the package's TorchScript weights script it around the
traced network; the ``pytorch_state_dict`` file wraps the built network's ``forward`` with
`cut_and_run` (state_dict unchanged), this module's source embedded.
"""

from __future__ import annotations

from collections.abc import Callable
from typing import List  # noqa: UP035 - TorchScript reads typing.List

import torch
import torch.nn.functional as F
from torch import nn

__all__ = ["PAD_VALUE", "THRESHOLD", "border_pads", "restore", "cut_and_run", "BorderCut"]

PAD_VALUE = 255
"""Grey level the package asks consumers to pad with (raw input, before the /255 scaling)."""

THRESHOLD = 254.5 / 255.0
"""Network-input value at or above which a pixel counts as padding (1.0 after scaling)."""


def _run_length(flags: torch.Tensor) -> int:
    """Number of leading True values of a 1-D bool tensor."""
    return int(torch.cumprod(flags.to(torch.int32), 0).sum())


def border_pads(x: torch.Tensor, halo: int, threshold: float) -> List[int]:  # noqa: UP006
    """``[left, right, top, bottom]`` LR px of consumer padding on the edges of ``x`` (1, C, h, w).

    Every whole row / column of padding at an edge is counted: a consumer pads the image by the halo,
    and its tiles near the image border hold any part of that strip (or more, past the image end).
    `halo` <= 0 turns the cut off.
    """
    pads = [0, 0, 0, 0]
    if halo <= 0:
        return pads
    pad = (x >= threshold).all(dim=1)[0]  # (h, w)
    rows = pad.all(dim=1)
    cols = pad.all(dim=0)
    runs = [_run_length(cols), _run_length(cols.flip(0)), _run_length(rows), _run_length(rows.flip(0))]
    for i in range(4):
        pads[i] = runs[i]
    if pads[0] + pads[1] >= x.shape[3] or pads[2] + pads[3] >= x.shape[2]:  # all padding: run as it is
        return [0, 0, 0, 0]
    return pads


def restore(y: torch.Tensor, pads: List[int], scale: int) -> torch.Tensor:  # noqa: UP006
    """Output `y` of the cut input, grown back by ``scale · pads`` filled with 1.0 (what a saturated
    input strip, the one thing mistaken for padding, would give; the consumer crops the rest)."""
    return F.pad(y, [pads[0] * scale, pads[1] * scale, pads[2] * scale, pads[3] * scale], value=1.0)


def cut_and_run(net: Callable[[torch.Tensor], torch.Tensor], x: torch.Tensor, halo: int, scale: int,
                threshold: float) -> torch.Tensor:  # fmt: skip
    """`net` on each item of ``x`` (B, C, h, w) without its padding strips (`border_pads`, `restore`)."""
    outs = []
    for i in range(x.shape[0]):
        xi = x[i : i + 1]
        p = border_pads(xi, halo, threshold)
        outs.append(restore(net(xi[:, :, p[2] : xi.shape[2] - p[3], p[0] : xi.shape[3] - p[1]]), p, scale))
    return torch.cat(outs, 0)


class BorderCut(nn.Module):
    """`cut_and_run` as a TorchScript-compatible module around a (traced) network."""

    def __init__(self, net: nn.Module, halo: int, scale: int, threshold: float = THRESHOLD) -> None:
        super().__init__()
        self.net = net
        self.halo = int(halo)
        self.scale = int(scale)
        self.threshold = float(threshold)

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        outs: List[torch.Tensor] = []  # noqa: UP006
        for i in range(x.shape[0]):
            xi = x[i : i + 1]
            p = border_pads(xi, self.halo, self.threshold)
            core = xi[:, :, p[2] : xi.shape[2] - p[3], p[0] : xi.shape[3] - p[1]]
            outs.append(restore(self.net(core), p, self.scale))
        return torch.cat(outs, 0)
