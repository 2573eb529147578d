"""Model registry: one name -> one builder, with metadata; `build_model` is the only way in.

Each network family lives in its own module (listed in `_MODULES`, imported lazily so that one
broken family never breaks the others and `import trainers.models` stays cheap). A module
registers its builders with `register_model`; a builder has the signature
``builder(scale: int, in_channels: int = 1, **overrides) -> torch.nn.Module`` and, with no
overrides, builds exactly the benchmark's network (state_dict keys, shapes, dtypes and parameter
count of ``trainers/models/reference/<name>_x<scale>.json``).
"""

from __future__ import annotations

import dataclasses
import difflib
import importlib
import json
from collections.abc import Callable
from pathlib import Path
from typing import Any

__all__ = [
    "ModelInfo",
    "UnknownModelError",
    "register_model",
    "build_model",
    "available_models",
    "model_info",
    "reference_layout",
    "MODEL_NAMES",
]

# name -> module holding its builder (explicit list, lazy import; see STYLE.md §2).
_MODULES: dict[str, str] = {
    "bicubic": "trainers.models.bicubic",
    "srcnn": "trainers.models.srcnn",
    "vdsr": "trainers.models.vdsr",
    "drrn": "trainers.models.drrn",
    "memnet": "trainers.models.memnet",
    "nlsn": "trainers.models.nlsn",
    "dfcan": "trainers.models.dfcan",
    "swinir": "trainers.models.swinir",
    "edsr_liif": "trainers.models.edsr_liif",
    "enlcn": "trainers.models.enlcn",
    "grl": "trainers.models.grl",
    "act": "trainers.models.act",
    "omnisr": "trainers.models.omnisr",
    "dbpn": "trainers.models.dbpn",
    "srfbn": "trainers.models.srfbn",
    "prosr": "trainers.models.prosr",
    "mslapsrn": "trainers.models.mslapsrn",
}
MODEL_NAMES: tuple[str, ...] = tuple(_MODULES)
"""All registered names, in the benchmark's order (bicubic first)."""

_REFERENCE_DIR = Path(__file__).with_name("reference")


class UnknownModelError(KeyError):
    """No model under that name; the message suggests the closest names."""

    def __str__(self) -> str:  # KeyError quotes its message; show it plainly
        return str(self.args[0])


@dataclasses.dataclass(frozen=True)
class ModelInfo:
    """Metadata of a registered model.

    Attributes
    ----------
    name : str
        Registry name (lowercase).
    family : str
        ``bicubic``, ``pre-upsampling``, ``post-upsampling``, ``iterative up-and-down`` or
        ``progressive`` (the paper's Table 4 grouping).
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
    """

    name: str
    family: str
    paper: str
    scales: tuple[int, ...] = (2, 4, 8)
    multi_output: bool = False
    pre_upsampling: str | None = None


_BUILDERS: dict[str, tuple[ModelInfo, Callable[..., Any]]] = {}


def register_model(
    name: str,
    *,
    family: str,
    paper: str,
    scales: tuple[int, ...] = (2, 4, 8),
    multi_output: bool = False,
    pre_upsampling: str | None = None,
) -> Callable[[Callable[..., Any]], Callable[..., Any]]:
    """Decorator registering ``builder(scale, in_channels=1, **overrides) -> nn.Module``."""

    def wrap(builder: Callable[..., Any]) -> Callable[..., Any]:
        if name in _BUILDERS:
            raise ValueError(f"model {name!r} is registered twice ({builder.__module__})")
        if name not in _MODULES:
            raise ValueError(f"model {name!r} is not listed in trainers.models.registry._MODULES")
        info = ModelInfo(name, family, paper, tuple(scales), multi_output, pre_upsampling)
        _BUILDERS[name] = (info, builder)
        return builder

    return wrap


def _resolve(name: str) -> tuple[ModelInfo, Callable[..., Any]]:
    key = name.lower() if isinstance(name, str) else name
    if key not in _MODULES:
        close = difflib.get_close_matches(str(name).lower(), MODEL_NAMES, n=3, cutoff=0.5)
        hint = f" Did you mean {' or '.join(repr(c) for c in close)}?" if close else ""
        raise UnknownModelError(
            f"no model {name!r}.{hint} Known: {', '.join(MODEL_NAMES)} (see `srtrain methods`)"
        )
    if key not in _BUILDERS:
        importlib.import_module(_MODULES[key])
    if key not in _BUILDERS:
        raise RuntimeError(f"module {_MODULES[key]} did not register model {key!r}")
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
        Architecture hyperparameters to change (e.g. small widths for tests). ``None`` values are
        dropped, so an unset CLI option never overrides a default.

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
    """Metadata of one model (imports its module)."""
    return _resolve(name)[0]


def available_models() -> list[ModelInfo]:
    """Metadata of every registered model, in `MODEL_NAMES` order."""
    return [model_info(n) for n in MODEL_NAMES]


def reference_layout(name: str, scale: int) -> dict[str, Any] | None:
    """The original network's reference record (``reference/<name>_x<scale>.json``), None for bicubic.

    Holds ``param_count``, ``hyperparameters`` and ``state_dict`` rows ``[key, shape, dtype, kind]``.
    """
    path = _REFERENCE_DIR / f"{name.lower()}_x{int(scale)}.json"
    if not path.exists():
        return None
    return json.loads(path.read_text())
