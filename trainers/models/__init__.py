"""The benchmark's 16 networks + bicubic, by name: ``build_model("swinir", scale=8)``."""

from trainers.models.registry import (
    MODEL_NAMES,
    ModelInfo,
    UnknownModelError,
    available_models,
    build_model,
    model_info,
    reference_layout,
    register_model,
)

__all__ = [
    "MODEL_NAMES",
    "ModelInfo",
    "UnknownModelError",
    "available_models",
    "build_model",
    "model_info",
    "reference_layout",
    "register_model",
]
