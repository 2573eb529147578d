"""Training-state pieces: MyStepLR, weight EMA, RNG snapshots, optimiser and model-input helpers.

Everything here is saved in (and restored from) a checkpoint's ``training_state`` so that a
resumed run follows the same trajectory as an uninterrupted one.
"""

from __future__ import annotations

import random
from typing import TYPE_CHECKING, Any

import numpy as np

if TYPE_CHECKING:  # pragma: no cover
    import torch

    from srcaco2.trainers.config import OptimConfig

__all__ = [
    "MyStepLR",
    "WeightEMA",
    "build_optimizer",
    "build_scheduler",
    "lr_at",
    "rng_state",
    "set_rng_state",
]


def lr_at(t: int, *, lr0: float, step_size: int, gamma: float, min_lr: float) -> float:
    """MyStepLR value after `t` scheduler steps: ``max(lr0 · gamma ** (t // step_size), min_lr)``."""
    return max(lr0 * gamma ** (t // step_size), min_lr)


def MyStepLR(optimizer: torch.optim.Optimizer, *, step_size: int, gamma: float, min_lr: float) -> Any:
    """Step decay with a floor (the original's ``MyStepLR``), as a `LambdaLR` (state-dict friendly).

    Each parameter group's lr is ``max(base_lr · gamma ** (t // step_size), min_lr)`` after `t`
    calls of ``scheduler.step()``.
    """
    import torch

    bases = [g["lr"] for g in optimizer.param_groups]

    def factor(i: int):
        base = bases[i]
        return lambda t: lr_at(t, lr0=base, step_size=step_size, gamma=gamma, min_lr=min_lr) / base

    return torch.optim.lr_scheduler.LambdaLR(optimizer, [factor(i) for i in range(len(bases))])


def build_optimizer(params: Any, config: OptimConfig) -> torch.optim.Optimizer:
    """SGD (momentum, Nesterov) or Adam from the config."""
    import torch

    if config.name == "sgd":
        return torch.optim.SGD(
            params,
            lr=config.lr,
            momentum=config.momentum,
            nesterov=config.nesterov and config.momentum > 0,
            weight_decay=config.weight_decay,
        )
    return torch.optim.Adam(
        params, lr=config.lr, betas=(0.9, 0.999), eps=1e-8, weight_decay=config.weight_decay
    )


def build_scheduler(optimizer: torch.optim.Optimizer, config: OptimConfig) -> Any:
    """MyStepLR (step_size, gamma, min_lr) or a constant lr."""
    import torch

    if config.scheduler == "mysteplr":
        return MyStepLR(optimizer, step_size=config.step_size, gamma=config.gamma, min_lr=config.min_lr)
    return torch.optim.lr_scheduler.LambdaLR(optimizer, lambda t: 1.0)


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
