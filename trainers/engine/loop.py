"""The training loop: epochs of `train_step`, scheduler, logs, validation and checkpoints.

`TrainLoop.run` trains until ``total`` steps. Host reads happen only between steps, at flush
points: every ``train.sync_every`` steps, before each validation / checkpoint and at the end
(`srcaco2.trainers.engine.monitor.StepMonitor`). At a validation or checkpoint step it also checks, on the
device and in one read, that every weight (and EMA weight) is finite, and stops with
`TrainingDivergedError` otherwise, so ``last.pt`` / ``best.pt`` never hold a NaN or an infinity and
the error's "last good checkpoint" is a finite one. ``last.pt`` is written with
``keep_previous=True`` (the one before it stays as ``last.prev.pt``).

Randomness: the global torch RNG is seeded once at the start of a run and its state (with python's,
numpy's and CUDA's) is saved in every ``last.pt`` and restored on resume; the loader's samples
depend on (seed, epoch, position) only. A resumed run therefore follows the uninterrupted run's
trajectory step for step without reseeding every step. ``train.reseed`` (the paper recipe) re-seeds
them with ``seed + step`` before every step, as the original did.

Divergence: each flushed step goes through `srcaco2.trainers.engine.guard.DivergenceGuard` (stop or
report, ``train.divergence``); a validation after a divergence is never best, and a first
validation more than `FAR_BELOW_BICUBIC_DB` below bicubic is warned about.
"""

from __future__ import annotations

import dataclasses
import logging
import math
import time
from collections.abc import Callable
from pathlib import Path
from typing import Any

from srcaco2.trainers.engine.guard import HELP, DivergenceGuard, TrainingDivergedError, describe_windows
from srcaco2.trainers.engine.monitor import StepMonitor, StepRecord
from srcaco2.trainers.engine.step import StepContext, batch_to_device, train_step
from srcaco2.trainers.engine.validation import better

__all__ = ["TrainLoop", "TRAIN_FIELDS", "VAL_FIELDS", "cpu_state", "reseed", "val_interval"]

log = logging.getLogger(__name__)

TRAIN_FIELDS = [
    "step",
    "epoch",
    "loss",
    "mse",
    "ssim",
    "grad_norm",
    "skipped",
    "lr",
    "step_time_s",
    "data_time_s",
]
VAL_FIELDS = ["step", "epoch", "psnr", "nrmse", "ssim", "roi_psnr", "roi_nrmse", "roi_ssim", "is_best"]


FAR_BELOW_BICUBIC_DB = 3.0
"""A first validation this far (ROI PSNR, dB) below bicubic is warned about."""


def val_interval(every: float, iters_per_epoch: int) -> int:
    """Steps between validations: ``max(1, floor(every · iters_per_epoch))`` if every <= 1, else every."""
    if every <= 1:
        return max(1, math.floor(every * iters_per_epoch))
    return int(every)


def reseed(seed: int) -> None:
    """Seed python's, numpy's and torch's (CPU and CUDA) global RNGs with `seed`."""
    import random

    import numpy as np
    import torch

    random.seed(seed)
    np.random.seed(seed % 2**32)
    torch.manual_seed(seed)


def cpu_state(model: Any) -> dict[str, Any]:
    """A detached CPU copy of `model`'s state_dict."""
    return {k: v.detach().cpu().clone() for k, v in model.state_dict().items()}


@dataclasses.dataclass
class TrainLoop:
    """A run's training state and the loop over it (built by `srcaco2.trainers.fit.fit`).

    Attributes
    ----------
    cfg : RunConfig
    out : Path
        Run directory.
    dist : srcaco2.trainers._ddp.DistInfo
    ctx : StepContext
        The step's pieces (model, optimiser, criterion, EMA, device, precision).
    scheduler : the learning-rate scheduler
    loader : srcaco2.srdata.loader.PatchLoader (train)
    validator : srcaco2.trainers.engine.validation.Validator or None (None on ranks > 0)
    total, ipe, v_every : steps in all, per epoch, between validations
    step, best, best_step : where the run stands (restored on resume)
    loader_state : the loader's mid-epoch state from a resumed checkpoint, or None
    last_good : the newest finite ``last.pt`` (or the checkpoint resumed from)
    notify : ``notify(event, info)``; a no-op on ranks > 0
    train_log, val_log : srcaco2.trainers._rundir.CsvLog
    tb : TensorBoard writer or None
    """

    cfg: Any
    out: Path
    dist: Any
    ctx: StepContext
    scheduler: Any
    loader: Any
    validator: Any
    total: int
    ipe: int
    v_every: int
    step: int = 0
    best: float | None = None
    best_step: int | None = None
    loader_state: dict[str, Any] | None = None
    last_good: Path | None = None
    notify: Callable[[str, dict[str, Any]], None] = lambda event, info: None
    train_log: Any = None
    val_log: Any = None
    tb: Any = None
    losses: list[float] = dataclasses.field(default_factory=list)
    monitor: StepMonitor = dataclasses.field(default_factory=StepMonitor)
    guard: DivergenceGuard | None = None
    validations: int = 0

    def __post_init__(self) -> None:
        if self.guard is None:
            t = self.cfg.train
            self.guard = DivergenceGuard(t.divergence, t.explode_mse, t.max_skipped)

    # ----------------------------------------------------------------------------------- checks
    def _flush(self) -> None:
        """Read the pending steps; log them; let the divergence guard stop the run."""
        for row, rec in self.monitor.flush():
            finite_or_skipped = math.isfinite(row["loss"]) or row["skipped"]
            if finite_or_skipped:
                self._log_step(row)
            self.guard.check(row, rec.windows, self.last_good)

    def _check_weights(self) -> None:
        """Stop unless every weight (and EMA weight) is finite: one device read (all ranks)."""
        from srcaco2.trainers.checkpoints import nonfinite_keys

        bad = nonfinite_keys(self.ctx.model.state_dict())
        kind = "weights"
        if not bad and self.ctx.ema is not None:
            bad, kind = nonfinite_keys(self.ctx.ema.shadow), "EMA weights"
        if not bad:
            return
        rec: StepRecord | None = self.monitor.last
        where = describe_windows(rec.windows) if rec is not None else "(unknown)"
        raise TrainingDivergedError(
            f"{kind} are non-finite after the update of step {self.step} (its loss was finite; "
            f"{len(bad)} tensor(s), e.g. {', '.join(bad[:3])}); batch windows (tile, y0, x0): {where}; "
            f"nothing was saved at this step; last good checkpoint: {self.last_good or '(none yet)'}. "
            f"To recover: {HELP}, or resume from the checkpoint"
        )

    # ---------------------------------------------------------------------------------- logging
    def _log_step(self, info: dict[str, Any]) -> None:
        step = info["step"]
        self.losses.append(info["loss"])
        if self.dist.is_main and (step % self.cfg.train.log_every == 0 or step == self.total):
            self.train_log.write(info)
            if self.tb is not None:
                self.tb.add_scalar("train/loss", info["loss"], step)
                self.tb.add_scalar("train/lr", info["lr"], step)
        self.notify("step", info)

    # ------------------------------------------------------------------------------ checkpoints
    def _intensity(self) -> dict[str, Any] | None:
        """The training store's intensity scaling of the marker (how `predict --input` maps raw grey
        levels of a new image as the model saw them), read once."""
        if not hasattr(self, "_intensity_attrs"):
            from srcaco2.srdata.store import Store

            try:
                st = Store.open(self.cfg.data.store)
                mapping = st.intensity.select([st.marker_index(self.cfg.data.marker)])
                self._intensity_attrs = None if mapping.kind == "divide" else mapping.to_attrs()
            except Exception:  # noqa: BLE001 - the store went away: the checkpoint says nothing
                self._intensity_attrs = None
        return self._intensity_attrs

    def _meta(self, epoch: int) -> dict[str, Any]:
        cfg = self.cfg
        return {
            "intensity": self._intensity(),
            "method": cfg.model.method,
            "scale": cfg.data.scale,
            "marker": cfg.data.marker,
            "in_channels": 1,
            "overrides": dict(cfg.model.overrides),
            "step": self.step,
            "epoch": epoch,
            "select_metric": cfg.eval.select_metric,
            "best": self.best,
            "best_step": self.best_step,
        }

    def _save(self, name: str, epoch: int, model_state: dict[str, Any], training: bool) -> Path:
        from srcaco2.trainers._state import rng_state
        from srcaco2.trainers.checkpoints import save_checkpoint
        from srcaco2.trainers.config import config_to_dict

        state = None
        if training:
            ctx = self.ctx
            state = {
                "optimizer": ctx.optimizer.state_dict(),
                "scheduler": self.scheduler.state_dict(),
                "ema": ctx.ema.state_dict() if ctx.ema is not None else None,
                "step": self.step,
                "epoch": epoch,
                "loader": self.loader.state_dict(),
                "rng": rng_state(),
                "best": self.best,
                "best_step": self.best_step,
            }
        path = self.out / name
        try:
            return save_checkpoint(
                path,
                model_state=model_state,
                config=config_to_dict(self.cfg),
                meta=self._meta(epoch),
                training_state=state,
                keep_previous=training,
            )
        except OSError as exc:
            raise OSError(
                f"could not write checkpoint {path} at step {self.step} ({exc}); the previous "
                f"checkpoint {self.last_good or '(none yet)'} is intact: free disk space and rerun with "
                "--resume"
            ) from exc

    # ------------------------------------------------------------------------------- validation
    def _validate(self, epoch: int) -> None:
        from srcaco2.trainers.engine.validation import BadValidationMetricError, bad_image_metric
        from srcaco2.trainers.metrics import METRIC_NAMES

        self.notify("val_start", {"step": self.step})
        eval_model, means, rows = self.validator.run()
        metric = self.cfg.eval.select_metric
        value = means[metric]
        tainted = self.guard.tainted
        is_best = better(metric, value, self.best) and not tainted
        tie = is_best and self.best is not None and value == self.best
        self.guard.validated()
        self.validations += 1
        if not math.isfinite(value):
            log.warning("validation at step %d: %s is %s (finite weights); not a candidate for best.pt",
                        self.step, metric, value)  # fmt: skip
        elif tainted:
            log.warning("validation at step %d: the run diverged since the last validation; its %s %.4g is "
                        "not a candidate for best.pt", self.step, metric, value)  # fmt: skip
        bicubic = self.validator.bicubic()
        if self.validations == 1 and means["roi_psnr"] < bicubic["roi_psnr"] - FAR_BELOW_BICUBIC_DB:
            log.warning(
                "first validation (step %d): ROI PSNR %.2f dB is %.1f dB below bicubic's %.2f dB on the same "
                "windows; a short run may simply not have caught up yet, but if it does not recover: %s",
                self.step, means["roi_psnr"], bicubic["roi_psnr"] - means["roi_psnr"], bicubic["roi_psnr"],
                HELP,
            )  # fmt: skip
        if is_best:
            self.best, self.best_step = value, self.step
            self._save("best.pt", epoch, cpu_state(eval_model), training=False)
        self.val_log.write(
            {
                "step": self.step,
                "epoch": epoch,
                **{k: means[k] for k in METRIC_NAMES},
                "is_best": int(is_best),
            }
        )
        if self.tb is not None:
            for k in METRIC_NAMES:
                self.tb.add_scalar(f"val/{k}", means[k], self.step)
        self.notify(
            "val",
            {
                "step": self.step,
                "metrics": means,
                "best": self.best,
                "is_best": is_best,
                "tie": tie,
                "bicubic": bicubic,
            },  # fmt: skip
        )
        bad = bad_image_metric(rows) if self.cfg.eval.abort_on_bad_metric else None
        if bad is not None:
            raise BadValidationMetricError(
                f"validation at step {self.step}: {bad}. The paper recipe stops here as the original code "
                f"did (it exited silently with status 0); best.pt holds the best score so far "
                f"({self.best if self.best is None else f'{self.best:.4g}'} at step {self.best_step}). "
                "To train on: --set eval.abort_on_bad_metric=false"
            )

    # ------------------------------------------------------------------------------------- loop
    def run(self) -> None:
        """Train from `step` to `total` (see the module docstring)."""
        from srcaco2.trainers import _ddp

        cfg, ctx, dist = self.cfg, self.ctx, self.dist
        train = cfg.train
        ctx.model.train()
        self.monitor.restart_clock()
        while self.step < self.total:
            epoch = self.step // self.ipe
            self.loader.set_epoch(epoch)
            if self.loader_state is not None and self.step % self.ipe:
                self.loader.load_state_dict(self.loader_state)
            self.loader_state = None
            t_data = time.perf_counter()
            for batch in self.loader:
                data_time = time.perf_counter() - t_data
                lr_img, hr = batch_to_device(batch, ctx.device, channels_last=ctx.channels_last)
                lr_now = ctx.optimizer.param_groups[0]["lr"]
                if train.reseed:  # the original's set_seed(seed + step) before every step
                    reseed(train.seed + self.step)
                out = train_step(ctx, lr_img, hr)
                self.step += 1
                self.scheduler.step()  # every step: the lr is a function of the step (_state.lr_factor)
                windows = {k: batch[k] for k in ("tile", "y0", "x0") if k in batch}
                self.monitor.add(self.step, epoch, out, lr=lr_now, data_time_s=data_time, windows=windows)
                done = self.step >= self.total
                validate = self.step % self.v_every == 0 or (done and cfg.eval.at_end)
                checkpoint = (
                    validate
                    or done
                    or bool(train.checkpoint_every and self.step % train.checkpoint_every == 0)
                )
                if checkpoint or self.step % train.sync_every == 0:
                    self._flush()
                if checkpoint:
                    self._check_weights()
                    ep_now = (self.step - 1) // self.ipe  # the epoch this step belongs to (0-based)
                    if validate:
                        if dist.is_main:
                            self._validate(ep_now)
                        _ddp.barrier(dist)
                    if dist.is_main:
                        saved = self._save("last.pt", ep_now, cpu_state(ctx.model), training=True)
                        # finite weights can still hold an exploded network: after a divergence, last.pt is
                        # no longer a good checkpoint to name (and it overwrote the one that was)
                        self.last_good = None if self.guard.ever_diverged else saved
                    _ddp.barrier(dist)
                    self.monitor.restart_clock()
                if done:
                    break
                t_data = time.perf_counter()
        self._flush()
