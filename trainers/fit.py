"""Training loop (`srtrain fit`): one (method, marker, scale) model on a store, resumable exactly.

`fit` builds the network, the loader and the optimiser from a `RunConfig` and hands them to the
engine (`srcaco2.trainers.engine`: `train_step`, `TrainLoop`, `Validator`). It trains with bf16 autocast
on CUDA (fp32 on CPU; the loss and SSIM always in fp32), validates on the first N val windows with
the paper's metrics and keeps the best model by ROI PSNR (``best.pt``), and writes ``last.pt``
atomically (every ``train.checkpoint_every`` steps, at validation and at the end), keeping the one
before as ``last.prev.pt``. No checkpoint ever holds a non-finite weight and a NaN score is never
best. A checkpoint's ``training_state`` holds optimiser, scheduler, EMA, step, epoch, the loader's
mid-epoch state and the python/numpy/torch RNG states, so ``resume=True`` continues on the same
trajectory as an uninterrupted run (from ``last.prev.pt``, with a warning, when ``last.pt`` is
damaged). ``model.init_from`` starts from given weights (fine-tuning) with a fresh optimiser.
Under ``torchrun`` it runs data parallel (NCCL on GPUs, gloo on CPU); rank 0 validates, logs and
writes checkpoints.

The step never waits for the device: per-step losses are read every ``train.sync_every`` steps
and before each validation / checkpoint (`srcaco2.trainers.engine.monitor`), so progress events arrive in
bursts of that many steps.

The library reports through ``callback(event, info)``: ``"start"`` (total_steps,
iters_per_epoch, step, resumed_from, resume_problems, init_from, recipe_warning), ``"step"`` (step,
epoch, loss, mse, ssim, grad_norm, skipped, lr, step_time_s, data_time_s), ``"val_start"`` (step),
``"val"`` (step, metrics, best, is_best, tie: equal to the previous best, bicubic: the bicubic
baseline's metrics on the same windows) and ``"end"``.
"""

from __future__ import annotations

import contextlib
import dataclasses
import logging
from collections.abc import Callable, Iterator
from pathlib import Path
from typing import Any

from srcaco2.trainers._rundir import CsvLog, RunDirError, prepare_run_dir
from srcaco2.trainers.config import RunConfig, config_from_dict, save_config
from srcaco2.trainers.engine.guard import TrainingDivergedError
from srcaco2.trainers.engine.loop import TRAIN_FIELDS, VAL_FIELDS, cpu_state, val_interval
from srcaco2.trainers.engine.validation import better as _better

__all__ = ["FitResult", "TrainingDivergedError", "RunDirError", "fit", "val_interval", "TRAIN_FIELDS"]

log = logging.getLogger(__name__)

_cpu_state = cpu_state  # the older private name
_ = (_better, VAL_FIELDS)  # re-exported for callers of the older module layout


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
    resumed_from: Path | None = None
    """The checkpoint a resumed run continued from (``last.pt``, or ``last.prev.pt`` as fallback)."""
    rank: int = 0
    """This process's rank (0 without torchrun); only rank 0 validates and holds `best_metric`."""


def _make_train_loader(cfg: RunConfig, rank: int, world: int, *, pin_memory: bool) -> Any:
    from srcaco2.srdata.loader import make_loader

    d = cfg.data
    settings = dataclasses.replace(d.loader, pin_memory=d.loader.pin_memory and pin_memory)
    return make_loader(
        d.store, split="train", scale=d.scale, marker=d.marker, batch_size=d.batch_size, h_size=d.h_size,
        mode="train", settings=settings, seed=cfg.train.seed, rank=rank, world_size=world, drop_last=True,
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
    srcaco2.srdata.lease.StoreLockedError
        Another live `fit` writes into `out_dir` (its lease ``<out_dir>.lease`` names it).
    TrainingDivergedError
        NaN / Inf loss (names the step, the batch's (tile, y0, x0) and the last good checkpoint).
    OSError
        A checkpoint could not be written (e.g. disk full); the previous one stays valid.
    """
    from srcaco2.trainers import _ddp

    dist = _ddp.init_distributed(device)
    out = Path(out_dir)
    created = not out.exists()
    try:
        with _run_folder_lease(out, dist.is_main):
            return _fit(config, out, dist, resume=resume, force=force, callback=callback)
    except BaseException:
        if created and dist.is_main:
            _remove_if_empty(out)
        raise
    finally:
        _ddp.cleanup(dist)


@contextlib.contextmanager
def _run_folder_lease(out: Path, main: bool) -> Iterator[None]:
    """Hold the run folder's lease (``<out>.lease``, `srcaco2.srdata.lease`) on the main rank, taken
    before any decision about reusing `out`: a second `fit` into the same folder is refused with one
    line naming the holder instead of mixing two runs' files."""
    if not main:
        yield
        return
    from srcaco2.srdata.lease import store_lease

    out.absolute().parent.mkdir(parents=True, exist_ok=True)
    with store_lease(out, operation="srtrain fit", what="run folder"):
        yield


def _remove_if_empty(path: Path) -> None:
    """Remove the run directory `fit` created when it failed before writing anything into it."""
    try:
        if path.is_dir() and not any(path.iterdir()):
            path.rmdir()
    except OSError:
        pass


def _fit(
    config: RunConfig | None,
    out: Path,
    dist: Any,
    *,
    resume: bool,
    force: bool,
    callback: Callable[[str, dict[str, Any]], None] | None,
) -> FitResult:
    import torch

    from srcaco2.trainers import _ddp
    from srcaco2.trainers._state import (
        WeightEMA,
        build_optimizer,
        build_scheduler,
        set_rng_state,
        set_scheduler_step,
    )
    from srcaco2.trainers.checkpoints import load_init_weights, load_resume_checkpoint
    from srcaco2.trainers.engine.loop import TrainLoop
    from srcaco2.trainers.engine.step import StepContext
    from srcaco2.trainers.engine.validation import Validator
    from srcaco2.trainers.losses import SRLoss
    from srcaco2.trainers.models import build_model

    if dist.is_main:  # only rank 0 checks / clears the run directory; the others wait for it
        prepare_run_dir(out, resume=resume, force=force)
    _ddp.barrier(dist)
    ckpt, resumed_from, problems = None, None, []
    if resume:
        ckpt, resumed_from, problems = load_resume_checkpoint(out, map_location="cpu")
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

    torch.manual_seed(cfg.train.seed)  # once: the state is saved in and restored from last.pt
    model = build_model(cfg.model.method, cfg.data.scale, in_channels=1, **cfg.model.overrides)
    init_info = None
    if ckpt is None and cfg.model.init_from:
        init_info = load_init_weights(
            model, cfg.model.init_from, method=cfg.model.method, scale=cfg.data.scale
        )
        log.info("initialised %s x%d from %s", cfg.model.method, cfg.data.scale, init_info["source"])
    model = model.to(dev)
    channels_last = cfg.train.channels_last and dev.type == "cuda"
    if channels_last:
        model = model.to(memory_format=torch.channels_last)
    optimizer = build_optimizer(model.parameters(), cfg.optim)
    ema = WeightEMA(model, cfg.optim.ema_decay) if cfg.optim.ema_decay > 0 else None
    loader = _make_train_loader(cfg, dist.rank, dist.world_size, pin_memory=dev.type == "cuda")
    ipe = len(loader)
    if ipe == 0:
        raise ValueError(
            f"the train split of {cfg.data.store} gives no full batch of {cfg.data.batch_size}; "
            "lower data.batch_size or raise data.loader.samples_per_epoch"
        )
    total = (
        cfg.train.epochs * ipe
        if cfg.train.max_steps is None
        else min(cfg.train.max_steps, cfg.train.epochs * ipe)
    )
    scheduler = build_scheduler(optimizer, cfg.optim, total_steps=total, iters_per_epoch=ipe)
    validator = Validator(cfg, model, ema, dev, amp) if dist.is_main else None

    step, best, best_step, loader_state = 0, None, None, None
    if ckpt is not None:
        ts = ckpt["training_state"]
        model.load_state_dict(ckpt["model"])
        optimizer.load_state_dict(ts["optimizer"])
        scheduler.load_state_dict(ts["scheduler"])
        set_scheduler_step(scheduler, ts["step"])  # the lr is a function of the step alone
        if ema is not None and ts.get("ema") is not None:
            ema.load_state_dict(ts["ema"])
        step, best, best_step, loader_state = (
            ts["step"],
            ts.get("best"),
            ts.get("best_step"),
            ts.get("loader"),
        )
        set_rng_state(ts["rng"])
        _ddp.barrier(dist)  # every rank has read its checkpoint before rank 0 sets a bad one aside
        if dist.is_main and resumed_from.name != "last.pt":
            _set_aside_bad_last(out, problems, resumed_from)
        log.info("resuming %s at step %d (epoch %d) from %s", out, step, step // ipe, resumed_from.name)
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
    ctx = StepContext(
        net=net,
        model=model,
        criterion=SRLoss(cfg.loss),
        optimizer=optimizer,
        device=dev,
        amp=amp,
        channels_last=channels_last,
        grad_clip=cfg.optim.grad_clip,
        skip_nonfinite=cfg.train.divergence == "report",
        ema=ema,
        dist=dist if dist.distributed else None,
    )
    tb = _tensorboard(out, cfg) if dist.is_main else None
    loop = TrainLoop(
        cfg=cfg,
        out=out,
        dist=dist,
        ctx=ctx,
        scheduler=scheduler,
        loader=loader,
        validator=validator,
        total=total,
        ipe=ipe,
        v_every=val_interval(cfg.eval.every, ipe),
        step=step,
        best=best,
        best_step=best_step,
        loader_state=loader_state,
        last_good=resumed_from,
        notify=notify,
        train_log=train_log,
        val_log=val_log,
        tb=tb,
    )
    notify(
        "start",
        {
            "total_steps": total,
            "iters_per_epoch": ipe,
            "step": step,
            "resumed_from": None if resumed_from is None else str(resumed_from),
            "resume_problems": list(problems),
            "init_from": None if init_info is None else init_info["source"],
            "recipe_warning": _recipe_warning(cfg),
        },
    )
    try:
        loop.run()
    finally:
        if tb is not None:
            tb.close()
        if validator is not None:
            validator.close()
        loader.close()  # stop the persistent workers now, not whenever the loader is collected
    notify("end", {"step": loop.step, "best": loop.best, "best_step": loop.best_step})
    return FitResult(
        run_dir=out,
        step=loop.step,
        epoch=loop.step // ipe,
        best_metric=loop.best,
        best_step=loop.best_step,
        losses=loop.losses,
        model=model,
        resumed_from=resumed_from,
        rank=dist.rank,
    )


def _recipe_warning(cfg: RunConfig) -> str | None:
    """`PAPER_RECIPE_WARNING` for a paper-recipe run without gradient clipping (also logged), else None."""
    from srcaco2.trainers.recipes import PAPER_RECIPE_WARNING

    if cfg.recipe != "paper" or cfg.optim.grad_clip > 0:
        return None
    log.warning("%s", PAPER_RECIPE_WARNING)
    return PAPER_RECIPE_WARNING


def _set_aside_bad_last(out: Path, problems: list[str], used: Path) -> None:
    """Rename a damaged last.pt to last.bad.pt (the next save must not keep it as last.prev.pt)."""
    bad = out / "last.pt"
    if bad.exists():
        bad.replace(out / "last.bad.pt")
    log.warning(
        "resuming from %s: %s%s",
        used,
        "; ".join(problems),
        " (set aside as last.bad.pt)" if (out / "last.bad.pt").exists() else "",
    )


def _tensorboard(out: Path, cfg: RunConfig) -> Any:
    if not cfg.train.tensorboard:
        return None
    try:
        from torch.utils.tensorboard import SummaryWriter
    except Exception:  # tensorboard is optional
        log.info("TensorBoard is not installed; logging to CSV only")
        return None
    return SummaryWriter(str(out / "tb"))
