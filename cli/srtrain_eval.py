"""`srtrain eval` (a model or bicubic on a split, the paper's metrics) and `srtrain table` (Tables 4/5)."""

from __future__ import annotations

import json

import click

__all__ = ["eval_cmd", "table"]


@click.command("eval")
@click.option("--store", required=True, type=click.Path(), help="Store built by `srdata build`.")
@click.option("--split", default="test", show_default=True, type=click.Choice(["train", "val", "test"]))
@click.option(
    "--marker", required=True, help="A marker of STORE (`srdata info STORE` lists them), e.g. CELL2."
)
@click.option("--scale", required=True, type=click.IntRange(2, 8), help="SR factor, a scale of STORE.")
@click.option(
    "--checkpoint", type=click.Path(), help="best.pt / last.pt of `srtrain fit`, or an original run."
)
@click.option("--method", help="`bicubic` for the baseline; with --checkpoint, the method it must hold.")
@click.option("--batch-size", default=1, show_default=True, type=click.IntRange(1))
@click.option("--max-windows", type=click.IntRange(1), help="Only the first N windows of the split.")
@click.option("--device", help="cpu or cuda (default: cuda when available).")
@click.option(
    "--out", "out_dir", required=True, type=click.Path(), help="Directory for windows.csv, summary.json."
)
@click.option("--overwrite", is_flag=True, help="Replace an evaluation already in --out.")
@click.option("--json", "as_json", is_flag=True, help="Print the summary as JSON.")
@click.option(
    "--alignment", type=click.Choice(["paper", "subpixel"]), default="paper", show_default=True,
    help="paper: the benchmark's registration (LR moved by whole LR pixels); subpixel: the prediction "
    "resampled by the residual TV-L1 shift, border cropped (beyond the paper; needs "
    "`srdata register-subpixel`).",
)  # fmt: skip
def eval_cmd(
    store,
    split,
    marker,
    scale,
    checkpoint,
    method,
    batch_size,
    max_windows,
    device,
    out_dir,
    overwrite,
    as_json,
    alignment,
):
    """Evaluate a checkpoint (or --method bicubic) on a split of a store.

    Writes one row per window (tile, window, y0, x0 and PSNR/NRMSE/SSIM, full image and ROI) to
    OUT/windows.csv and the split's means to OUT/summary.json (docs/protocol.md#evaluation: 8-bit rounding,
    border crop = scale, valid 11×11 SSIM, ROI thresholds 4..10).

    --alignment subpixel (beyond the paper; docs/protocol.md#subpixel-alignment) resamples each
    prediction by the residual TV-L1 shift the paper's whole-LR-pixel registration leaves, and crops
    ceil(s/2 + 1/2) + 3 px more from every side, so scores measure reconstruction, not alignment.

    Beyond the paper's protocol, each row also holds the Fourier ring correlation resolution of
    the prediction against the ground truth (fixed 1/7 threshold, same 8-bit border-cropped
    images): frc_px in HR pixels and frc_um in micrometres (the store's HR pixel size; empty when
    unknown). Lower is finer. A network that outputs NaN or inf is an error.
    """
    from tqdm import tqdm

    from srcaco2.trainers.evaluate import evaluate

    bar = None  # created on the first batch, so that a refused input prints only its error

    def progress(done: int, total: int) -> None:
        nonlocal bar
        if bar is None:
            bar = tqdm(desc=f"eval {method or checkpoint} {split}", unit="batch", leave=False, total=total)
        bar.total = total
        bar.update(done - bar.n)

    try:
        res = evaluate(
            store, split=split, marker=marker, scale=int(scale), checkpoint=checkpoint, method=method,
            batch_size=batch_size, max_windows=max_windows, device=device, out_dir=out_dir, progress=progress,
            overwrite=overwrite, alignment=alignment,
        )  # fmt: skip
    except KeyError as exc:  # KeyError's str() adds quotes: show its message as is
        raise click.ClickException(str(exc.args[0]) if exc.args else repr(exc)) from exc
    except (FileNotFoundError, ValueError, OSError) as exc:
        raise click.ClickException(str(exc)) from exc
    finally:
        if bar is not None:
            bar.close()
    if as_json:
        click.echo(json.dumps({**res.meta, "metrics": res.summary}, indent=2))
        return
    m = res.summary
    how = "" if alignment == "paper" else f", {alignment} alignment"
    click.echo(f"{res.meta['method']} x{scale} {marker} {split} ({res.meta['n_windows']} windows{how})")
    click.echo(f"  full image: PSNR {m['psnr']:.2f} dB  NRMSE {m['nrmse']:.4f}  SSIM {m['ssim']:.4f}")
    click.echo(
        f"  ROI:        PSNR {m['roi_psnr']:.2f} dB  NRMSE {m['roi_nrmse']:.4f}  SSIM {m['roi_ssim']:.4f}"
    )
    um = "" if m.get("frc_um") is None else f" = {m['frc_um']:.3f} µm"
    click.echo(f"  FRC resolution (1/7 threshold, beyond the paper): {m['frc_px']:.2f} HR px{um}")
    click.echo(f"  -> {out_dir}", err=True)


@click.command("table")
@click.argument("runs", nargs=-1, required=True, type=click.Path(exists=True))
@click.option("--out", "out_dir", required=True, type=click.Path(), help="Directory for the tables.")
@click.option(
    "--frc", is_flag=True,
    help="Also write table_frc.{md,csv,tex}: mean FRC resolution (HR px, µm), beyond the paper's protocol.",
)  # fmt: skip
@click.option(
    "--compare-paper", is_flag=True,
    help="Also write delta_paper.{md,csv}: ours − the paper's Tables 4/5 (test split only).",
)  # fmt: skip
def table(runs, out_dir, frc, compare_paper):
    """Collect `srtrain eval` outputs (RUNS: their directories) into the paper's Tables 4 and 5.

    Writes table4_roi.{md,csv,tex} and table5_full.{md,csv,tex} to OUT (best per scale in bold)
    and prints the Markdown tables. With --compare-paper, the difference to the paper's published
    numbers per method, scale, marker and metric; cells beyond ±0.01 dB PSNR / ±0.0001 NRMSE and
    SSIM are marked (the paper prints 2 and 4 decimals). Evaluations made with --alignment subpixel
    get their own tables (*_subpixel) and, beside paper-aligned ones of the same cells,
    alignment_gain.{md,csv}: both alignments side by side.
    """
    from srcaco2.trainers.alignment_tables import write_tables_by_alignment
    from srcaco2.trainers.evaluate import read_eval

    try:
        summaries = []
        for r in runs:
            s = read_eval(r)
            s["_path"] = r
            summaries.append(s)
        paths = write_tables_by_alignment(summaries, out_dir, frc=frc, compare_paper=compare_paper)
    except (FileNotFoundError, ValueError) as exc:
        raise click.ClickException(str(exc)) from exc
    shown = ("table4_roi", "table5_full", "table_frc", "delta_paper", "table4_roi_subpixel",
             "table5_full_subpixel", "alignment_gain")  # fmt: skip
    for name in (f"{stem}.md" for stem in shown):
        if name in paths:
            click.echo(paths[name].read_text())
    click.echo(f"tables written to {out_dir}", err=True)
