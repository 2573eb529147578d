"""One optimiser step, the same for `srcaco2.trainers.fit.fit` and `srcaco2.benchmarks.train_step`.

`train_step` only queues device work: forward (bf16 autocast when asked), the configured loss,
backward, gradient clipping, the optimiser step and the weight EMA. It never reads a value back
to the host (no ``.item()``, ``float()``, ``bool()`` of a tensor, no ``torch.isfinite`` branch), so
on CUDA the host can prepare the next step while the GPU runs this one; the loss it returns stays
on the device (`srcaco2.trainers.engine.monitor.StepMonitor` reads many at once). Under DDP the returned
loss is the mean over ranks (an asynchronous all-reduce on NCCL).

A non-finite loss therefore still updates the weights; the loop reads the losses before every
validation and checkpoint and stops there, so such weights are never saved. Under
``skip_nonfinite`` (the ``paper`` recipe's ``train.divergence=report``: the original code) the step
reads its loss back first and skips the update of a non-finite batch, at the cost of one host read
per step.
"""

from __future__ import annotations

import dataclasses
from collections.abc import Callable, Mapping
from typing import TYPE_CHECKING, Any

if TYPE_CHECKING:  # pragma: no cover
    import torch

    from srcaco2.trainers._ddp import DistInfo
    from srcaco2.trainers._state import WeightEMA

__all__ = ["StepContext", "StepOutput", "batch_to_device", "train_step"]


@dataclasses.dataclass
class StepContext:
    """What one step needs; built once per run.

    Attributes
    ----------
    net : torch.nn.Module
        What is called on the LR batch (the model, or its DDP wrapper).
    model : torch.nn.Module
        The unwrapped model (parameters to clip, weights for the EMA).
    criterion : callable
        ``criterion(outputs, hr) -> (loss, {"mse": t, "ssim": t})`` (`srcaco2.trainers.losses.SRLoss`).
    optimizer : torch.optim.Optimizer
    device : torch.device
    amp : bool
        bf16 autocast of the forward pass (the loss always runs in float32).
    channels_last : bool
        Feed the network channels-last inputs (CUDA).
    grad_clip : float
        Max global gradient norm (0 = off).
    skip_nonfinite : bool
        Read the loss back before the update and skip the batch when it is NaN / infinite.
    ema : WeightEMA, optional
        Updated after every optimiser step.
    dist : DistInfo, optional
        Data-parallel group: the returned loss is averaged over ranks.
    """

    net: Any
    model: Any
    criterion: Callable[..., tuple[Any, Mapping[str, Any]]]
    optimizer: Any
    device: Any
    amp: bool = False
    channels_last: bool = False
    grad_clip: float = 0.0
    skip_nonfinite: bool = False
    ema: WeightEMA | None = None
    dist: DistInfo | None = None


@dataclasses.dataclass(frozen=True)
class StepOutput:
    """Device scalars of one step (detached float32 ``()`` tensors, not yet read by the host).

    Attributes
    ----------
    loss : the step's loss (mean over ranks under DDP)
    mse, ssim : the final output's MSE and SSIM on this rank
    grad_norm : the global L2 norm of the gradients before clipping (this rank; NaN when skipped)
    skipped : True when the batch was skipped for a non-finite loss (``skip_nonfinite`` only)
    """

    loss: Any
    mse: Any
    ssim: Any
    grad_norm: Any = None
    skipped: bool = False


def batch_to_device(
    batch: Mapping[str, Any], device: Any, *, channels_last: bool = False
) -> tuple[torch.Tensor, torch.Tensor]:
    """The batch's LR and HR on `device`: non-blocking copies (asynchronous from pinned memory).

    Parameters
    ----------
    batch : mapping with ``lr`` (B, C, h, w) and ``hr`` (B, C, s·h, s·w) float32 in [0, 1]
        As `srcaco2.srdata.loader.PatchLoader` yields (page-locked when CUDA is available and the loader's
        ``pin_memory`` is on).
    device : torch.device
    channels_last : bool
        Return `lr` in channels-last memory format.

    Returns
    -------
    lr, hr : torch.Tensor on `device`
    """
    import torch

    lr = batch["lr"].to(device, non_blocking=True)
    hr = batch["hr"].to(device, non_blocking=True)
    if channels_last:
        lr = lr.contiguous(memory_format=torch.channels_last)
    return lr, hr


def train_step(ctx: StepContext, lr: torch.Tensor, hr: torch.Tensor) -> StepOutput:
    """One optimiser step on a batch, without any host synchronisation.

    Parameters
    ----------
    ctx : StepContext
    lr : (B, C, h, w) float32 in [0, 1] on ``ctx.device``
    hr : (B, C, s·h, s·w) float32 in [0, 1] on ``ctx.device``

    Returns
    -------
    StepOutput
        The loss (all-reduced mean under DDP), MSE and SSIM as device scalars.
    """
    import torch

    from srcaco2.trainers._ddp import all_mean

    with torch.autocast(ctx.device.type, dtype=torch.bfloat16, enabled=ctx.amp):
        outputs = ctx.net(lr)
    loss, parts = ctx.criterion(outputs, hr)
    ctx.optimizer.zero_grad(set_to_none=True)
    if ctx.skip_nonfinite:  # one host read per step (paper only); every rank skips together under DDP
        seen = loss.detach() if ctx.dist is None else all_mean(loss.detach(), ctx.dist)
        if not bool(torch.isfinite(seen)):
            nan = torch.full((), float("nan"), device=loss.device)
            return StepOutput(loss=seen, mse=parts["mse"], ssim=parts["ssim"], grad_norm=nan, skipped=True)
    loss.backward()
    # the norm before clipping; max_norm=inf measures it without changing the gradients
    norm = torch.nn.utils.clip_grad_norm_(ctx.model.parameters(), ctx.grad_clip or float("inf"))
    ctx.optimizer.step()
    if ctx.ema is not None:
        ctx.ema.update(ctx.model)
    value = loss.detach()
    if ctx.dist is not None:
        value = all_mean(value, ctx.dist)
    return StepOutput(loss=value, mse=parts["mse"], ssim=parts["ssim"], grad_norm=norm.detach())
