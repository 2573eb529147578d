"""How an LR image is cut into tiles for exact whole-image inference (defaults from the registry).

`plan_tiling` turns a network's registration (`ModelInfo.receptive_halo`, `ModelInfo.input_grid`)
into a `Tiling`: core side, overlap, halo and crop grid, and whether the tiled result equals
whole-image inference. `tile_starts` and `blend_ramp` are the geometry `srcaco2.trainers.predict` uses.
"""

from __future__ import annotations

import dataclasses
import math
from collections.abc import Mapping
from typing import Any

import numpy as np

__all__ = [
    "DEFAULT_TILE",
    "DEFAULT_OVERLAP",
    "INPUT_GRID",  # noqa: F822 - derived from the registry on first use
    "Tiling",
    "plan_tiling",
    "input_grid",
    "tile_starts",
    "blend_ramp",
    "halo_table",
]

DEFAULT_TILE = 128
"""Smallest default core side, LR px (`plan_tiling` grows it to ``2 · halo`` for deep networks)."""
DEFAULT_OVERLAP = 16
"""Default blending overlap between cores, LR px."""


def __getattr__(attr: str) -> Any:  # PEP 562: a derived table, computed on first use
    if attr == "INPUT_GRID":
        from srcaco2.trainers.models import available_models

        return {i.name: i.input_grid for i in available_models() if i.input_grid > 1}
    raise AttributeError(f"module {__name__!r} has no attribute {attr!r}")


def input_grid(method: str) -> int:
    """Crop alignment (LR px) for `method`: its `ModelInfo.input_grid` (1 for unregistered names)."""
    from srcaco2.trainers.models import UnknownModelError, model_info

    try:
        return model_info(str(method)).input_grid
    except UnknownModelError:
        return 1


@dataclasses.dataclass(frozen=True)
class Tiling:
    """How an image is cut into tiles (all LR pixels).

    Attributes
    ----------
    tile : int
        Core side.
    overlap : int
        Overlap of neighbouring cores (blended with linear ramps).
    halo : int or None
        Discarded context on every side; None = the whole image (one forward).
    align : int
        Crops start on multiples of it (the network's window grid).
    receptive_halo : int or None
        The network's receptive reach at this scale (None: global network or unknown model).
    exact : bool
        True when tiled inference equals whole-image inference (halo >= reach, or whole image).
    """

    tile: int
    overlap: int
    halo: int | None
    align: int
    receptive_halo: int | None
    exact: bool

    def to_json(self) -> dict[str, Any]:
        """A JSON-ready dict (recorded beside every prediction)."""
        return dataclasses.asdict(self)


def plan_tiling(
    method: str | None,
    scale: int,
    *,
    overrides: Mapping[str, Any] | None = None,
    tile: int | None = None,
    overlap: int | None = None,
    halo: int | None = None,
    whole: bool = False,
) -> Tiling:
    """Tiling defaults for `method` at `scale`, from its registration; explicit values win.

    Parameters
    ----------
    method : str or None
        Registry name; None (an unregistered model) needs an explicit `halo`.
    scale : int
        Upscaling factor (the reach depends on it).
    overrides : mapping, optional
        Architecture overrides the network was built with (depths change the reach).
    tile, overlap, halo : int, optional
        Explicit core side, overlap and halo (LR px). Default halo: the network's receptive halo;
        for a global network, the whole image. Default tile: ``max(128, 2 · halo)`` rounded up to
        the grid, so that a core's side is at least half its crop's. Default overlap: min(16, tile // 4).
    whole : bool
        Force whole-image context (``halo=None``) whatever the network.

    Returns
    -------
    Tiling

    Raises
    ------
    ValueError
        No `method` and no `halo`; negative values; ``overlap >= tile``.
    """
    reach: int | None = None
    align = 1
    if method is not None:
        from srcaco2.trainers.models import model_info

        info = model_info(method)
        reach = info.receptive_halo(scale, overrides)
        align = info.input_grid
        if halo is None and not whole and reach is None:
            whole = True  # a global network: no finite halo is exact
    elif halo is None and not whole:
        raise ValueError("plan_tiling: give the registry name (method=) or an explicit halo")
    use_halo = None if whole else (reach if halo is None else int(halo))
    if use_halo is not None and use_halo < 0:
        raise ValueError(f"halo must be >= 0 LR px, got {use_halo}")
    if tile is None:
        tile = max(DEFAULT_TILE, 2 * (use_halo or 0))
        tile = math.ceil(tile / align) * align
    if overlap is None:
        overlap = min(DEFAULT_OVERLAP, tile // 4)
    if tile <= overlap or overlap < 0:
        raise ValueError(f"need tile > overlap >= 0 LR px, got tile={tile}, overlap={overlap}")
    exact = use_halo is None or (reach is not None and use_halo >= reach)
    return Tiling(int(tile), int(overlap), use_halo, int(align), reach, bool(exact))


def tile_starts(n: int, tile: int, overlap: int) -> list[int]:
    """Start offsets of cores of side `tile` covering ``[0, n)`` with at least `overlap` overlap.

    The last core is shifted back so it ends at `n` (all cores have the same size when n >= tile).

    Examples
    --------
    >>> tile_starts(100, 40, 8)
    [0, 32, 60]
    >>> tile_starts(30, 40, 8)
    [0]
    """
    if tile <= 0 or overlap < 0 or overlap >= tile:
        raise ValueError(f"need tile > overlap >= 0, got tile={tile}, overlap={overlap}")
    if n <= tile:
        return [0]
    step = tile - overlap
    starts = list(range(0, n - tile, step))
    starts.append(n - tile)
    return starts


def blend_ramp(length: int, ramp: int, *, taper_start: bool, taper_end: bool) -> np.ndarray:
    """1-D blending weights of one core: linear ramps of `ramp` pixels on the tapered sides.

    Returns (length,) float32 in (0, 1]; ``w[i] = (i + 0.5) / ramp`` near a tapered start, the
    mirror near a tapered end, 1 elsewhere. Two cores overlapping by `ramp` pixels therefore have
    weights summing to 1 across the seam.
    """
    w = np.ones(length, dtype=np.float32)
    if ramp > 0:
        r = (np.arange(min(ramp, length), dtype=np.float32) + 0.5) / ramp
        if taper_start:
            w[: len(r)] = np.minimum(w[: len(r)], r)
        if taper_end:
            w[length - len(r) :] = np.minimum(w[length - len(r) :], r[::-1])
    return w


def halo_table() -> list[str]:
    """Lines of the per-network default-halo table (``srtrain predict --help``): halo at x2/x4/x8 in
    LR px, or "whole image (global)", and the input grid."""
    from srcaco2.trainers.models import available_models

    lines = ["network     halo x2/x4/x8 (LR px)  grid"]
    for i in available_models():
        halos = (
            "whole image (global)" if i.is_global else "/".join(str(i.receptive_halo(s)) for s in (2, 4, 8))
        )
        lines.append(f"{i.name:<11} {halos:<22} {i.input_grid}")
    return lines
