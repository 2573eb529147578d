"""The benchmark's 16 networks + bicubic, by name: ``build_model("swinir", scale=8)``."""

from typing import Any

from srcaco2.trainers.models.registry import (
    FAMILIES,
    ModelInfo,
    UnknownModelError,
    available_models,
    build_model,
    model_info,
    model_names,
    reference_layout,
    register_model,
)

__all__ = [
    "FAMILIES",
    "MODEL_NAMES",
    "ModelInfo",
    "UnknownModelError",
    "available_models",
    "build_model",
    "model_info",
    "model_names",
    "reference_layout",
    "register_model",
]


def __getattr__(attr: str) -> Any:  # PEP 562: MODEL_NAMES imports every network module, on first use
    if attr == "MODEL_NAMES":
        return model_names()
    raise AttributeError(f"module {__name__!r} has no attribute {attr!r}")
