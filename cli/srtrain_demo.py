"""`srtrain demo`: the whole pipeline on realistic synthetic data, on a CPU, in a few minutes."""

from __future__ import annotations

import click

__all__ = ["demo"]


@click.command("demo")
@click.option(
    "--out", "out_dir", default="runs/demo", show_default=True, type=click.Path(), help="Output folder."
)
@click.option("--epochs", type=click.IntRange(1), help="Training epochs (default 3).")
@click.option("--samples-per-epoch", type=click.IntRange(8), help="Crops per epoch (default 200).")
@click.option("--tiles", type=click.IntRange(3), help="Synthetic tiles (default 4).")
@click.option("--hr-size", type=click.IntRange(1024), help="HR side of a synthetic tile, px (default 1536).")
@click.option("--set", "overrides", multiple=True, metavar="KEY=VALUE", help="Extra run-config override.")
def demo(out_dir, epochs, samples_per_epoch, tiles, hr_size, overrides):
    """Realistic synthetic tiles (noisy, offset LR scans) -> registered store -> short CPU training
    (full-size VDSR x4, CELL2, the default recipe, 150 steps) -> model vs bicubic on the synthetic
    test split (Tables 4/5 layout, FRC) and on the real SR-CACO-2 sample -> OUT/report.md with
    tables, training curves and full-resolution panels (links relative to OUT).
    """
    import dataclasses

    from tqdm import tqdm

    from srcaco2.trainers.config import ConfigError
    from srcaco2.trainers.demo import DemoSettings, run_demo

    changes = {k: v for k, v in dict(epochs=epochs, samples_per_epoch=samples_per_epoch, tiles=tiles,
                                     hr_size=hr_size).items() if v is not None}  # fmt: skip
    settings = dataclasses.replace(DemoSettings(), extra=tuple(overrides), **changes)
    bar = None

    def fit_callback(event, info):
        nonlocal bar
        if event == "start":
            bar = tqdm(total=info["total_steps"], unit="step", desc="fit", dynamic_ncols=True)
        elif event == "step" and bar is not None:
            bar.update(1)
            bar.set_postfix(loss=f"{info['loss']:.4f}", step_ms=f"{1e3 * info['step_time_s']:.0f}",
                            data_ms=f"{1e3 * info['data_time_s']:.0f}")  # fmt: skip
        elif event == "val" and bar is not None:
            bar.write(
                f"step {info['step']}: val ROI PSNR {info['metrics']['roi_psnr']:.2f} dB "
                f"(bicubic {info['bicubic']['roi_psnr']:.2f} dB)"
            )
        elif event == "end" and bar is not None:
            bar.close()

    try:
        res = run_demo(out_dir, settings, stage=lambda s: click.echo(f"[demo] {s}", err=True),
                       fit_callback=fit_callback)  # fmt: skip
    except (ConfigError, ValueError, OSError) as exc:
        raise click.ClickException(str(exc)) from exc
    click.echo(f"ROI PSNR on the test split: {settings.method} {res.sr_roi_psnr:.2f} dB, "
               f"bicubic {res.bicubic_roi_psnr:.2f} dB")  # fmt: skip
    if res.real_sr_roi_psnr is not None:
        click.echo(f"ROI PSNR on the real sample: {settings.method} {res.real_sr_roi_psnr:.2f} dB, "
                   f"bicubic {res.real_bicubic_roi_psnr:.2f} dB")  # fmt: skip
    click.echo(f"report: {res.report}")
    if not res.beats_bicubic:
        click.echo("warning: the model did not beat bicubic on the synthetic test split; "
                   "train longer (--epochs)", err=True)  # fmt: skip
    if res.beats_bicubic_on_real is False:
        click.echo("warning: the model did not beat bicubic on the real sample (see the report)", err=True)
