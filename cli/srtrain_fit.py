"""`srtrain fit`: train one (method, marker, scale) model on a store (default recipe, or --recipe paper)."""

from __future__ import annotations

import textwrap

import click

from srcaco2.trainers.recipes import RECIPE_DIFFERENCES, RECIPES

__all__ = ["fit", "build_config"]


def _help() -> str:
    """The command's help: what it does, then every paper/default recipe difference (one home)."""
    rows = "\n\n".join(
        f"\b\n  {d.key}: paper {d.paper}, default {d.default}.\n"
        + textwrap.indent(textwrap.fill(d.why[0].upper() + d.why[1:] + ".", 76), "    ")
        for d in RECIPE_DIFFERENCES
    )
    return (
        "Train a super-resolution model on the SR-CACO-2 task and keep the best by ROI PSNR.\n\n"
        "Writes OUT/config.yaml, last.pt (and last.prev.pt, the one before), best.pt, metrics.csv, "
        "val.csv (and tb/ with TensorBoard). A run folder whose run stopped before its first checkpoint "
        "is reused without --force. Under `torchrun --nproc_per_node N srtrain fit ...` it trains data "
        "parallel (rank 0 reports).\n\n"
        "Both recipes share the benchmark's task (batch 8 of 128² crops, 100 epochs, MSE − 5·SSIM19, "
        "ROI-biased crops, validation on the first 128 val windows of the official fold order, selection "
        "by ROI PSNR). The default trains it as the field trains SR networks (Adam, warm-up, cosine, "
        "gradient clipping) and stops at a divergence, naming the step, the batch and the keys that help; "
        "--recipe paper is the benchmark's release exactly, and diverges for the pre-upsampling networks "
        "within a few steps (in the original code too; benchmarks/train_health.py). They differ in:\n\n"
        + rows
    )


def build_config(store, method, scale, marker, config_path, overrides, recipe=None):
    """The run's config: --config file (or --recipe), then the explicit options, then --set."""
    import dataclasses

    from srcaco2.trainers.config import apply_overrides, load_config
    from srcaco2.trainers.recipes import recipe_config

    if config_path:
        if recipe:
            raise click.UsageError(
                f"--recipe {recipe} and --config {config_path} both set the whole configuration: give one "
                "(a saved config.yaml records its recipe)"
            )
        cfg = load_config(config_path)
    else:
        if not method or not scale or not marker:
            raise click.UsageError("give --method, --scale and --marker (or a --config file)")
        cfg = recipe_config(method, int(scale), marker, recipe=recipe or "default")
    sets = []
    if store:
        sets.append(f"data.store={store}")
    if scale:
        sets.append(f"data.scale={scale}")
    if marker:
        sets.append(f"data.marker={marker}")
    if method:
        sets.append(f"model.method={method.lower()}")
    cfg = apply_overrides(cfg, sets + list(overrides))
    if not cfg.data.store:
        raise click.UsageError("give --store (or data.store in the --config file)")
    return dataclasses.replace(cfg)


def _clock(seconds: float) -> str:
    """``1 h 05 min`` / ``4 min 10 s`` / ``12 s``."""
    s = max(0, int(round(seconds)))
    if s >= 3600:
        return f"{s // 3600} h {s % 3600 // 60:02d} min"
    return f"{s // 60} min {s % 60:02d} s" if s >= 60 else f"{s} s"


@click.command("fit", help=_help())
@click.option("--store", type=click.Path(), help="Store built by `srdata build`.")
@click.option("--method", help="Network name (see `srtrain methods`).")
@click.option("--scale", type=click.IntRange(2, 8), help="SR factor, a scale of the store.")
@click.option("--marker", help="A marker of the store (`srdata info STORE` lists them), e.g. CELL2.")
@click.option("--config", "config_path", type=click.Path(exists=True, dir_okay=False), help="A run.yaml.")
@click.option(
    "--recipe", type=click.Choice(RECIPES),
    help="default (Adam, warm-up, cosine, clipping, a divergence guard) or paper (the benchmark "
         "exactly, quirks included); the differences are listed below. Default: default.",
)  # fmt: skip
@click.option(
    "--set", "overrides", multiple=True, metavar="KEY=VALUE",
    help="Dotted override, e.g. --set train.epochs=5 --set model.overrides.num_features=16.",
)  # fmt: skip
@click.option("--out", "out_dir", required=True, type=click.Path(), help="Run directory.")
@click.option(
    "--init-from", "init_from", type=click.Path(exists=True),
    help="Fine-tune: start from these weights (a run of ours: its directory, best.pt or last.pt; an "
         "original run directory; a bare G-model.pth) with a fresh optimiser. Recorded as "
         "model.init_from in config.yaml.",
)  # fmt: skip
@click.option("--resume", is_flag=True, help="Continue the run in --out from its last.pt (or last.prev.pt).")
@click.option("--force", is_flag=True, help="Overwrite a previous run in --out.")
@click.option("--device", help="cpu or cuda (default: cuda when available).")
def fit(
    store, method, scale, marker, config_path, recipe, overrides, out_dir, init_from, resume, force, device
):
    import os
    from pathlib import Path

    from tqdm import tqdm

    from srcaco2.trainers.config import ConfigError
    from srcaco2.trainers.fit import RunDirError, TrainingDivergedError
    from srcaco2.trainers.fit import fit as run_fit

    rank = int(os.environ.get("RANK", "0"))
    if init_from:
        if resume:
            raise click.UsageError(
                "--init-from starts a new run from given weights; --resume continues the run in --out "
                "(its weights come from its last.pt): use one of them"
            )
        overrides = (*overrides, f"model.init_from={Path(init_from).resolve()}")
    try:
        if resume and not (store or method or scale or marker or config_path or overrides):
            cfg = None
        elif resume and not config_path:  # --set on a resumed run: start from the run's own config
            from pathlib import Path

            saved = Path(out_dir) / "config.yaml"
            cfg = build_config(store, method, scale, marker, saved if saved.exists() else None, overrides)
        else:
            cfg = build_config(store, method, scale, marker, config_path, overrides, recipe)
    except ConfigError as exc:
        raise click.UsageError(f"invalid run configuration (from --method/--scale/--marker, --config or "
                               f"--set): {exc}") from exc  # fmt: skip

    bar = None

    def callback(event, info):
        nonlocal bar
        if event == "start":
            if info.get("resume_problems"):
                click.echo(
                    f"resuming from {info['resumed_from']} ({'; '.join(info['resume_problems'])})", err=True
                )
            if info.get("init_from"):
                click.echo(f"initial weights: {info['init_from']}", err=True)
            if info.get("recipe_warning"):
                click.echo(f"warning: {info['recipe_warning']}", err=True)
            # the ETA comes from the measured step time, not from tqdm's rate: steps arrive in bursts
            # of train.sync_every and the first burst carries the start-up
            bar = tqdm(
                total=info["total_steps"], initial=info["step"], unit="step", desc="fit", dynamic_ncols=True,
                bar_format="{desc}: {percentage:3.0f}%|{bar}| {n_fmt}/{total_fmt} [{elapsed}{postfix}]",
            )  # fmt: skip
        elif event == "step" and bar is not None:
            bar.set_description("fit", refresh=False)
            bar.update(1)
            left = (bar.total - bar.n) * (info["step_time_s"] + info["data_time_s"])
            bar.set_postfix_str(
                f"ETA {_clock(left)}, loss {info['loss']:.4f}, lr {info['lr']:.2e}, "
                f"step {1e3 * info['step_time_s']:.0f} ms, data {1e3 * info['data_time_s']:.0f} ms"
            )
        elif event == "val_start" and bar is not None:
            bar.set_description(f"fit (validating at step {info['step']})")
        elif event == "val" and bar is not None:
            bar.set_description("fit")
            m, b = info["metrics"], info["bicubic"]
            best = " (ties the best)" if info.get("tie") else (" (best)" if info["is_best"] else "")
            bar.write(f"step {info['step']}: val ROI PSNR {m['roi_psnr']:.2f} dB "
                      f"(bicubic {b['roi_psnr']:.2f}), PSNR {m['psnr']:.2f} dB (bicubic {b['psnr']:.2f})"
                      + best)  # fmt: skip

    try:
        res = run_fit(cfg, out_dir, resume=resume, force=force, device=device, callback=callback)
    except KeyboardInterrupt:
        if bar is not None:
            bar.close()
        has_ckpt = any((Path(out_dir) / n).exists() for n in ("last.pt", "last.prev.pt"))
        how = (
            f"continue it from its last checkpoint with: srtrain fit --out {out_dir} --resume"
            if has_ckpt
            else "no checkpoint was written yet: rerun the same command to start again"
        )
        click.echo(f"interrupted (Ctrl-C); {how}", err=True)
        raise SystemExit(130) from None
    except (RunDirError, FileNotFoundError, TrainingDivergedError, ConfigError, ValueError, OSError) as exc:
        # CheckpointError (a damaged run, --init-from weights that do not fit) is a ValueError
        raise click.ClickException(str(exc) if rank == 0 else f"[rank {rank}] {exc}") from exc
    finally:
        if bar is not None:
            bar.close()
    if res.rank != 0:  # under torchrun only rank 0 validates and reports
        return
    best = "n/a" if res.best_metric is None else f"{res.best_metric:.3f} at step {res.best_step}"
    click.echo(f"trained {res.step} steps; best validation score {best}; run in {res.run_dir}")
