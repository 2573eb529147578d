"""The one place where a model builder merges caller overrides into its hyperparameters.

Every ``build(scale, in_channels=1, **overrides)`` in `srcaco2.trainers.models` calls `resolve_hparams`
with its benchmark defaults, so every network refuses an unknown name the same way:
``ValueError("<model>: unknown override(s) 'x'; allowed overrides: a, b, c (...)")``.
"""

from __future__ import annotations

from collections.abc import Iterable, Mapping
from typing import Any

__all__ = ["resolve_hparams", "constructor_kwargs"]


def resolve_hparams(
    model: str,
    defaults: Mapping[str, Any],
    overrides: Mapping[str, Any],
    *,
    fixed: Mapping[str, Any] | None = None,
) -> dict[str, Any]:
    """Merge `overrides` into a copy of `defaults`, refusing unknown or builder-set names.

    Parameters
    ----------
    model : str
        Registry name, for the error messages.
    defaults : mapping
        Every overridable hyperparameter with the benchmark's value (may also hold the `fixed`
        names, whose defaults are then replaced).
    overrides : mapping
        Caller's values; ``None`` values are ignored (keep the default), as in `build_model`.
    fixed : mapping, optional
        Hyperparameters the builder sets from its own arguments (e.g. ``{"upscale": scale,
        "in_chans": in_channels}``): they are written into the result and cannot be overridden.

    Returns
    -------
    dict
        ``defaults`` updated with the non-None `overrides`, then with `fixed`.

    Raises
    ------
    ValueError
        An override name that is not in `defaults`, or one of the `fixed` names; the message
        lists the allowed names.
    """
    fixed = dict(fixed or {})
    allowed = ", ".join(sorted(k for k in defaults if k not in fixed)) or "(none)"
    given = {k: v for k, v in overrides.items() if v is not None}
    clash = sorted(set(given) & set(fixed))
    if clash:
        raise ValueError(
            f"{model}: override(s) {', '.join(map(repr, clash))} are set by the builder arguments "
            f"(scale / in_channels), not by overrides; allowed overrides: {allowed}"
        )
    unknown = sorted(set(overrides) - set(defaults) - set(fixed))
    if unknown:
        raise ValueError(
            f"{model}: unknown override(s) {', '.join(map(repr, unknown))}; allowed overrides: {allowed} "
            "(pass only these allowed names, or none for the benchmark's configuration)"
        )
    return {**defaults, **given, **fixed}


def constructor_kwargs(hp: Mapping[str, Any], drop: Iterable[str] = ()) -> dict[str, Any]:
    """`hp` without the names in `drop` (builder-only options), sequences copied as lists.

    The copies keep a network from sharing (and possibly mutating) a builder's module-level
    default lists.
    """
    dropped = set(drop)
    return {k: list(v) if isinstance(v, (list, tuple)) else v for k, v in hp.items() if k not in dropped}
