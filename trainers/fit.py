"""Training loop (`srtrain fit`): one (method, marker, scale) model on a store, resumable exactly.

`fit` builds the network, the loader and the optimiser from a `RunConfig`, trains with bf16
autocast on CUDA (fp32 on CPU; the loss and SSIM always in fp32), validates on the first N val
windows with the paper's metrics and keeps the best model by ROI PSNR (``best.pt``), and writes
``last.pt`` atomically (every ``train.checkpoint_every`` steps, at validation and at the end).
A checkpoint's ``training_state`` holds optimiser, scheduler, EMA, step, epoch, the loader's
mid-epoch state and the python/numpy/torch RNG states, so ``resume=True`` continues on the same
trajectory as an uninterrupted run. Under ``torchrun`` it runs data parallel (NCCL on GPUs, gloo
on CPU); rank 0 validates, logs and writes checkpoints.

The library reports through ``callback(event, info)``: ``"start"`` (total_steps,
iters_per_epoch, step), ``"step"`` (step, epoch, loss, mse, ssim, lr, step_time_s, data_time_s),
``"val"`` (step, metrics, best, is_best) and ``"end"``.
"""

from __future__ import annotations

import dataclasses
import logging
import math
import time
from collections.abc import Callable
from pathlib import Path
from typing import Any

from trainers._rundir import CsvLog, RunDirError, prepare_run_dir
from trainers.config import RunConfig, config_from_dict, config_to_dict, save_config

__all__ = ["FitResult", "TrainingDivergedError", "RunDirError", "fit", "val_interval", "TRAIN_FIELDS"]

log = logging.getLogger(__name__)

TRAIN_FIELDS = ["step", "epoch", "loss", "mse", "ssim", "lr", "step_time_s", "data_time_s"]
VAL_FIELDS = ["step", "epoch", "psnr", "nrmse", "ssim", "roi_psnr", "roi_nrmse", "roi_ssim", "is_best"]


class TrainingDivergedError(FloatingPointError):
    """The loss became NaN or infinite; the message names the step, the batch and the last checkpoint."""


@dataclasses.dataclass
class FitResult:
    """What a `fit` call did: the run directory, steps done, best validation score, per-step losses."""

    run_dir: Path
    step: int
    epoch: int
    best_metric: float | None
    best_step: int | None
    losses: list[float]
    model: Any = dataclasses.field(default=None, repr=False)
    """The trained network (unwrapped from DDP; the raw weights, not the EMA)."""


def val_interval(every: float, iters_per_epoch: int) -> int:
    """Steps between validations: ``max(1, floor(every · iters_per_epoch))`` if every <= 1, else every."""
    if every <= 1:
        return max(1, math.floor(every * iters_per_epoch))
    return int(every)


def _better(metric: str, new: float, best: float | None) -> bool:
    if best is None:
        return True
    return new <= best if "nrmse" in metric else new >= best  # ">=": a tie is a new best (SPEC §4.6)


def _make_train_loader(cfg: RunConfig, rank: int, world: int) -> Any:
    from srdata.loader import make_loader

    d = cfg.data
    return make_loader(
        d.store, split="train", scale=d.scale, marker=d.marker, batch_size=d.batch_size, h_size=d.h_size,
        mode="train", num_workers=d.num_workers, seed=cfg.train.seed, rank=rank, world_size=world,
        samples_per_epoch=d.samples_per_epoch, roi_bias=d.roi_bias, aligned=d.aligned, augment=d.augment,
        use_interpolated_low=d.use_interpolated_low, roi_threshold=d.roi_threshold, drop_last=True,
    )  # fmt: skip


def _make_val_loader(cfg: RunConfig) -> Any:
    from srdata.loader import make_loader

    d = cfg.data
    return make_loader(
        d.store, split="val", scale=d.scale, marker=d.marker, batch_size=cfg.eval.batch_size, h_size=d.h_size,
        mode="eval", max_windows=cfg.eval.val_windows,
    )  # fmt: skip


def fit(
    config: RunConfig | None,
    out_dir: str | Path,
    *,
    resume: bool = False,
    force: bool = False,
    device: str | None = None,
    callback: Callable[[str, dict[str, Any]], None] | None = None,
) -> FitResult:
    """Train one model; see the module docstring.

    Parameters
    ----------
    config : RunConfig or None
        The run's configuration (None with `resume`: the run directory's own ``config.yaml``).
        On resume the saved configuration is used; a different `config` only may change
        ``train.epochs`` / ``train.max_steps`` (to extend a run).
    out_dir : path
        Run directory (``config.yaml``, ``last.pt``, ``best.pt``, ``metrics.csv``, ``val.csv``).
    resume : bool
        Continue from ``out_dir/last.pt``.
    force : bool
        Overwrite a previous run in `out_dir`.
    device : str, optional
        ``"cpu"`` / ``"cuda"``; default CUDA when available.
    callback : callable, optional
        ``callback(event, info)`` for progress (events in the module docstring).

    Raises
    ------
    RunDirError
        `out_dir` holds another run and neither `resume` nor `force` is set.
    TrainingDivergedError
        NaN / Inf loss (names the step, the batch's (tile, y0, x0) and the last good checkpoint).
    OSError
        A checkpoint could not be written (e.g. disk full); the previous one stays valid.
    """
    import torch

    from trainers import _ddp
    from trainers._state import WeightEMA, build_optimizer, build_scheduler, rng_state, set_rng_state
    from trainers.checkpoints import load_checkpoint
    from trainers.losses import SRLoss
    from trainers.models import build_model

    dist = _ddp.init_distributed(device)
    if dist.is_main:  # only rank 0 checks / clears the run directory; the others wait for it
        out = prepare_run_dir(out_dir, resume=resume, force=force)
    _ddp.barrier(dist)
    out = Path(out_dir)
    ckpt = None
    if resume:
        ckpt = load_checkpoint(out / "last.pt", map_location="cpu")
        saved = config_from_dict(ckpt["config"])
        if config is not None:
            same = dataclasses.replace(
                config,
                train=dataclasses.replace(
                    config.train, epochs=saved.train.epochs, max_steps=saved.train.max_steps
                ),
            )
            if same != saved:
                raise ValueError(
                    f"--resume: the given configuration differs from {out / 'config.yaml'} in more than "
                    "train.epochs / train.max_steps; resume without --config/--set, or start a new run"
                )
            saved = dataclasses.replace(saved, train=config.train)
        config = saved
    if config is None:
        raise ValueError("fit needs a config unless resuming")
    cfg = config.validate()
    dev = dist.device
    amp = cfg.train.amp == "bf16" or (cfg.train.amp == "auto" and dev.type == "cuda")
    notify = callback if (callback is not None and dist.is_main) else (lambda e, i: None)

    torch.manual_seed(cfg.train.seed)
    model = build_model(cfg.model.method, cfg.data.scale, in_channels=1, **cfg.model.overrides).to(dev)
    if cfg.train.channels_last and dev.type == "cuda":
        model = model.to(memory_format=torch.channels_last)
    optimizer = build_optimizer(model.parameters(), cfg.optim)
    scheduler = build_scheduler(optimizer, cfg.optim)
    ema = WeightEMA(model, cfg.optim.ema_decay) if cfg.optim.ema_decay > 0 else None
    criterion = SRLoss(cfg.loss)
    loader = _make_train_loader(cfg, dist.rank, dist.world_size)
    ipe = len(loader)
    if ipe == 0:
        raise ValueError(
            f"the train split of {cfg.data.store} gives no full batch of {cfg.data.batch_size}; "
            "lower data.batch_size or raise data.samples_per_epoch"
        )
    total = (
        cfg.train.epochs * ipe
        if cfg.train.max_steps is None
        else min(cfg.train.max_steps, cfg.train.epochs * ipe)
    )
    v_every = val_interval(cfg.eval.every, ipe)

    step, best, best_step, loader_state = 0, None, None, None
    if ckpt is not None:
        ts = ckpt["training_state"]
        model.load_state_dict(ckpt["model"])
        optimizer.load_state_dict(ts["optimizer"])
        scheduler.load_state_dict(ts["scheduler"])
        if ema is not None and ts.get("ema") is not None:
            ema.load_state_dict(ts["ema"])
        step, best, best_step, loader_state = (
            ts["step"],
            ts.get("best"),
            ts.get("best_step"),
            ts.get("loader"),
        )
        set_rng_state(ts["rng"])
        log.info("resuming %s at step %d (epoch %d)", out, step, step // ipe)
    train_log = CsvLog(out / "metrics.csv", TRAIN_FIELDS)
    val_log = CsvLog(out / "val.csv", VAL_FIELDS)
    if dist.is_main:
        save_config(cfg, out / "config.yaml")
        train_log.truncate_after(step)
        val_log.truncate_after(step)
    net = model
    if dist.distributed:
        from torch.nn.parallel import DistributedDataParallel

        net = DistributedDataParallel(model, device_ids=[dev.index] if dev.type == "cuda" else None)
    tb = _tensorboard(out, cfg) if dist.is_main else None
    last_good = out / "last.pt" if (out / "last.pt").exists() else None

    def meta(epoch: int) -> dict[str, Any]:
        return {
            "method": cfg.model.method,
            "scale": cfg.data.scale,
            "marker": cfg.data.marker,
            "in_channels": 1,
            "overrides": dict(cfg.model.overrides),
            "step": step,
            "epoch": epoch,
            "select_metric": cfg.eval.select_metric,
            "best": best,
            "best_step": best_step,
        }

    def save(name: str, epoch: int, model_state: dict, training: bool) -> Path:
        from trainers.checkpoints import save_checkpoint

        state = None
        if training:
            state = {
                "optimizer": optimizer.state_dict(),
                "scheduler": scheduler.state_dict(),
                "ema": ema.state_dict() if ema is not None else None,
                "step": step,
                "epoch": epoch,
                "loader": loader.state_dict(),
                "rng": rng_state(),
                "best": best,
                "best_step": best_step,
            }
        try:
            return save_checkpoint(
                out / name,
                model_state=model_state,
                config=config_to_dict(cfg),
                meta=meta(epoch),
                training_state=state,
            )
        except OSError as exc:
            raise OSError(
                f"could not write checkpoint {out / name} at step {step} ({exc}); the previous "
                f"checkpoint {last_good or '(none yet)'} is intact: free disk space and rerun with "
                "--resume"
            ) from exc

    def validate(epoch: int) -> None:
        nonlocal best, best_step
        from trainers.evaluate import evaluate_model
        from trainers.metrics import METRIC_NAMES, mean_metrics

        eval_model = model
        if ema is not None:
            eval_model = build_model(
                cfg.model.method, cfg.data.scale, in_channels=1, **cfg.model.overrides
            ).to(dev)
            ema.copy_to(eval_model)
        rows = evaluate_model(eval_model, _make_val_loader(cfg), cfg.data.scale, device=dev, amp=amp)
        means = mean_metrics(rows)
        value = means[cfg.eval.select_metric]
        is_best = _better(cfg.eval.select_metric, value, best)
        if is_best:
            best, best_step = value, step
            save("best.pt", epoch, _cpu_state(eval_model), training=False)
        val_log.write(
            {"step": step, "epoch": epoch, **{k: means[k] for k in METRIC_NAMES}, "is_best": int(is_best)}
        )
        if tb is not None:
            for k in METRIC_NAMES:
                tb.add_scalar(f"val/{k}", means[k], step)
        notify("val", {"step": step, "metrics": means, "best": best, "is_best": is_best})

    notify("start", {"total_steps": total, "iters_per_epoch": ipe, "step": step})
    losses: list[float] = []
    model.train()
    try:
        while step < total:
            epoch = step // ipe
            loader.set_epoch(epoch)
            if loader_state is not None and step % ipe:
                loader.load_state_dict(loader_state)
            loader_state = None
            t_data = time.perf_counter()
            for batch in loader:
                data_time = time.perf_counter() - t_data
                t_step = time.perf_counter()
                torch.manual_seed(cfg.train.seed + step)  # per-step seeding, as the original (resume-safe)
                lr_img = batch["lr"].to(dev, non_blocking=True)
                hr = batch["hr"].to(dev, non_blocking=True)
                if cfg.train.channels_last and dev.type == "cuda":
                    lr_img = lr_img.contiguous(memory_format=torch.channels_last)
                with torch.autocast(dev.type, dtype=torch.bfloat16, enabled=amp):
                    outputs = net(lr_img)
                loss, parts = criterion(outputs, hr)
                loss_all = _ddp.all_mean(loss.detach(), dist)
                if not torch.isfinite(loss_all):
                    where = ", ".join(
                        f"({int(t)}, {int(y)}, {int(x)})"
                        for t, y, x in zip(batch["tile"], batch["y0"], batch["x0"], strict=False)
                    )
                    raise TrainingDivergedError(
                        f"loss is {float(loss_all)} at step {step + 1} (epoch {epoch}); batch windows "
                        f"(tile, y0, x0): {where}; last good checkpoint: {last_good or '(none yet)'}. "
                        "Lower optim.lr, set optim.grad_clip, or resume from the checkpoint"
                    )
                optimizer.zero_grad(set_to_none=True)
                loss.backward()
                if cfg.optim.grad_clip > 0:
                    torch.nn.utils.clip_grad_norm_(model.parameters(), cfg.optim.grad_clip)
                lr_now = optimizer.param_groups[0]["lr"]
                optimizer.step()
                if ema is not None:
                    ema.update(model)
                step += 1
                if cfg.optim.schedule == "original" or step % ipe == 0:
                    scheduler.step()
                value = float(loss_all)
                losses.append(value)
                info = {
                    "step": step,
                    "epoch": epoch,
                    "loss": value,
                    "mse": float(parts["mse"]),
                    "ssim": float(parts["ssim"]),
                    "lr": lr_now,
                    "step_time_s": time.perf_counter() - t_step,
                    "data_time_s": data_time,
                }
                if dist.is_main and (step % cfg.train.log_every == 0 or step == total):
                    train_log.write(info)
                    if tb is not None:
                        tb.add_scalar("train/loss", value, step)
                        tb.add_scalar("train/lr", lr_now, step)
                notify("step", info)
                done = step >= total
                ep_now = step // ipe
                if step % v_every == 0 or done:
                    if dist.is_main:
                        validate(ep_now)
                    _ddp.barrier(dist)
                if (
                    (cfg.train.checkpoint_every and step % cfg.train.checkpoint_every == 0)
                    or step % v_every == 0
                    or done
                ):
                    if dist.is_main:
                        last_good = save("last.pt", ep_now, _cpu_state(model), training=True)
                    _ddp.barrier(dist)
                if done:
                    break
                t_data = time.perf_counter()
    finally:
        if tb is not None:
            tb.close()
        _ddp.cleanup(dist)
    notify("end", {"step": step, "best": best, "best_step": best_step})
    return FitResult(
        run_dir=out,
        step=step,
        epoch=step // ipe,
        best_metric=best,
        best_step=best_step,
        losses=losses,
        model=model,
    )


def _cpu_state(model: Any) -> dict[str, Any]:
    return {k: v.detach().cpu().clone() for k, v in model.state_dict().items()}


def _tensorboard(out: Path, cfg: RunConfig) -> Any:
    if not cfg.train.tensorboard:
        return None
    try:
        from torch.utils.tensorboard import SummaryWriter
    except Exception:  # tensorboard is optional
        log.info("TensorBoard is not installed; logging to CSV only")
        return None
    return SummaryWriter(str(out / "tb"))
