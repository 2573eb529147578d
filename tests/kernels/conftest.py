"""Fixtures for the kernel tests: seeded random and microscopy-like image pairs (CPU, tiny)."""

from __future__ import annotations

import pytest
import torch


def microscopy_like(shape: tuple[int, ...], seed: int) -> torch.Tensor:
    """(B, C, H, W) float64 in [0, 1]: dark background (≈0.01), a few bright Gaussian blobs, noise."""
    g = torch.Generator().manual_seed(seed)
    b, c, h, w = shape
    yy, xx = torch.meshgrid(
        torch.arange(h, dtype=torch.float64), torch.arange(w, dtype=torch.float64), indexing="ij"
    )
    out = torch.full(shape, 0.01, dtype=torch.float64)
    for i in range(b):
        for j in range(c):
            for _ in range(4):
                cy, cx = torch.rand(2, generator=g, dtype=torch.float64) * torch.tensor([h, w])
                rad = 1.5 + 3 * torch.rand((), generator=g, dtype=torch.float64)
                amp = 0.4 + 0.6 * torch.rand((), generator=g, dtype=torch.float64)
                out[i, j] += amp * torch.exp(-((yy - cy) ** 2 + (xx - cx) ** 2) / (2 * rad**2))
    out += 0.01 * torch.randn(shape, generator=g, dtype=torch.float64)
    return out.clamp(0, 1)


@pytest.fixture
def pair():
    """Factory: (x, y) float64 pair of `shape`; y = x + noise (correlated, as SR output vs GT)."""

    def make(shape: tuple[int, ...], seed: int = 0, kind: str = "random") -> tuple[torch.Tensor, ...]:
        g = torch.Generator().manual_seed(seed + 1000)
        if kind == "random":
            x = torch.rand(shape, generator=g, dtype=torch.float64)
        else:
            x = microscopy_like(shape, seed)
        y = (x + 0.1 * torch.randn(shape, generator=g, dtype=torch.float64)).clamp(0, 1)
        return x, y

    return make
