"""Run configuration: one typed, frozen dataclass tree, saved as YAML beside every run.

A run is ``RunConfig(version=1, recipe, data, model, loss, optim, train, eval)``; the two training
recipes that fill it (``default`` and ``paper``) live in `srcaco2.trainers.recipes`.
`load_config` / `save_config` read and write YAML;
`apply_overrides` applies ``--set key=value`` dotted overrides, converted by the field's type.
Unknown keys are refused with the closest suggestion, wrong types with the field, the value and
the expected type.

Examples
--------
>>> cfg = apply_overrides(RunConfig(), ["model.method=vdsr", "train.epochs=5"])
>>> cfg.train.epochs, cfg.loss.ssim_window, cfg.data.h_size
(5, 19, 128)
"""

from __future__ import annotations

import dataclasses
import difflib
import logging
from collections.abc import Iterable, Mapping
from pathlib import Path
from typing import Any, Literal

__all__ = [
    "ConfigError",
    "LoaderSettings",
    "LEGACY_DATA_KEYS",
    "DataConfig",
    "ModelConfig",
    "LossConfig",
    "OptimConfig",
    "TrainConfig",
    "EvalConfig",
    "RunConfig",
    "apply_overrides",
    "config_to_dict",
    "config_from_dict",
    "load_config",
    "save_config",
]

from srcaco2.srdata.loader import LoaderSettings
from srcaco2.trainers._config_io import (
    ConfigError,
    all_keys,
    coerce,
    from_dict,
    hints,
    load_yaml,
    unknown_key,
)

log = logging.getLogger(__name__)

_SCALES = tuple(range(2, 9))  # a store's scales (srcaco2.srdata.schema.SCALE_RANGE); the network may do fewer
_H_SIZE = 128  # the benchmark's HR crop side; at other scales the nearest multiple below it


@dataclasses.dataclass(frozen=True)
class DataConfig:
    """What the model sees: store, marker, scale, the training crops, and how they are loaded
    (docs/protocol.md#training-crops).

    Attributes
    ----------
    store : str
        Path of the Zarr store (``srdata build``); may stay empty in a saved recipe.
    marker : str
        ``CELL0``, ``CELL1`` or ``CELL2``; one model per (method, marker, scale).
    scale : int
        2, 4 or 8.
    h_size : int
        HR crop side in HR pixels (multiple of `scale`); the LR crop is ``h_size / scale``. Default
        128 (the benchmark's), or the largest multiple of `scale` below it (126 at x3).
    batch_size : int
        Crops per optimiser step (per process under DDP).
    loader : srcaco2.srdata.loader.LoaderSettings
        The loader's own settings object, passed as is to `srcaco2.srdata.loader.make_loader`: workers,
        pinned memory, chunk cache, prefetch, preload, crops per epoch (``samples_per_epoch``) and
        the crop sampling (``roi_bias``, ``roi_threshold`` 4, ``aligned``, ``augment``,
        ``use_interpolated_low``). Keys ``data.loader.<name>``; the flat keys of configs written
        before it existed (``data.roi_bias``, ``data.num_workers``, ...) are read as these.
    """

    store: str = ""
    marker: str = "CELL2"
    scale: int = 4
    h_size: int | None = None
    batch_size: int = 8
    loader: LoaderSettings = dataclasses.field(default_factory=LoaderSettings)

    def __post_init__(self) -> None:
        if not isinstance(self.marker, str) or not self.marker:
            raise ConfigError(f"data.marker={self.marker!r}: give a marker name of the store (e.g. CELL2)")
        if self.scale not in _SCALES:
            raise ConfigError(f"data.scale={self.scale!r} is not an integer from 2 to 8")
        if self.h_size is None:
            object.__setattr__(self, "h_size", _H_SIZE - _H_SIZE % self.scale)
        if self.h_size <= 0 or self.h_size % self.scale:
            raise ConfigError(
                f"data.h_size={self.h_size} must be a positive multiple of scale={self.scale} "
                f"(e.g. data.h_size={max(self.scale, self.h_size - self.h_size % self.scale)})"
            )
        if self.h_size > 512:
            raise ConfigError(f"data.h_size={self.h_size} exceeds the 512 px patch side")
        if self.batch_size < 1:
            raise ConfigError(f"data.batch_size={self.batch_size} must be >= 1")
        if not isinstance(self.loader, LoaderSettings):
            raise ConfigError(f"data.loader must be a LoaderSettings, got {type(self.loader).__name__}")

    def __getattr__(self, name: str) -> Any:
        # read access under the older flat names (cfg.data.roi_bias -> cfg.data.loader.roi_bias)
        if name in LEGACY_DATA_KEYS and "loader" in self.__dict__:
            return getattr(self.__dict__["loader"], name)
        raise AttributeError(f"{type(self).__name__!r} object has no attribute {name!r}")


LEGACY_DATA_KEYS: tuple[str, ...] = (
    "num_workers", "samples_per_epoch", "roi_bias", "roi_threshold", "aligned", "augment",
    "use_interpolated_low",
)  # fmt: skip
"""Flat ``data.<name>`` keys of configs written before `DataConfig.loader`; read as ``data.loader.<name>``."""


@dataclasses.dataclass(frozen=True)
class ModelConfig:
    """The network: a registry name (``srtrain methods``) and architecture overrides.

    Attributes
    ----------
    method : str
        Registry name, e.g. ``swinir``, ``vdsr`` (lowercase).
    overrides : dict
        Keyword arguments for the builder (e.g. ``{"n_feats": 16}`` for a small test network);
        empty = the benchmark's architecture.
    init_from : str
        Start from these weights instead of a random initialisation (fine-tuning; ``srtrain fit
        --init-from``): a run of ours (its directory, ``best.pt`` or ``last.pt``), an original run
        directory or a bare ``G-model.pth``. Loaded strictly (every key and shape must fit the
        network built from `method`, the scale and `overrides`); the optimiser starts fresh.
        Empty = random initialisation.
    """

    method: str = "swinir"
    overrides: dict[str, Any] = dataclasses.field(default_factory=dict)
    init_from: str = ""

    def __post_init__(self) -> None:
        from srcaco2.trainers.models.registry import MODEL_NAMES

        if self.method not in MODEL_NAMES:
            close = difflib.get_close_matches(str(self.method).lower(), MODEL_NAMES, n=3, cutoff=0.5)
            hint = f" Did you mean {' or '.join(map(repr, close))}?" if close else ""
            raise ConfigError(
                f"model.method={self.method!r} is not a known method.{hint} Known: {', '.join(MODEL_NAMES)}"
            )


@dataclasses.dataclass(frozen=True)
class LossConfig:
    """``l2_weight · MSE − ssim_weight · SSIM(window, sigma, padding)`` (docs/protocol.md#losses).

    Attributes
    ----------
    l2_weight, ssim_weight : float
        Term weights (1 and 5 in the benchmark); 0 disables a term.
    ssim_window : int
        Gaussian window side (19 in the benchmark; odd).
    ssim_sigma : float
        Gaussian standard deviation in pixels (1.5).
    ssim_padding : {"same", "valid"}
        Zero "same" padding (the benchmark's loss) or valid convolution.
    """

    l2_weight: float = 1.0
    ssim_weight: float = 5.0
    ssim_window: int = 19
    ssim_sigma: float = 1.5
    ssim_padding: Literal["same", "valid"] = "same"

    def __post_init__(self) -> None:
        if self.ssim_window < 3 or self.ssim_window % 2 == 0:
            raise ConfigError(f"loss.ssim_window={self.ssim_window} must be odd and >= 3 (benchmark: 19)")
        if self.l2_weight == 0 and self.ssim_weight == 0:
            raise ConfigError("loss.l2_weight and loss.ssim_weight are both 0: enable at least one term")


@dataclasses.dataclass(frozen=True)
class OptimConfig:
    """Optimiser, learning-rate schedule, gradient clipping and EMA (docs/protocol.md#recipe).

    Attributes
    ----------
    name : {"sgd", "adam", "adamw"}
        Optimiser; SGD uses `momentum` and `nesterov`, Adam and AdamW ``betas=(0.9, 0.999)``
        (AdamW: decoupled `weight_decay`).
    lr, momentum, weight_decay : float
    nesterov : bool
    scheduler : {"mysteplr", "constant", "cosine"}
        MyStepLR: ``lr = max(lr0 · gamma ** (t // step_size), min_lr)``; cosine: from ``lr0`` at the
        end of the warm-up down to ``min_lr`` at the run's last step (``train.epochs`` /
        ``train.max_steps``), ``t`` counted in optimiser steps.
    step_size : int
        MyStepLR: scheduler steps between decays (30).
    gamma, min_lr : float
        MyStepLR's decay factor (0.5); the floor of MyStepLR and the end value of cosine.
    schedule : {"epoch", "original"}
        What MyStepLR's `t` counts: epochs (default), or iterations as the original code did (the
        lr then reaches the 1e-4 floor after 210 iterations).
    warmup_steps : int
        Linear warm-up: the lr of optimiser step ``k`` (1-based) is multiplied by
        ``min(1, k / warmup_steps)``; 0 = off.
    grad_clip : float
        Max global gradient norm (L2 over every parameter, before the step); 0 = off.
    ema_decay : float
        EMA of the weights (e.g. 0.999); 0 = off. Validation and ``best.pt`` use the EMA weights.
    """

    name: Literal["sgd", "adam", "adamw"] = "sgd"
    lr: float = 0.01
    momentum: float = 0.9
    nesterov: bool = True
    weight_decay: float = 0.0
    scheduler: Literal["mysteplr", "constant", "cosine"] = "mysteplr"
    step_size: int = 30
    gamma: float = 0.5
    min_lr: float = 1e-4
    schedule: Literal["epoch", "original"] = "epoch"
    warmup_steps: int = 0
    grad_clip: float = 0.0
    ema_decay: float = 0.0

    def __post_init__(self) -> None:
        if self.lr <= 0:
            raise ConfigError(f"optim.lr={self.lr} must be > 0")
        if self.step_size < 1:
            raise ConfigError(f"optim.step_size={self.step_size} must be >= 1")
        if not 0.0 <= self.ema_decay < 1.0:
            raise ConfigError(f"optim.ema_decay={self.ema_decay} must be in [0, 1) (0 = off)")
        if self.grad_clip < 0:
            raise ConfigError(f"optim.grad_clip={self.grad_clip} must be >= 0 (0 = off)")
        if self.warmup_steps < 0:
            raise ConfigError(f"optim.warmup_steps={self.warmup_steps} must be >= 0 (0 = off)")
        if self.min_lr < 0:
            raise ConfigError(f"optim.min_lr={self.min_lr} must be >= 0")


@dataclasses.dataclass(frozen=True)
class TrainConfig:
    """Loop length, precision, seeds, checkpoints and logs.

    Attributes
    ----------
    epochs : int
        Passes over the training windows (100 in the benchmark).
    max_steps : int or None
        Stop after this many optimiser steps in total (None = `epochs` decide).
    seed : int
        Seed of every random choice (sampling, augmentation, init).
    amp : {"auto", "bf16", "off"}
        ``auto`` = bf16 autocast on CUDA, fp32 on CPU.
    channels_last : bool
        Use channels-last memory format on CUDA.
    checkpoint_every : int
        Write ``last.pt`` every this many steps (0 = only at validation and at the end).
    log_every : int
        Steps between rows of ``metrics.csv``.
    tensorboard : bool
        Also log to TensorBoard when it is installed.
    sync_every : int
        Steps between the host's reads of the device: the per-step losses (for ``metrics.csv``,
        the progress callback and ``FitResult.losses``) and the finite-loss check are kept on the
        device and read in one transfer every this many steps, and before every validation,
        checkpoint and the end. 1 = every step (the GPU then idles while the host prepares each
        step); a non-finite loss is still reported with its own step and batch.
    divergence : {"stop", "report"}
        What the divergence guard (`srcaco2.trainers.engine.guard`) does. ``stop``: a non-finite
        loss, an output MSE above `explode_mse` or a gradient-norm explosion ends the run at the
        next read with `TrainingDivergedError` (step, batch windows, the keys that help).
        ``report`` (the original code): a batch whose loss is non-finite is skipped (no update;
        one host read per step), explosions are logged as warnings, and `max_skipped` skipped
        batches in a row (the frozen state the original ends in) end the run.
    explode_mse : float
        An output MSE above this (images in [0, 1]: 1 means the output left the data range by a
        whole dynamic range) is an explosion; 0 = off.
    max_skipped : int
        ``report``: consecutive skipped (non-finite) batches that end the run.
    reseed : bool
        Re-seed python, numpy and torch with ``seed + step`` (the 0-based index of the step
        about to run) before every step, as the original did (it changes only random network
        layers, e.g. SwinIR's stochastic depth: the crops do not depend on the global RNG).
    """

    epochs: int = 100
    max_steps: int | None = None
    seed: int = 0
    amp: Literal["auto", "bf16", "off"] = "auto"
    channels_last: bool = False
    checkpoint_every: int = 0
    log_every: int = 1
    tensorboard: bool = True
    sync_every: int = 20
    divergence: Literal["stop", "report"] = "stop"
    explode_mse: float = 1.0
    max_skipped: int = 20
    reseed: bool = False

    def __post_init__(self) -> None:
        if self.explode_mse < 0:
            raise ConfigError(f"train.explode_mse={self.explode_mse} must be >= 0 (0 = off)")
        if self.max_skipped < 1:
            raise ConfigError(f"train.max_skipped={self.max_skipped} must be >= 1")
        if self.sync_every < 1:
            raise ConfigError(f"train.sync_every={self.sync_every} must be >= 1 (1 = read every step)")
        if self.epochs < 1:
            raise ConfigError(f"train.epochs={self.epochs} must be >= 1")
        if self.max_steps is not None and self.max_steps < 1:
            raise ConfigError(f"train.max_steps={self.max_steps} must be >= 1 or null")
        if self.checkpoint_every < 0 or self.log_every < 1:
            raise ConfigError("train.checkpoint_every must be >= 0 and train.log_every >= 1")


@dataclasses.dataclass(frozen=True)
class EvalConfig:
    """Validation during training and model selection (docs/protocol.md#model-selection).

    Attributes
    ----------
    val_windows : int or None
        First N windows of the val split (128 in the benchmark; None = all).
    every : float
        <= 1: fraction of an epoch, validation every ``floor(every · iters_per_epoch)`` steps
        (0.9 in the benchmark); > 1: a number of steps.
    select_metric : str
        Metric that picks ``best.pt`` (``roi_psnr``); higher is better except for NRMSE.
    batch_size : int
        Windows per forward pass during validation.
    at_end : bool
        Also validate after the last step (the original validates only every ``every`` steps).
    abort_on_bad_metric : bool
        End the run, as the original did, when a validation image's metric is negative or
        non-finite (here with a clear message; the original exited silently with status 0).
    alignment : str
        ``paper`` (the benchmark's whole-LR-pixel registration, both recipes) or ``subpixel`` (the
        prediction resampled by the residual TV-L1 shift before scoring, beyond the paper;
        `srcaco2.trainers.alignment`; the store needs ``srdata register-subpixel --split val``).
    """

    val_windows: int | None = 128
    every: float = 0.9
    select_metric: Literal["roi_psnr", "psnr", "roi_ssim", "ssim", "roi_nrmse", "nrmse"] = "roi_psnr"
    batch_size: int = 1
    at_end: bool = True
    abort_on_bad_metric: bool = False
    alignment: Literal["paper", "subpixel"] = "paper"

    def __post_init__(self) -> None:
        if self.alignment not in ("paper", "subpixel"):
            raise ConfigError(f"eval.alignment={self.alignment!r} must be 'paper' or 'subpixel'")
        if self.every <= 0:
            raise ConfigError(f"eval.every={self.every} must be > 0")
        if self.val_windows is not None and self.val_windows < 1:
            raise ConfigError(f"eval.val_windows={self.val_windows} must be >= 1 or null")


@dataclasses.dataclass(frozen=True)
class RunConfig:
    """One training run. ``version`` is the schema version of this tree (1); ``recipe`` names the recipe
    the run started from (`recipe_config`; later ``--set`` overrides may change any field)."""

    version: int = 1
    recipe: Literal["default", "paper"] = "default"
    data: DataConfig = dataclasses.field(default_factory=DataConfig)
    model: ModelConfig = dataclasses.field(default_factory=ModelConfig)
    loss: LossConfig = dataclasses.field(default_factory=LossConfig)
    optim: OptimConfig = dataclasses.field(default_factory=OptimConfig)
    train: TrainConfig = dataclasses.field(default_factory=TrainConfig)
    eval: EvalConfig = dataclasses.field(default_factory=EvalConfig)

    def __post_init__(self) -> None:
        if self.version != 1:
            raise ConfigError(f"version={self.version!r}: this toolkit reads config version 1 only")

    def validate(self) -> RunConfig:
        """Cross-field checks (the model supports the scale); returns self."""
        from srcaco2.trainers.models.registry import model_info

        info = model_info(self.model.method)
        if self.data.scale not in info.scales:
            raise ConfigError(
                f"model.method={self.model.method!r} supports scales {list(info.scales)}, "
                f"got data.scale={self.data.scale}"
            )
        return self


def config_to_dict(config: RunConfig) -> dict[str, Any]:
    """Plain nested dict (YAML-ready) of a config."""
    return dataclasses.asdict(config)


def config_from_dict(data: Mapping[str, Any]) -> RunConfig:
    """Build a config from a nested dict; missing keys take their defaults.

    Raises
    ------
    ConfigError
        Unknown key (with the closest suggestion) or a value of the wrong type.
    """
    return from_dict(RunConfig, _migrate(data), "")


def _migrate(data: Mapping[str, Any]) -> Mapping[str, Any]:
    """Move the flat `LEGACY_DATA_KEYS` of an older config into ``data.loader`` (a copy; refuses both)."""
    if not isinstance(data, Mapping) or not isinstance(data.get("data"), Mapping):
        return data
    old = {k: v for k, v in data["data"].items() if k in LEGACY_DATA_KEYS}
    if not old:
        return data
    new_data = {k: v for k, v in data["data"].items() if k not in LEGACY_DATA_KEYS}
    loader = new_data.get("loader") or {}
    if not isinstance(loader, Mapping):
        return data  # from_dict reports the bad type
    both = sorted(set(old) & set(loader))
    if both:
        raise ConfigError(
            f"data.{both[0]} and data.loader.{both[0]} are both set; keep only data.loader.{both[0]} "
            "(the flat data.* form is the older spelling)"
        )
    log.debug("config: read the older flat keys %s as data.loader.*", sorted(old))
    new_data["loader"] = {**loader, **old}
    return {**data, "data": new_data}


def _canonical_key(key: str) -> str:
    """``data.<name>`` of a `LEGACY_DATA_KEYS` name -> ``data.loader.<name>``; other keys unchanged."""
    head, _, name = key.partition(".")
    return f"data.loader.{name}" if head == "data" and name in LEGACY_DATA_KEYS else key


def apply_overrides(config: RunConfig, overrides: Iterable[str]) -> RunConfig:
    """Apply ``key=value`` dotted overrides, e.g. ``["train.epochs=5", "optim.lr=1e-3"]``.

    Values are converted by the field's type (``int``, ``float``, ``bool`` as true/false,
    ``null`` for optional fields, YAML for dicts); ``model.overrides.NAME=VALUE`` sets one
    architecture override (the value parsed as YAML). The older flat loader keys
    (``data.roi_bias``, ``data.num_workers``, ...; `LEGACY_DATA_KEYS`) still work and set
    ``data.loader.<name>``.
    """
    data = config_to_dict(config)
    keys = all_keys(RunConfig)
    for item in overrides:
        if "=" not in item:
            raise ConfigError(f"override {item!r} must look like key=value (e.g. train.epochs=5)")
        key, text = (s.strip() for s in item.split("=", 1))
        key = _canonical_key(key)
        if key.startswith("model.overrides."):
            import yaml

            data["model"]["overrides"][key[len("model.overrides.") :]] = yaml.safe_load(text)
            continue
        if key not in keys:
            raise unknown_key(key, keys)
        parts = key.split(".")
        cls: Any = RunConfig
        node = data
        for p in parts[:-1]:
            cls = hints(cls)[p]
            node = node[p]
        node[parts[-1]] = coerce(text, hints(cls)[parts[-1]], key, from_text=True)
    return config_from_dict(data)


def save_config(config: RunConfig, path: str | Path) -> Path:
    """Write `config` as YAML to `path` (keys in field order); returns the path."""
    import yaml

    path = Path(path)
    path.parent.mkdir(parents=True, exist_ok=True)
    path.write_text(yaml.safe_dump(config_to_dict(config), sort_keys=False))
    return path


def load_config(path: str | Path) -> RunConfig:
    """Read a YAML config written by `save_config` (or by hand; missing keys take defaults)."""
    path = Path(path)
    if not path.exists():
        raise FileNotFoundError(f"config file {path} does not exist")
    try:
        text = path.read_text()
    except UnicodeDecodeError as exc:
        raise ConfigError(
            f"{path}: not valid YAML (not UTF-8 text: {exc}); fix the file or write a new one"
        ) from None
    data = load_yaml(text, str(path)) or {}
    try:
        return config_from_dict(data)
    except ConfigError as exc:
        raise ConfigError(f"{path}: {exc}") from None
