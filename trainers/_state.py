"""Training-state pieces: the lr schedule (MyStepLR, cosine, warm-up), weight EMA, RNG snapshots,
optimiser and model-input helpers.

Everything here is saved in (and restored from) a checkpoint's ``training_state`` so that a
resumed run follows the same trajectory as an uninterrupted one.
"""

from __future__ import annotations

import math
import random
from typing import TYPE_CHECKING, Any

import numpy as np

if TYPE_CHECKING:  # pragma: no cover
    import torch

    from srcaco2.trainers.config import OptimConfig

__all__ = [
    "WeightEMA",
    "build_optimizer",
    "build_scheduler",
    "lr_factor",
    "set_scheduler_step",
    "lr_at",
    "rng_state",
    "set_rng_state",
]


def lr_at(t: int, *, lr0: float, step_size: int, gamma: float, min_lr: float) -> float:
    """MyStepLR value after `t` scheduler steps: ``max(lr0 · gamma ** (t // step_size), min_lr)``."""
    return max(lr0 * gamma ** (t // step_size), min_lr)


def build_optimizer(params: Any, config: OptimConfig) -> torch.optim.Optimizer:
    """SGD (momentum, Nesterov), Adam or AdamW from the config."""
    import torch

    if config.name == "sgd":
        return torch.optim.SGD(
            params,
            lr=config.lr,
            momentum=config.momentum,
            nesterov=config.nesterov and config.momentum > 0,
            weight_decay=config.weight_decay,
        )
    cls = torch.optim.AdamW if config.name == "adamw" else torch.optim.Adam
    return cls(params, lr=config.lr, betas=(0.9, 0.999), eps=1e-8, weight_decay=config.weight_decay)


def lr_factor(t: int, config: OptimConfig, *, total_steps: int, iters_per_epoch: int) -> float:
    """The lr of the step after `t` optimiser steps, as a fraction of ``config.lr``.

    The scheduler's value (MyStepLR counting epochs ``t // iters_per_epoch`` or iterations,
    constant, or cosine from 1 at the end of the warm-up to ``min_lr / lr`` at the last step,
    ``t = total_steps − 1``) times
    the linear warm-up ``min(1, (t + 1) / warmup_steps)``.
    """
    base = config.lr
    if config.scheduler == "mysteplr":
        k = t if config.schedule == "original" else t // max(1, iters_per_epoch)
        value = (
            lr_at(k, lr0=base, step_size=config.step_size, gamma=config.gamma, min_lr=config.min_lr) / base
        )
    elif config.scheduler == "cosine":
        span = max(1, total_steps - 1 - config.warmup_steps)  # the last step runs at min_lr
        progress = min(1.0, max(0.0, (t - config.warmup_steps) / span))
        floor = min(config.min_lr, base) / base
        value = floor + (1.0 - floor) * 0.5 * (1.0 + math.cos(math.pi * progress))
    else:
        value = 1.0
    if config.warmup_steps > 0:
        value *= min(1.0, (t + 1) / config.warmup_steps)
    return value


def build_scheduler(
    optimizer: torch.optim.Optimizer, config: OptimConfig, *, total_steps: int, iters_per_epoch: int
) -> Any:
    """A `LambdaLR` stepped after every optimiser step, following `lr_factor`."""
    import torch

    def factor(t: int) -> float:
        return lr_factor(t, config, total_steps=total_steps, iters_per_epoch=iters_per_epoch)

    return torch.optim.lr_scheduler.LambdaLR(optimizer, factor)


def set_scheduler_step(scheduler: Any, step: int) -> None:
    """Put a `build_scheduler` scheduler at `step` optimiser steps (a resumed run's lr depends on the
    step only, whatever granularity the checkpoint's scheduler state was saved with)."""
    scheduler.last_epoch = step
    lrs = [base * fn(step) for base, fn in zip(scheduler.base_lrs, scheduler.lr_lambdas, strict=True)]
    for group, lr in zip(scheduler.optimizer.param_groups, lrs, strict=True):
        group["lr"] = lr
    scheduler._last_lr = lrs


class WeightEMA:
    """Exponential moving average of a model's floating-point parameters and buffers.

    ``ema = decay · ema + (1 − decay) · weights`` after every optimiser step; kept in float32 on
    the model's device. `state_dict()` has the same keys as the model's.
    """

    def __init__(self, model: torch.nn.Module, decay: float) -> None:
        self.decay = float(decay)
        self.shadow = {k: v.detach().clone().float() for k, v in model.state_dict().items()}

    def update(self, model: torch.nn.Module) -> None:
        """Fold the current weights into the average."""
        import torch

        with torch.no_grad():
            for k, v in model.state_dict().items():
                s = self.shadow[k]
                if v.is_floating_point():
                    s.mul_(self.decay).add_(v.detach().float(), alpha=1.0 - self.decay)
                else:
                    s.copy_(v)

    def state_dict(self) -> dict[str, torch.Tensor]:
        """The averaged weights, cast to the model's dtypes by `copy_to`."""
        return {k: v.clone() for k, v in self.shadow.items()}

    def load_state_dict(self, state: dict[str, torch.Tensor]) -> None:
        """Restore the averaged weights."""
        for k, v in state.items():
            self.shadow[k].copy_(v)

    def copy_to(self, model: torch.nn.Module) -> None:
        """Load the averaged weights into `model` (e.g. an evaluation copy)."""
        model.load_state_dict({k: v.to(model.state_dict()[k].dtype) for k, v in self.shadow.items()})


def rng_state() -> dict[str, Any]:
    """Snapshot of the python, numpy and torch (CPU and CUDA) global RNG states."""
    import torch

    state = {
        "python": random.getstate(),
        "numpy": _np_state(),
        "torch": torch.get_rng_state(),
    }
    if torch.cuda.is_available() and torch.cuda.is_initialized():
        state["cuda"] = torch.cuda.get_rng_state_all()
    return state


def set_rng_state(state: dict[str, Any]) -> None:
    """Restore a snapshot taken by `rng_state`."""
    import torch

    random.setstate(_to_tuple(state["python"]))
    name, keys, pos, has_gauss, cached = state["numpy"]
    np.random.set_state((name, np.asarray(keys, dtype=np.uint32), int(pos), int(has_gauss), float(cached)))
    torch.set_rng_state(state["torch"].cpu() if hasattr(state["torch"], "cpu") else state["torch"])
    if "cuda" in state and torch.cuda.is_available():
        torch.cuda.set_rng_state_all(state["cuda"])


def _np_state() -> list[Any]:
    # plain Python types only, so that checkpoints stay loadable with torch.load(weights_only=True)
    name, keys, pos, has_gauss, cached = np.random.get_state()
    return [name, keys.tolist(), int(pos), int(has_gauss), float(cached)]


def _to_tuple(x: Any) -> Any:
    if isinstance(x, list):
        return tuple(_to_tuple(v) for v in x)
    return x
