"""Tiny configurations, smallest inputs and receptive halos of the registered networks (thin readers).

Every fact here is declared once, at each network's registration (`srcaco2.trainers.models.registry.
register_model`); these functions keep the names the tests and benchmarks import:

* `tiny_overrides` / `TINY_OVERRIDES`: architecture overrides for `build_model` that keep every
  code path of the network but shrink widths and depths (a CPU forward on ~24x24 takes ms);
* `min_input_size`: the smallest LR side ``n`` for which an ``n x n`` input is accepted;
* `receptive_halo`: the receptive-field radius in LR pixels (computed layer by layer by
  `srcaco2.trainers.models._reach`), None for the networks in `GLOBAL_MODELS`.

Nothing runs at import; `TINY_OVERRIDES` and `GLOBAL_MODELS` are computed on first use.
"""

from __future__ import annotations

from collections.abc import Mapping
from typing import Any

from srcaco2.trainers.models.registry import available_models, model_info

__all__ = [  # noqa: F822 - TINY_OVERRIDES and GLOBAL_MODELS are computed on first use
    "TINY_OVERRIDES", "tiny_overrides", "min_input_size", "receptive_halo", "GLOBAL_MODELS",
]  # fmt: skip


def tiny_overrides(name: str, scale: int) -> dict[str, Any]:
    """The tiny overrides of `name` at `scale` (a fresh dict, safe to mutate).

    Parameters
    ----------
    name : str
        A registered model name (`srcaco2.trainers.models.MODEL_NAMES`), case-insensitive.
    scale : int
        Upscaling factor (2, 4, 8).

    Returns
    -------
    dict
        Keyword overrides for ``build_model(name, scale, **overrides)``.

    Raises
    ------
    KeyError
        `name` is not registered (`UnknownModelError`, with the closest names).
    """
    return model_info(name).tiny_overrides(scale)


def min_input_size(name: str, overrides: Mapping[str, Any] | None = None) -> int:
    """Smallest LR side ``n`` such that the network accepts an ``n x n`` input (eval mode).

    Parameters
    ----------
    name : str
        Registered model name.
    overrides : mapping, optional
        The architecture overrides the network is built with (default: the benchmark's network).

    Returns
    -------
    int
        LR pixels. NLSN needs ``h * w >= chunk_size`` (144; the side given is for a square input),
        ACT ``h, w >= 2 * token_size`` (6), OmniSR a zero-padded size ``>= 15`` (9 with window 8),
        SwinIR 3 (its reflect padding to the window multiple needs 3 rows after the mirror
        extension), ProSR 2 (reflection padding of the first conv); every other network 1.
    """
    return model_info(name).min_input_size(overrides)


def receptive_halo(name: str, scale: int = 4, overrides: Mapping[str, Any] | None = None) -> int | None:
    """Receptive-field radius in LR pixels of a local network, None for a global one.

    A halo of at least this many LR pixels around every tile (crops starting on the network's
    `input_grid`) makes `srcaco2.trainers.predict.predict_tiled` equal to whole-image inference (up to
    float rounding). For example the benchmark's DRRN (52 HR convolutions of 3x3 after bicubic)
    has ``receptive_halo("drrn", 4) == 15``.

    Parameters
    ----------
    name : str
        Registered model name.
    scale : int
        Upscaling factor (strided projections and interpolations depend on it).
    overrides : mapping, optional
        Architecture overrides (depths matter; widths do not). Default: the benchmark's network.
    """
    return model_info(name).receptive_halo(scale, overrides)


def __getattr__(attr: str) -> Any:  # PEP 562: derived tables, computed from the registry on use
    if attr == "TINY_OVERRIDES":
        # scale-independent view (ProSR's level_config depends on the scale: use tiny_overrides)
        return {i.name: {k: v for k, v in i.tiny_overrides(4).items() if k != "level_config"}
                for i in available_models()}  # fmt: skip
    if attr == "GLOBAL_MODELS":
        return frozenset(i.name for i in available_models() if i.is_global)
    raise AttributeError(f"module {__name__!r} has no attribute {attr!r}")
