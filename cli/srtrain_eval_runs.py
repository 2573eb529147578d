"""`srtrain eval-runs`: every run under a directory evaluated in one process; Tables 4/5, paper delta."""

from __future__ import annotations

import time

import click

__all__ = ["eval_runs_cmd"]


def _split_list(values: tuple[str, ...]) -> list[str] | None:
    """``--methods a,b --methods c`` -> [a, b, c]; None when not given."""
    items = [v.strip() for value in values for v in value.split(",") if v.strip()]
    return items or None


@click.command("eval-runs")
@click.argument("root", type=click.Path())
@click.option("--store", required=True, type=click.Path(), help="Store built by `srdata build`.")
@click.option("--split", default="test", show_default=True, type=click.Choice(["train", "val", "test"]))
@click.option(
    "--out", "out_dir", required=True, type=click.Path(), help="Output directory (reused to resume)."
)
@click.option("--device", help="cpu or cuda (default: cuda when available).")
@click.option("--methods", multiple=True, help="Only these methods (comma-separated or repeated).")
@click.option(
    "--markers", multiple=True, help="Only these markers, e.g. CELL2 (comma-separated or repeated)."
)
@click.option("--scales", multiple=True, help="Only these scales, e.g. 4,8 (comma-separated or repeated).")
@click.option("--batch-size", default=1, show_default=True, type=click.IntRange(1), help="As `srtrain eval`.")
@click.option("--max-windows", type=click.IntRange(1), help="Only the first N windows of the split.")
@click.option("--no-bicubic", is_flag=True, help="Do not evaluate the bicubic baseline.")
@click.option("--dry-run", is_flag=True, help="Print what would be evaluated and stop.")
@click.option(
    "--select", type=click.Choice(["latest", "all"]), default="latest", show_default=True,
    help="Several runs of one method x scale x marker: evaluate the newest (the others are listed as "
    "skipped, naming the one kept) or all of them (the newest in the tables, the others in "
    "OUT/runs/<cell>.run2, ...).",
)  # fmt: skip
@click.option(
    "--alignment", type=click.Choice(["paper", "subpixel"]), default="paper", show_default=True,
    help="As `srtrain eval`; subpixel results go to OUT/runs/<cell>_subpixel, and the tables show both "
    "alignments side by side when OUT holds both (alignment_gain.md).",
)  # fmt: skip
def eval_runs_cmd(
    root,
    store,
    split,
    out_dir,
    device,
    methods,
    markers,
    scales,
    batch_size,
    max_windows,
    no_bicubic,
    dry_run,
    select,
    alignment,
):
    """Evaluate every trained run under ROOT on a split of a store, in one process.

    ROOT may hold original run directories (config_model.yml + best-models/G-model.pth, e.g. the
    benchmark's shared-trained-models archive, any subset, any depth) and runs of `srtrain fit`
    (best.pt). Each is evaluated exactly as `srtrain eval` would (same numbers), plus the bicubic
    baseline once per marker × scale; each marker × scale's windows are decoded once and shared.

    Writes OUT/runs/{method}_x{scale}_{marker}/ (windows.csv, summary.json, as `srtrain eval`),
    OUT/tables/ (Table 4 ROI, Table 5 full image and an FRC table as Markdown, CSV, LaTeX; on the
    test split also delta_paper.{md,csv}: ours − the paper's published numbers, cells beyond
    ±0.01 dB PSNR / ±0.0001 NRMSE and SSIM marked) and OUT/eval_runs.json.

    Run it again with the same OUT to resume: complete results are kept. A broken run (unreadable
    weights, a layout that fits no network, NaN output) is reported and the others go on; the exit
    status is 1 when any run failed.
    """
    from srcaco2.trainers.eval_runs import EvalRunsObserver, eval_runs, plan_jobs
    from srcaco2.trainers.run_discovery import discover_runs

    try:
        method_list = _split_list(methods)
        marker_list = [m.upper() for m in _split_list(markers) or []] or None
        scale_list = [int(s) for s in _split_list(scales) or []] or None
    except ValueError as exc:
        raise click.ClickException(f"--scales takes integers (2, 4, 8): {exc}") from exc
    filters = dict(methods=method_list, markers=marker_list, scales=scale_list)

    class _Cli(EvalRunsObserver):
        def __init__(self) -> None:
            self.bar = None
            self.runs_total = 0
            self.runs_done = 0
            self.t0 = time.perf_counter()

        def on_plan(self, discovery, jobs, n_windows):
            _print_plan(root, discovery, jobs, n_windows)
            self.runs_total = len(jobs)
            pending = sum(n_windows[(j.entry.marker, j.entry.scale)] for j in jobs if not j.done)
            if dry_run:
                return
            from tqdm import tqdm

            self.bar = tqdm(total=pending, unit="win", desc="eval-runs", dynamic_ncols=True)
            self._postfix()

        def _postfix(self, current: str = "") -> None:
            if self.bar is not None:
                self.bar.set_postfix_str(f"runs {self.runs_done}/{self.runs_total} {current}".rstrip())

        def on_decode(self, marker, scale, n):
            self._postfix(f"decoding {marker} x{scale} ({n} windows)")

        def on_run_start(self, job):
            self._postfix(job.entry.name)

        def on_windows(self, n):
            if self.bar is not None:
                self.bar.update(n)

        def on_run_end(self, outcome):
            self.runs_done += 1
            self._postfix()
            if outcome.status == "failed" and self.bar is not None:
                self.bar.write(
                    f"FAILED {outcome.job.entry.name} ({outcome.job.entry.path}): {outcome.reason}"
                )

    obs = _Cli()
    try:
        if dry_run:
            discovery = discover_runs(root, select=select, **filters)
            jobs, counts = plan_jobs(
                discovery, store, out_dir, split=split, bicubic=not no_bicubic, max_windows=max_windows,
                alignment=alignment,
            )  # fmt: skip
            obs.on_plan(discovery, jobs, counts)
            return
        report = eval_runs(
            root, store, out_dir, split=split, device=device, batch_size=batch_size, max_windows=max_windows,
            bicubic=not no_bicubic, observer=obs, select=select, alignment=alignment, **filters,
        )  # fmt: skip
    except KeyError as exc:
        raise click.ClickException(str(exc.args[0]) if exc.args else repr(exc)) from exc
    except (FileNotFoundError, ValueError, OSError) as exc:
        raise click.ClickException(str(exc)) from exc
    finally:
        if obs.bar is not None:
            obs.bar.close()
    _print_summary(report, time.perf_counter() - obs.t0)
    if report.failed:
        raise SystemExit(1)


def _print_plan(root, discovery, jobs, n_windows) -> None:
    n_orig = sum(r.kind == "original" for r in discovery.runs)
    n_ours = sum(r.kind == "ours" for r in discovery.runs)
    n_done = sum(j.done for j in jobs)
    click.echo(
        f"found {len(discovery.runs)} run(s) under {root} ({n_orig} original, {n_ours} of ours); "
        f"{len(jobs)} evaluation(s) incl. bicubic, {n_done} already complete (kept), "
        f"{len(discovery.skipped)} skipped, {len(discovery.broken)} broken"
    )
    for (marker, scale), n in n_windows.items():
        group = [j for j in jobs if (j.entry.marker, j.entry.scale) == (marker, scale)]
        click.echo(f"  {marker} x{scale}: {n} windows, {len(group)} evaluation(s)")
        for j in group:
            state = "done" if j.done else "todo"
            where = "" if j.entry.path is None else f"  {j.entry.path}"
            click.echo(f"    [{state}] {j.entry.name:<24} {j.entry.kind:<8}{where}")
    for s in discovery.skipped:
        click.echo(f"  skip   {s.path}: {s.reason}")
    for b in discovery.broken:
        click.echo(f"  BROKEN {b.path}: {b.reason}", err=True)


def _print_summary(report, seconds: float) -> None:
    from collections import Counter

    counts = Counter(o.status for o in report.outcomes)
    click.echo(
        f"done in {seconds:.0f} s: {counts.get('evaluated', 0)} evaluated, "
        f"{counts.get('resumed', 0)} kept from before, {counts.get('failed', 0)} failed, "
        f"{len(report.discovery.broken)} broken, "
        f"{len(report.discovery.skipped)} skipped"
    )
    for path, reason in report.failed:
        click.echo(f"  FAILED {path}: {reason}", err=True)
    if "delta_paper.md" in report.tables:
        head = report.tables["delta_paper.md"].read_text().splitlines()[2].split(";")[0]
        click.echo(f"  vs the paper: {head} (delta_paper.md)")
    if report.tables:
        click.echo(f"  tables: {report.out_dir / 'tables'} ({', '.join(sorted(report.tables))})")
    click.echo(
        f"  per-run results: {report.out_dir / 'runs'}; plan and status: {report.out_dir / 'eval_runs.json'}"
    )
