"""Per-step values kept on the device and read in one transfer: losses, finite check, timings.

`StepMonitor.add` records a step's device scalars with host-side facts (step, epoch, learning
rate, data wait, the batch's windows); `StepMonitor.flush` stacks every pending scalar, reads
them with ONE device-to-host copy and returns one row per step (the ``metrics.csv`` fields) with
its record. The loop flushes every ``train.sync_every`` steps and before any validation or
checkpoint and hands each row to the divergence guard (`srcaco2.trainers.engine.guard`), so no
checkpoint is written after a non-finite loss.

Step times: the host does not wait for the device inside a step, so one step's device time cannot
be measured without a synchronisation. ``step_time_s`` of each step is the wall time since the
previous flush (minus data waits and the work between steps: validation, checkpoints), shared
equally by the steps read in the flush: the device's throughput over that span.
"""

from __future__ import annotations

import dataclasses
import time
from collections.abc import Mapping
from typing import Any

from srcaco2.trainers.engine.step import StepOutput

__all__ = ["StepRecord", "StepMonitor"]


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

    def flush(self) -> list[tuple[dict[str, Any], StepRecord]]:
        """Read every pending step in one device-to-host transfer.

        Returns
        -------
        list of (row, record)
            For each pending step, in order: ``step, epoch, loss, mse, ssim, grad_norm, skipped, lr,
            step_time_s, data_time_s`` (host values; the loss may be NaN / infinite) and its record.
        """
        import torch

        if not self.pending:
            return []
        pending, self.pending = self.pending, []
        nan = float("nan")
        flat = torch.stack(
            [
                t.detach().float().reshape(())
                for r in pending
                for t in (r.out.loss, r.out.mse, r.out.ssim)
                + ((r.out.grad_norm,) if r.out.grad_norm is not None else ())
            ]
        )
        values = iter(flat.cpu().tolist())  # the one host read
        now = time.perf_counter()
        busy = max(0.0, now - self._span_start - sum(r.data_time_s for r in pending))
        per_step = busy / len(pending)
        self._span_start = now
        out: list[tuple[dict[str, Any], StepRecord]] = []
        for rec in pending:
            loss, mse, ssim = next(values), next(values), next(values)
            norm = next(values) if rec.out.grad_norm is not None else nan
            row = {
                "step": rec.step,
                "epoch": rec.epoch,
                "loss": loss,
                "mse": mse,
                "ssim": ssim,
                "grad_norm": norm,
                "skipped": int(rec.out.skipped),
                "lr": rec.lr,
                "step_time_s": per_step,
                "data_time_s": rec.data_time_s,
            }
            out.append((row, rec))
            self.last = rec
        return out
