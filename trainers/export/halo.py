"""The smallest tiling halo that keeps tiled prediction within 1 grey level of whole-image prediction.

Used by `srcaco2.trainers.export.bioimageio_package` when a network's receptive halo does not fit the
package's minimum input (the real sample's LR side at the network's scale): the halo is then
measured with the exported weights on the real sample, with small tiles (cores of ``min_input -
2·halo`` LR px, at least half the minimum input), by `srcaco2.trainers.predict.predict_tiled`.
"""

from __future__ import annotations

from typing import Any

import numpy as np

__all__ = ["measured_halo", "CANDIDATES"]

CANDIDATES = (0, 2, 4, 6, 8, 12, 16, 24, 32, 48, 64, 96, 128, 192)
"""Halos tried, LR px, in increasing order (plus the largest that fits)."""


def measured_halo(
    model: Any, lr: np.ndarray, scale: int, *, step: int, min_input: int, h_max: int
) -> tuple[int, float]:
    """``(halo, max difference)``: the smallest candidate halo (LR px) whose tiled prediction of `lr`
    differs from the whole-image one by at most 1 grey level (found by bisection over `CANDIDATES`),
    else `h_max` and its difference.

    Parameters
    ----------
    model : callable
        ``(B, 1, h, w)`` float32 in [0, 1] -> ``(B, 1, s·h, s·w)``, eval mode.
    lr : (H, W) uint8
        The test image (LR px).
    scale : int
    step : int
        The network's input grid (halos and cores are multiples of it, so tiles start on it).
    min_input : int
        The package's smallest input side (a core is ``min_input - 2·halo`` LR px).
    h_max : int
        Largest halo that leaves a core of at least `step` px.
    """
    from srcaco2.trainers.predict import predict_tiled

    data = np.asarray(lr, np.uint8)[None]
    whole = predict_tiled(model, data, scale, halo=None).astype(np.int16)
    cache: dict[int, float] = {}

    def worst(h: int) -> float:
        if h not in cache:
            # the smallest tiles a consumer may use, but at least half the minimum input: the error
            # comes from the context cut at `h`, and slivers of core would cost O(image²) forwards
            core = max(min_input - 2 * h, min_input // 2) // step * step
            tiled = predict_tiled(model, data, scale, tile=max(core, step), overlap=0, halo=h, align=step)
            cache[h] = float(np.abs(tiled.astype(np.int16) - whole).max())
        return cache[h]

    halos = sorted({c for c in CANDIDATES if c < h_max and c % step == 0} | {h_max})
    lo, hi = 0, len(halos) - 1  # bisection: the error does not grow with the halo
    if worst(halos[hi]) > 1:
        return h_max, worst(h_max)
    while lo < hi:
        mid = (lo + hi) // 2
        if worst(halos[mid]) <= 1:
            hi = mid
        else:
            lo = mid + 1
    return halos[lo], worst(halos[lo])
