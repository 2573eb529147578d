"""Per-step values kept on the device and read in one transfer: losses, finite check, timings.

`StepMonitor.add` records a step's device scalars with host-side facts (step, epoch, learning
rate, data wait, the batch's windows); `StepMonitor.flush` stacks every pending scalar, reads
them with ONE device-to-host copy and returns one row per step (the ``metrics.csv`` fields), or
the first step whose loss is NaN / infinite. The loop flushes every ``train.sync_every`` steps and
before any validation or checkpoint, so no checkpoint is written after a non-finite loss.

Step times: the host does not wait for the device inside a step, so one step's device time cannot
be measured without a synchronisation. ``step_time_s`` of each step is the wall time since the
previous flush (minus data waits and the work between steps: validation, checkpoints), shared
equally by the steps read in the flush: the device's throughput over that span.
"""

from __future__ import annotations

import dataclasses
import math
import time
from collections.abc import Mapping
from typing import Any

from srcaco2.trainers.engine.step import StepOutput

__all__ = ["TrainingDivergedError", "StepRecord", "StepMonitor", "describe_windows"]


class TrainingDivergedError(FloatingPointError):
    """The loss or the weights became NaN or infinite; the message names the step, the batch and the
    last good (finite) checkpoint."""


def describe_windows(windows: Mapping[str, Any] | None) -> str:
    """``(tile, y0, x0), ...`` of a batch's provenance columns (host tensors or arrays of shape (B,))."""
    if not windows:
        return "(unknown)"
    return ", ".join(
        f"({int(t)}, {int(y)}, {int(x)})"
        for t, y, x in zip(windows["tile"], windows["y0"], windows["x0"], strict=False)
    )


@dataclasses.dataclass
class StepRecord:
    """One step waiting for its values: device scalars plus what the host already knows."""

    step: int
    epoch: int
    lr: float
    data_time_s: float
    windows: Mapping[str, Any] | None
    out: StepOutput


class StepMonitor:
    """Pending steps of a run, read every few steps (see the module docstring)."""

    def __init__(self) -> None:
        self.pending: list[StepRecord] = []
        self.last: StepRecord | None = None
        """The last step read (its windows name the batch of a later non-finite-weights stop)."""
        self._span_start = time.perf_counter()

    def restart_clock(self) -> None:
        """Exclude the time since the last flush (validation, checkpoint) from the next step times."""
        self._span_start = time.perf_counter()

    def add(
        self,
        step: int,
        epoch: int,
        out: StepOutput,
        *,
        lr: float,
        data_time_s: float,
        windows: Mapping[str, Any] | None = None,
    ) -> None:
        """Record a finished step (its values stay on the device)."""
        self.pending.append(StepRecord(step, epoch, float(lr), float(data_time_s), windows, out))

    def flush(self) -> tuple[list[dict[str, Any]], StepRecord | None, float | None]:
        """Read every pending step in one device-to-host transfer.

        Returns
        -------
        rows : list of dict
            ``step, epoch, loss, mse, ssim, lr, step_time_s, data_time_s`` for each pending step
            up to (not including) the first non-finite loss.
        bad : StepRecord or None
            The first step whose loss is NaN / infinite.
        bad_loss : float or None
            Its loss.
        """
        import torch

        if not self.pending:
            return [], None, None
        pending, self.pending = self.pending, []
        flat = torch.stack(
            [t.detach().float().reshape(()) for r in pending for t in (r.out.loss, r.out.mse, r.out.ssim)]
        )
        values = flat.cpu().tolist()  # the one host read
        now = time.perf_counter()
        busy = max(0.0, now - self._span_start - sum(r.data_time_s for r in pending))
        per_step = busy / len(pending)
        self._span_start = now
        rows: list[dict[str, Any]] = []
        for i, rec in enumerate(pending):
            loss, mse, ssim = values[3 * i : 3 * i + 3]
            if not math.isfinite(loss):
                return rows, rec, loss
            rows.append(
                {
                    "step": rec.step,
                    "epoch": rec.epoch,
                    "loss": loss,
                    "mse": mse,
                    "ssim": ssim,
                    "lr": rec.lr,
                    "step_time_s": per_step,
                    "data_time_s": rec.data_time_s,
                }
            )
            self.last = rec
        return rows, None, None
