"""Pixel shuffle (placeholder: torch path only until the Triton kernel lands)."""

from __future__ import annotations

import torch
from torch import nn

__all__ = ["pixel_shuffle", "PixelShuffle"]


def pixel_shuffle(x: torch.Tensor, r: int) -> torch.Tensor:
    """(B, C·r², H, W) -> (B, C, r·H, r·W), equal to `torch.nn.functional.pixel_shuffle`."""
    return torch.nn.functional.pixel_shuffle(x, r)


class PixelShuffle(nn.Module):
    """Drop-in for `torch.nn.PixelShuffle` (no parameters, so state_dict layouts are unchanged)."""

    def __init__(self, upscale_factor: int) -> None:
        super().__init__()
        self.upscale_factor = int(upscale_factor)

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        return pixel_shuffle(x, self.upscale_factor)

    def extra_repr(self) -> str:
        return f"upscale_factor={self.upscale_factor}"
