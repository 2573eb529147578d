"""Model registry: one name -> one builder with every fact the toolkit needs; `build_model` is the way in.

Each network lives in its own module ``trainers/models/<name>.py`` (the module name is the
registry name; private helpers start with ``_``). Modules are found by listing the package
folder (no import) and imported lazily on first use, so one broken family never breaks the others
and ``import srcaco2.trainers.models`` stays cheap. A module registers its builder with `register_model`,
declaring there, once, what the rest of the toolkit derives from it:

* ``family`` and ``display_name`` (the paper's Tables 4/5 grouping and spelling), ``table_rank``
  (the row order inside the family);
* the receptive reach (``reach(scale, hp)``, in LR pixels, what `srcaco2.trainers.predict` uses as its
  default halo) or, for a network whose output depends on the whole image, ``global_reason``;
* ``input_grid`` (the window / token grid crops must start on), ``min_input`` (smallest side);
* ``multi_output``, ``pre_upsampling``;
* ``tiny`` (small-width overrides for tests and CPU benchmarks) and ``hparams(scale)`` (the
  benchmark's hyperparameters, that the reach is computed from).

A builder has the signature ``builder(scale: int, in_channels: int = 1, **overrides) ->
torch.nn.Module`` and, with no overrides, builds exactly the benchmark's network (state_dict keys,
shapes, dtypes and parameter count of ``trainers/models/reference/<name>_x<scale>.json``).
Adding a network is one module plus its reference JSON files.
"""

from __future__ import annotations

import copy
import dataclasses
import difflib
import importlib
import json
import logging
import pkgutil
from collections.abc import Callable, Mapping
from pathlib import Path
from typing import Any

__all__ = [
    "FAMILIES",
    "ModelInfo",
    "UnknownModelError",
    "register_model",
    "build_model",
    "available_models",
    "model_names",
    "model_info",
    "reference_layout",
    "MODEL_NAMES",  # noqa: F822 - computed on first use (module __getattr__)
]

FAMILIES: tuple[str, ...] = (
    "bicubic",
    "pre-upsampling",
    "post-upsampling",
    "iterative up-and-down",
    "progressive",
)
"""The paper's Table 4 families, in table order."""

log = logging.getLogger(__name__)

_PACKAGE = "srcaco2.trainers.models"
_DIR = Path(__file__).parent
_NOT_NETWORKS = frozenset({"registry", "tiny"})
_REFERENCE_DIR = _DIR / "reference"


class UnknownModelError(KeyError):
    """No model under that name; the message suggests the closest names."""

    def __str__(self) -> str:  # KeyError quotes its message; show it plainly
        return str(self.args[0])


@dataclasses.dataclass(frozen=True)
class ModelInfo:
    """Everything the toolkit knows about a registered model (declared by `register_model`).

    Attributes
    ----------
    name : str
        Registry name (lowercase, = its module name).
    family : str
        One of `FAMILIES` (the paper's Table 4 grouping).
    display_name : str
        The name as the paper's tables print it (``"MS-LapSRN"``).
    table_rank : int
        Row position inside its family in the paper's tables (0 first).
    paper : str
        Short citation.
    scales : tuple of int
        Scales the builder supports.
    multi_output : bool
        True when `forward` in training mode returns a list of outputs (final last) that the loss
        averages (SRFBN, ProSR, MS-LapSRN); `eval()` mode always returns the final tensor.
    pre_upsampling : str or None
        How the LR input is upsampled before the network (``"opencv_bicubic_uint8"`` for SRCNN,
        ``"torch_bicubic"`` inside forward for VDSR/DRRN/MemNet/ProSR), None for post-upsampling.
    input_grid : int
        LR-pixel grid of the network's windows / tokens (8 for SwinIR's 8x8 windows, 3 for ACT's
        3x3 tokens, 1 for convolutional networks): crops that start on a multiple of it see the
        windows at the same phase as whole-image inference.
    global_reason : str or None
        Why the output depends on the whole image (no finite receptive halo), None for a network
        with a finite reach.
    """

    name: str
    family: str
    display_name: str
    table_rank: int
    paper: str
    scales: tuple[int, ...]
    multi_output: bool
    pre_upsampling: str | None
    input_grid: int
    global_reason: str | None
    _tiny: Callable[[int], dict[str, Any]] = dataclasses.field(repr=False, compare=False)
    _hparams: Callable[[int], dict[str, Any]] = dataclasses.field(repr=False, compare=False)
    _reach: Callable[[int, dict[str, Any]], Any] | None = dataclasses.field(repr=False, compare=False)
    _min_input: Callable[[dict[str, Any]], int] = dataclasses.field(repr=False, compare=False)

    @property
    def is_global(self) -> bool:
        """True when no finite halo makes tiled inference exact (see `global_reason`)."""
        return self.global_reason is not None

    def hparams(self, scale: int, overrides: Mapping[str, Any] | None = None) -> dict[str, Any]:
        """The builder's hyperparameters at `scale` (benchmark defaults updated with non-None `overrides`)."""
        hp = copy.deepcopy(self._hparams(int(scale)))
        hp.update({k: copy.deepcopy(v) for k, v in (overrides or {}).items() if v is not None})
        return hp

    def tiny_overrides(self, scale: int) -> dict[str, Any]:
        """Small-width overrides for ``build_model(name, scale, **overrides)`` (a fresh dict).

        They keep every code path of the network (shifted windows, feedback steps, pyramid levels,
        dense connections) but shrink widths and depths, so that a CPU forward on a ~24x24 LR image
        takes milliseconds.
        """
        return copy.deepcopy(self._tiny(int(scale)))

    def receptive_halo(self, scale: int, overrides: Mapping[str, Any] | None = None) -> int | None:
        """Receptive-field radius in LR pixels, None for a global network (`is_global`).

        Output pixels inside LR pixel ``(y, x)`` depend only on LR pixels ``(y + dy, x + dx)``
        with ``|dy|, |dx| <= r``; a tiling halo of ``r`` LR pixels (crops on `input_grid`) makes
        tiled inference equal to whole-image inference.
        """
        if self._reach is None:
            return None
        reach = self._reach(int(scale), self.hparams(scale, overrides))
        return int(reach if isinstance(reach, int) else reach.radius())

    def min_input_size(self, overrides: Mapping[str, Any] | None = None, scale: int = 4) -> int:
        """Smallest LR side ``n`` such that the network accepts an ``n x n`` input (eval mode)."""
        return int(self._min_input(self.hparams(scale, overrides)))


_BUILDERS: dict[str, tuple[ModelInfo, Callable[..., Any]]] = {}


def _as_scale_fn(value: Any) -> Callable[[int], dict[str, Any]]:
    if callable(value):
        return value
    frozen = copy.deepcopy(dict(value))
    return lambda scale: copy.deepcopy(frozen)


def register_model(
    name: str,
    *,
    family: str,
    display_name: str,
    table_rank: int,
    paper: str,
    tiny: Mapping[str, Any] | Callable[[int], dict[str, Any]],
    hparams: Mapping[str, Any] | Callable[[int], dict[str, Any]],
    reach: Callable[[int, dict[str, Any]], Any] | None,
    global_reason: str | None = None,
    input_grid: int = 1,
    min_input: int | Callable[[dict[str, Any]], int] = 1,
    scales: tuple[int, ...] = (2, 4, 8),
    multi_output: bool = False,
    pre_upsampling: str | None = None,
) -> Callable[[Callable[..., Any]], Callable[..., Any]]:
    """Decorator registering ``builder(scale, in_channels=1, **overrides) -> nn.Module`` with its facts.

    Parameters
    ----------
    name : str
        Registry name; must be the module's own name (``trainers/models/<name>.py``).
    family, display_name, table_rank, paper
        See `ModelInfo`.
    tiny : mapping or callable(scale) -> dict
        Small-width overrides for tests and CPU benchmarks.
    hparams : mapping or callable(scale) -> dict
        The builder's benchmark hyperparameters (what `reach` and `min_input` read).
    reach : callable(scale, hp) -> `srcaco2.trainers.models._reach.Reach` or int (LR px), or None
        The receptive reach, computed from the hyperparameters; None exactly when
        `global_reason` is given.
    global_reason : str, optional
        Why no finite halo exists (FFT, global pooling, attention over all positions).
    input_grid : int
        Window / token grid of crops, LR px (1 for convolutional networks).
    min_input : int or callable(hp) -> int
        Smallest accepted LR side.
    scales, multi_output, pre_upsampling
        See `ModelInfo`.

    Raises
    ------
    ValueError
        A second registration under `name`, a name that is not the module's, an unknown family,
        or an inconsistent fact (reach and global_reason both or neither given, grid < 1).
    """

    def wrap(builder: Callable[..., Any]) -> Callable[..., Any]:
        module = builder.__module__
        if name in _BUILDERS:
            first = _BUILDERS[name][1].__module__
            raise ValueError(f"model {name!r} is registered twice ({first}, {module})")
        if family not in FAMILIES:
            raise ValueError(f"model {name!r}: family {family!r} is not one of {list(FAMILIES)}")
        if (reach is None) == (global_reason is None):
            raise ValueError(
                f"model {name!r}: give exactly one of reach= (a local network) or global_reason= "
                "(a network whose output depends on the whole image)"
            )
        if not display_name or int(input_grid) < 1 or int(table_rank) < 0:
            raise ValueError(
                f"model {name!r}: need a display_name, input_grid >= 1 and table_rank >= 0, got "
                f"{display_name!r}, {input_grid!r}, {table_rank!r}"
            )
        if module != f"{_PACKAGE}.{name}":
            raise ValueError(f"model {name!r} must be registered by module {_PACKAGE}.{name}, not {module}")
        min_fn = min_input if callable(min_input) else (lambda hp, n=int(min_input): n)
        info = ModelInfo(
            name=name, family=family, display_name=display_name, table_rank=int(table_rank), paper=paper,
            scales=tuple(scales), multi_output=bool(multi_output), pre_upsampling=pre_upsampling,
            input_grid=int(input_grid), global_reason=global_reason, _tiny=_as_scale_fn(tiny),
            _hparams=_as_scale_fn(hparams), _reach=reach, _min_input=min_fn,
        )  # fmt: skip
        _BUILDERS[name] = (info, builder)
        return builder

    return wrap


def _discover() -> tuple[str, ...]:
    """Names of the network modules in this package (file listing only, nothing imported)."""
    return tuple(
        sorted(
            m.name
            for m in pkgutil.iter_modules([str(_DIR)])
            if not m.name.startswith("_") and m.name not in _NOT_NETWORKS
        )
    )


_ORDERED: tuple[str, ...] | None = None


def model_names() -> tuple[str, ...]:
    """All registered names in the paper's table order (family, then `ModelInfo.table_rank`).

    Imports every network module once (tens of milliseconds). A module that fails to import is
    logged and listed last (building it raises the import error).
    """
    global _ORDERED
    if _ORDERED is None:
        keys: dict[str, tuple[int, int, str]] = {}
        broken = False
        for n in _discover():
            try:
                info = _resolve(n)[0]
                keys[n] = (FAMILIES.index(info.family), info.table_rank, n)
            except Exception as exc:  # one broken module must not hide the others: it goes last
                log.warning("network module %s.%s cannot be imported: %s", _PACKAGE, n, exc)
                keys[n] = (len(FAMILIES), 0, n)
                broken = True
        ordered = tuple(sorted(keys, key=keys.__getitem__))
        if broken:
            return ordered  # not cached: a fixed module is found on the next call
        _ORDERED = ordered
    return _ORDERED


def __getattr__(attr: str) -> Any:  # PEP 562: MODEL_NAMES is computed on first use
    if attr == "MODEL_NAMES":
        return model_names()
    raise AttributeError(f"module {__name__!r} has no attribute {attr!r}")


def _resolve(name: str) -> tuple[ModelInfo, Callable[..., Any]]:
    key = name.lower() if isinstance(name, str) else name
    known = _discover()
    if key not in known:
        close = difflib.get_close_matches(str(name).lower(), known, n=3, cutoff=0.5)
        hint = f" Did you mean {' or '.join(repr(c) for c in close)}?" if close else ""
        raise UnknownModelError(
            f"no model {name!r}.{hint} Known: {', '.join(_ORDERED or known)} (see `srtrain methods`)"
        )
    if key not in _BUILDERS:
        importlib.import_module(f"{_PACKAGE}.{key}")
    if key not in _BUILDERS:
        raise RuntimeError(f"module {_PACKAGE}.{key} did not register model {key!r} (@register_model)")
    return _BUILDERS[key]


def build_model(name: str, scale: int, in_channels: int = 1, **overrides: Any) -> Any:
    """Build a registered network.

    Parameters
    ----------
    name : str
        One of `MODEL_NAMES` (case-insensitive).
    scale : int
        Upscaling factor, one of the model's `ModelInfo.scales` (2, 4, 8).
    in_channels : int
        Image channels (1 for the benchmark).
    **overrides
        Architecture hyperparameters to change (e.g. `ModelInfo.tiny_overrides` for tests).
        ``None`` values are dropped, so an unset CLI option never overrides a default.

    Returns
    -------
    torch.nn.Module
        Maps ``(B, C, h, w)`` float32 in [0, 1] to ``(B, C, s*h, s*w)`` (not clamped).

    Raises
    ------
    UnknownModelError
        Unknown name (with the closest matches).
    ValueError
        Scale the model does not support, or an unknown override.
    """
    info, builder = _resolve(name)
    if scale not in info.scales:
        raise ValueError(f"model {info.name!r} supports scales {list(info.scales)}, got scale={scale!r}")
    kwargs = {k: v for k, v in overrides.items() if v is not None}
    return builder(int(scale), in_channels=int(in_channels), **kwargs)


def model_info(name: str) -> ModelInfo:
    """Facts of one model (imports its module)."""
    return _resolve(name)[0]


def available_models() -> list[ModelInfo]:
    """Facts of every registered model, in `MODEL_NAMES` (table) order."""
    return [model_info(n) for n in model_names()]


def reference_layout(name: str, scale: int) -> dict[str, Any] | None:
    """The original network's reference record (``reference/<name>_x<scale>.json``), None for bicubic.

    Holds ``param_count``, ``hyperparameters`` and ``state_dict`` rows ``[key, shape, dtype, kind]``.
    """
    path = _REFERENCE_DIR / f"{name.lower()}_x{int(scale)}.json"
    if not path.exists():
        return None
    return json.loads(path.read_text())
