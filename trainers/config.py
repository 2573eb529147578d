"""Run configuration: one typed, frozen dataclass tree, saved as YAML beside every run.

A run is ``RunConfig(version=1, recipe, data, model, loss, optim, train, eval)``. `recipe_config`
builds one of two recipes (`RECIPES`): ``paper``, the SR-CACO-2 benchmark's training exactly as it ran
(docs/protocol.md#recipe, quirks included), and ``default``, the same hyper-parameters with the quirks listed
in `RECIPE_DIFFERENCES` fixed; `paper_config` is the ``default`` recipe (its historical name).
`load_config` / `save_config` read and write YAML;
`apply_overrides` applies ``--set key=value`` dotted overrides, converted by the field's type.
Unknown keys are refused with the closest suggestion, wrong types with the field, the value and
the expected type.

Examples
--------
>>> cfg = paper_config("vdsr", scale=4, marker="CELL2")
>>> cfg.optim.lr, cfg.loss.ssim_window, cfg.data.h_size
(0.01, 19, 128)
>>> apply_overrides(cfg, ["train.epochs=5"]).train.epochs
5
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
    "paper_config",
    "recipe_config",
    "RECIPES",
    "RECIPE_DIFFERENCES",
    "RecipeDifference",
    "apply_overrides",
    "config_to_dict",
    "config_from_dict",
    "load_config",
    "save_config",
]

from srcaco2.srdata.loader import LoaderSettings
from srcaco2.trainers._config_io import ConfigError, all_keys, coerce, from_dict, hints, unknown_key

log = logging.getLogger(__name__)

_MARKERS = ("CELL0", "CELL1", "CELL2")
_SCALES = (2, 4, 8)


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
        HR crop side in HR pixels (multiple of `scale`); the LR crop is ``h_size / scale``.
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
    h_size: int = 128
    batch_size: int = 8
    loader: LoaderSettings = dataclasses.field(default_factory=LoaderSettings)

    def __post_init__(self) -> None:
        if self.marker not in _MARKERS:
            raise ConfigError(f"data.marker={self.marker!r} is not one of {', '.join(_MARKERS)}")
        if self.scale not in _SCALES:
            raise ConfigError(f"data.scale={self.scale!r} is not one of {list(_SCALES)}")
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
    name : {"sgd", "adam"}
        Optimiser; SGD uses `momentum` and `nesterov`, Adam ``betas=(0.9, 0.999)``.
    lr, momentum, weight_decay : float
    nesterov : bool
    scheduler : {"mysteplr", "constant"}
        MyStepLR: ``lr = max(lr0 · gamma ** (t // step_size), min_lr)``.
    step_size : int
        Scheduler steps between decays (30).
    gamma, min_lr : float
        Decay factor (0.5) and floor (1e-4).
    schedule : {"epoch", "original"}
        What `t` counts: epochs (default), or iterations as the original code did (the lr then
        reaches the 1e-4 floor after 210 iterations).
    grad_clip : float
        Max global gradient norm; 0 = off.
    ema_decay : float
        EMA of the weights (e.g. 0.999); 0 = off. Validation and ``best.pt`` use the EMA weights.
    """

    name: Literal["sgd", "adam"] = "sgd"
    lr: float = 0.01
    momentum: float = 0.9
    nesterov: bool = True
    weight_decay: float = 0.0
    scheduler: Literal["mysteplr", "constant"] = "mysteplr"
    step_size: int = 30
    gamma: float = 0.5
    min_lr: float = 1e-4
    schedule: Literal["epoch", "original"] = "epoch"
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

    def __post_init__(self) -> None:
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
    """

    val_windows: int | None = 128
    every: float = 0.9
    select_metric: Literal["roi_psnr", "psnr", "roi_ssim", "ssim", "roi_nrmse", "nrmse"] = "roi_psnr"
    batch_size: int = 1

    def __post_init__(self) -> None:
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


RECIPES: tuple[str, ...] = ("default", "paper")
"""Training recipes: ``paper`` = the benchmark as it ran; ``default`` = the same with its quirks fixed."""


@dataclasses.dataclass(frozen=True)
class RecipeDifference:
    """One field where the ``paper`` recipe differs from the ``default`` one.

    Attributes
    ----------
    key : str
        Dotted config key (as ``--set`` takes it).
    paper, default : str
        The value under each recipe, as ``--set`` text.
    why : str
        What the benchmark did and why the default differs.
    """

    key: str
    paper: str
    default: str
    why: str


RECIPE_DIFFERENCES: tuple[RecipeDifference, ...] = (
    RecipeDifference(
        "optim.schedule",
        "original",
        "epoch",
        "the benchmark steps MyStepLR after every iteration, so the lr falls from 0.01 to its 1e-4 floor "
        "after 210 iterations and stays there for the other 99.8 % of training; the default steps it "
        "per epoch (0.01 halved every 30 epochs), which is what the recipe's numbers describe",
    ),
    RecipeDifference(
        "data.loader.aligned",
        "false",
        "true",
        "the benchmark cuts the LR crop at floor(x0/s) for any HR corner x0, so LR and HR crops are "
        "misaligned by (x0 mod s, y0 mod s) HR px (up to s-1); the default draws corners on the LR grid",
    ),
    RecipeDifference(
        "train.amp",
        "off",
        "auto",
        "the benchmark trains in fp32; the default uses bf16 autocast on CUDA (fp32 on CPU), with SSIM, "
        "the loss sums and DFCAN's FFTs kept in fp32",
    ),
)
"""Every difference between the two recipes: one home, read by `recipe_config`, ``srtrain fit --help``
and the README."""


def recipe_config(
    method: str, scale: int, marker: str, *, recipe: str = "default", store: str = ""
) -> RunConfig:
    """A training recipe for one (method, scale, marker).

    Both recipes share the benchmark's hyper-parameters (docs/protocol.md#recipe): SGD Nesterov (momentum 0.9,
    lr 0.01, wd 0), MyStepLR(30, 0.5, floor 1e-4), batch 8 of 128² HR crops, 100 epochs (one crop per
    training window per epoch), loss MSE − 5·SSIM(19, zero same padding), ROI-biased sampling
    (threshold 4 on the bicubic-upsampled LR), validation on the first 128 val windows of the official
    fold order every ⌊0.9·iters/epoch⌋ steps, model selection by ROI PSNR (a tie is a new best), seed
    0. They differ only in `RECIPE_DIFFERENCES`.

    Parameters
    ----------
    method : str
        Registry name (``srtrain methods``).
    scale : {2, 4, 8}
    marker : {"CELL0", "CELL1", "CELL2"}
    recipe : {"default", "paper"}
        ``paper`` reproduces the benchmark's training, quirks included.
    store : str
        Store path (may stay empty in a saved recipe).

    Raises
    ------
    ConfigError
        Unknown recipe, method, scale or marker.
    """
    if recipe not in RECIPES:
        near = difflib.get_close_matches(str(recipe), RECIPES, n=1)
        hint = f" (did you mean {near[0]!r}?)" if near else ""
        raise ConfigError(f"recipe={recipe!r} is not one of {', '.join(RECIPES)}{hint}")
    cfg = RunConfig(
        recipe=recipe,  # type: ignore[arg-type]
        data=DataConfig(store=str(store), marker=marker, scale=int(scale)),
        model=ModelConfig(method=str(method).lower()),
    )
    if recipe == "paper":
        cfg = apply_overrides(cfg, [f"{d.key}={d.paper}" for d in RECIPE_DIFFERENCES])
    return cfg


def paper_config(method: str, scale: int, marker: str, *, store: str = "") -> RunConfig:
    """The ``default`` recipe (`recipe_config`): the benchmark's hyper-parameters, quirks fixed.

    Kept under its historical name; ``recipe_config(..., recipe="paper")`` is the benchmark exactly.
    """
    return recipe_config(method, scale, marker, recipe="default", store=store)


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
    import yaml

    path = Path(path)
    if not path.exists():
        raise FileNotFoundError(f"config file {path} does not exist")
    try:
        data = yaml.safe_load(path.read_text()) or {}
    except (yaml.YAMLError, UnicodeDecodeError) as exc:
        detail = " ".join(str(exc).split())
        raise ConfigError(f"{path}: not valid YAML ({detail}); fix the file or write a new one") from None
    try:
        return config_from_dict(data)
    except ConfigError as exc:
        raise ConfigError(f"{path}: {exc}") from None
