"""Evaluate every trained run under a directory in one process: ``srtrain eval-runs``.

The benchmark's published archive holds 144 original run directories (docs/protocol.md#weights-archive:
``config_model.yml`` + ``best-models/G-model.pth``); runs of this toolkit hold ``best.pt``.
`srcaco2.trainers.run_discovery.discover_runs` finds both at any depth and says what it skips and
why; `eval_runs` evaluates
each exactly as ``srtrain eval`` does (`srcaco2.trainers.evaluate.evaluate_decoded`, the same code path,
hence the same numbers bit for bit) plus the bicubic baseline once per marker × scale, with every
(marker, scale)'s windows decoded once (`srcaco2.trainers.decoded_windows.decode_windows`) and
reused by all the runs of that pair.

Output directory ``OUT``::

    OUT/runs/{method}_x{scale}_{marker}/windows.csv, summary.json   (as `srtrain eval` writes them)
    OUT/tables/table4_roi.{md,csv,tex}, table5_full.{md,csv,tex}, table_frc.{md,csv,tex}
    OUT/tables/delta_paper.{md,csv}                                  (test split: ours − paper)
    OUT/eval_runs.json                                               (what was found, skipped, failed)

With ``alignment="subpixel"`` (`srcaco2.trainers.alignment`, beyond the paper) each result goes to
``OUT/runs/{method}_x{scale}_{marker}_subpixel/`` instead, so one OUT can hold both alignments;
the tables then add ``*_subpixel`` tables and ``alignment_gain.{md,csv}`` (both side by side).

Resumable: a run whose ``summary.json`` is present (written last, atomically) and describes the
same store, split, checkpoint and window count is not evaluated again, so a run killed mid-way
and started again ends with the same files as an uninterrupted one. A broken run (unreadable
weights, a layout that fits no network, NaN output) is recorded with its path and reason and the
others go on.
"""

from __future__ import annotations

import dataclasses
import json
import logging
from collections.abc import Iterable, Sequence
from pathlib import Path
from typing import Any

from srcaco2.trainers.run_discovery import Discovery, RunEntry, Skipped, discover_runs

__all__ = [
    "Job",
    "Outcome",
    "EvalRunsReport",
    "EvalRunsObserver",
    "plan_jobs",
    "eval_runs",
]

log = logging.getLogger(__name__)


@dataclasses.dataclass(frozen=True)
class Job:
    """A run (or bicubic) with its output directory and whether a complete result is there."""

    entry: RunEntry
    out: Path
    done: bool


@dataclasses.dataclass(frozen=True)
class Outcome:
    """What happened to a job: ``status`` ``"evaluated"``, ``"resumed"`` (complete result kept) or
    ``"failed"`` (``reason``); ``summary`` the split's means when there is a result."""

    job: Job
    status: str
    reason: str | None = None
    summary: dict[str, Any] | None = None


@dataclasses.dataclass
class EvalRunsReport:
    """Everything `eval_runs` did; ``failed`` counts failed jobs and broken runs."""

    discovery: Discovery
    jobs: list[Job]
    outcomes: list[Outcome]
    tables: dict[str, Path]
    out_dir: Path

    @property
    def failed(self) -> list[tuple[Path | None, str]]:
        """(path, reason) of every run that could not be evaluated."""
        out = [(b.path, b.reason) for b in self.discovery.broken]
        out += [(o.job.entry.path, str(o.reason)) for o in self.outcomes if o.status == "failed"]
        return out


class EvalRunsObserver:
    """Callbacks of `eval_runs` (all optional; the CLI draws its plan and progress bar with them)."""

    def on_plan(
        self, discovery: Discovery, jobs: Sequence[Job], n_windows: dict[tuple[str, int], int]
    ) -> None:
        """Before any work: what was found, skipped, and the jobs (``done`` ones are kept)."""

    def on_decode(self, marker: str, scale: int, n_windows: int) -> None:
        """A (marker, scale)'s windows are about to be decoded."""

    def on_run_start(self, job: Job) -> None:
        """A job starts (after its windows are decoded)."""

    def on_windows(self, n: int) -> None:
        """`n` more windows were scored."""

    def on_run_end(self, outcome: Outcome) -> None:
        """A job ended (evaluated, kept from a previous run, or failed)."""


# -------------------------------------------------------------------------------------- discovery
# ----------------------------------------------------------------------------------------- planning
def _complete(out: Path, entry: RunEntry, store: str, split: str, n_windows: int, alignment: str) -> bool:
    """True when `out` holds a finished evaluation of `entry` on the same data."""
    from srcaco2.trainers.evaluate import read_eval

    if not (out / "windows.csv").is_file():
        return False
    try:
        s = read_eval(out)
    except (OSError, ValueError):
        return False

    def same_path(a: Any, b: Path | None) -> bool:
        if a is None or b is None:
            return a is None and b is None
        return Path(str(a)).resolve() == b.resolve()

    return (
        s.get("split") == split
        and str(s.get("method")) == entry.method
        and int(s.get("scale", -1)) == entry.scale
        and s.get("marker") == entry.marker
        and s.get("n_windows") == n_windows
        and s.get("alignment", "paper") == alignment
        and same_path(s.get("store"), Path(store))
        and same_path(s.get("checkpoint"), entry.path)
    )


def _count_windows(store: str, split: str, marker: str, scale: int, max_windows: int | None) -> int:
    from srcaco2.srdata.datasets import WindowDataset

    ds = WindowDataset(store, split, scale, marker, max_windows=max_windows)
    try:
        return len(ds)
    finally:
        ds.close()


def plan_jobs(
    discovery: Discovery,
    store: str | Path,
    out_dir: str | Path,
    *,
    split: str = "test",
    bicubic: bool = True,
    max_windows: int | None = None,
    alignment: str = "paper",
) -> tuple[list[Job], dict[tuple[str, int], int]]:
    """The jobs (bicubic first within each marker × scale) and the window count per pair.

    Runs whose marker or scale the store does not hold move to ``discovery.skipped``.

    Raises
    ------
    StoreFormatError, ValueError
        Not a store, or an unknown split.
    """
    from srcaco2.srdata.schema import SPLITS
    from srcaco2.srdata.store import Store

    store = str(store)
    attrs = Store.open(store).attrs
    if split not in SPLITS:
        raise ValueError(f"split={split!r} is not one of {', '.join(SPLITS)}")
    kept: list[RunEntry] = []
    for r in discovery.runs:
        if r.marker not in attrs.markers or r.scale not in attrs.scales:
            discovery.skipped.append(
                Skipped(
                    r.path or Path(store),
                    f"{r.name}: the store holds markers {attrs.markers} and scales {list(attrs.scales)}",
                )  # fmt: skip
            )
        else:
            kept.append(r)
    discovery.runs = kept
    pairs = sorted({(r.marker, r.scale) for r in kept}, key=lambda p: (p[1], p[0]))
    counts = {p: _count_windows(store, split, p[0], p[1], max_windows) for p in pairs}
    runs_dir = Path(out_dir) / "runs"
    jobs: list[Job] = []
    for marker, scale in pairs:
        entries = [RunEntry(None, "bicubic", "bicubic", scale, marker)] if bicubic else []
        entries += [r for r in kept if (r.marker, r.scale) == (marker, scale)]
        for e in entries:
            out = runs_dir / (e.name if alignment == "paper" else f"{e.name}_{alignment}")
            jobs.append(Job(e, out, _complete(out, e, store, split, counts[(marker, scale)], alignment)))
    return jobs, counts


# --------------------------------------------------------------------------------------- evaluation
def _run_one(
    job: Job,
    windows: Any,
    *,
    device: Any,
    pixel_size_um: float | None,
    observer: EvalRunsObserver,
    aligner: Any = None,
) -> dict[str, Any]:
    """Evaluate one job on decoded windows and write its results; returns the split's means."""
    from srcaco2.trainers.evaluate import evaluate_decoded, load_eval_model, write_eval

    e = job.entry
    if e.kind == "bicubic":
        model: Any = "bicubic"
        name = "bicubic"
    else:
        model, name = load_eval_model(e.path, method=e.method, scale=e.scale, marker=e.marker, device=device)
    sizes = windows.batch_sizes
    done = 0

    def progress(i: int, total: int) -> None:
        nonlocal done
        n = sum(sizes[done:i])
        done = i
        observer.on_windows(n)

    result = evaluate_decoded(
        model, windows, method=name, checkpoint=e.path, device=device, pixel_size_um=pixel_size_um,
        progress=progress, aligner=aligner,
    )  # fmt: skip
    write_eval(job.out, result)
    return result.summary


def _write_json(path: Path, payload: Any) -> None:
    from srcaco2.srdata.atomic import write_text_atomic

    path.parent.mkdir(parents=True, exist_ok=True)
    write_text_atomic(path, json.dumps(payload, indent=2) + "\n")


_OUR_FILES = ("windows.csv", "summary.json", "eval_runs.json", "table4_roi", "table5_full", "table_frc",
              "delta_paper", "alignment_gain")  # fmt: skip


def _remove_stale_temporaries(out: Path) -> None:
    """Delete the temporary files a killed earlier call left (``.NAME.XXXX.tmp`` of our own files)."""
    for d in [out, out / "tables", *sorted((out / "runs").glob("*/"))]:
        for p in d.glob(".*.tmp") if d.is_dir() else ():
            if p.is_file() and p.name[1:].startswith(_OUR_FILES):
                p.unlink(missing_ok=True)


def _collect_summaries(runs_dir: Path, store: str, split: str) -> list[dict[str, Any]]:
    """Every complete result under ``OUT/runs`` of this store and split (earlier calls included)."""
    from srcaco2.trainers.evaluate import read_eval

    out = []
    if not runs_dir.is_dir():
        return out
    for d in sorted(p for p in runs_dir.iterdir() if p.is_dir()):
        if ".run" in d.name:  # an older run of a cell (--select all): in runs/, not in the tables
            continue
        try:
            s = read_eval(d)
        except (OSError, ValueError):
            continue
        if s.get("split") != split or Path(str(s.get("store"))).resolve() != Path(store).resolve():
            log.warning("%s: an evaluation of another store or split; left out of the tables", d)
            continue
        s["_path"] = str(d)
        out.append(s)
    return out


def eval_runs(
    root: str | Path,
    store: str | Path,
    out_dir: str | Path,
    *,
    split: str = "test",
    device: str | None = None,
    methods: Iterable[str] | None = None,
    markers: Iterable[str] | None = None,
    scales: Iterable[int] | None = None,
    batch_size: int = 1,
    max_windows: int | None = None,
    bicubic: bool = True,
    compare_paper: bool = True,
    observer: EvalRunsObserver | None = None,
    select: str = "latest",
    alignment: str = "paper",
) -> EvalRunsReport:
    """Evaluate every run under `root` on a split of `store`, write per-run results and the tables.

    Parameters
    ----------
    root : directory holding original run directories and / or runs of ours, at any depth
    store : store built by ``srdata build`` / ``srdata import-patches``
    out_dir : output directory (layout in the module docstring); reused to resume
    split : ``test`` (the paper's tables), ``val`` or ``train``
    device : ``cpu``, ``cuda``... (default: CUDA when available), as ``srtrain eval``
    methods, markers, scales : optional filters
    batch_size, max_windows : as ``srtrain eval`` (keep batch_size 1 for the benchmark's NLSN draws)
    bicubic : also evaluate the bicubic baseline once per marker × scale
    compare_paper : write ``tables/delta_paper.{md,csv}`` (test split only)
    observer : progress callbacks
    select : ``latest`` or ``all`` runs of a (method, scale, marker) cell (`discover_runs`)
    alignment : ``paper`` or ``subpixel`` (`srcaco2.trainers.alignment`; results in ``*_subpixel`` dirs)

    Returns
    -------
    EvalRunsReport

    Raises
    ------
    FileNotFoundError, ValueError, StoreFormatError
        Bad `root`, filters, store or split (before any evaluation).
    """
    from srcaco2.trainers._ddp import resolve_device
    from srcaco2.trainers.alignment_tables import write_tables_by_alignment
    from srcaco2.trainers.decoded_windows import decode_windows
    from srcaco2.trainers.evaluate import hr_pixel_size_um

    obs = observer or EvalRunsObserver()
    store = str(store)
    out = Path(out_dir)
    dev = resolve_device(device)
    discovery = discover_runs(root, methods=methods, markers=markers, scales=scales, select=select)
    jobs, counts = plan_jobs(
        discovery, store, out, split=split, bicubic=bicubic, max_windows=max_windows, alignment=alignment
    )
    from srcaco2.trainers.alignment import make_aligner

    aligners = {  # refused here, before any evaluation, when the store lacks sub-pixel shifts
        p: make_aligner(store, split=split, marker=p[0], scale=p[1], alignment=alignment) for p in counts
    }
    obs.on_plan(discovery, jobs, counts)
    _remove_stale_temporaries(out)
    pixel_size_um = hr_pixel_size_um(store)
    outcomes: list[Outcome] = []
    for pair in counts:
        group = [j for j in jobs if (j.entry.marker, j.entry.scale) == pair]
        for j in group:
            if j.done:
                outcome = Outcome(j, "resumed", summary=_read_metrics(j.out))
                outcomes.append(outcome)
                obs.on_run_end(outcome)
        pending = [j for j in group if not j.done]
        if not pending:
            continue
        obs.on_decode(pair[0], pair[1], counts[pair])
        try:
            windows = decode_windows(
                store, split=split, marker=pair[0], scale=pair[1], batch_size=batch_size,
                max_windows=max_windows,
            )  # fmt: skip
        except Exception as exc:  # noqa: BLE001 - a damaged part of the store fails its runs only
            for j in pending:
                outcome = Outcome(j, "failed", f"decoding the {pair[0]} x{pair[1]} windows failed: {exc}")
                outcomes.append(outcome)
                obs.on_run_end(outcome)
            continue
        for j in pending:
            obs.on_run_start(j)
            try:
                summary = _run_one(
                    j, windows, device=dev, pixel_size_um=pixel_size_um, observer=obs, aligner=aligners[pair]
                )
                outcome = Outcome(j, "evaluated", summary=summary)
            except Exception as exc:  # noqa: BLE001 - one broken run must not stop the others
                log.debug("run %s failed", j.entry.path, exc_info=True)
                outcome = Outcome(j, "failed", f"{type(exc).__name__}: {exc}")
            outcomes.append(outcome)
            obs.on_run_end(outcome)
        del windows
    summaries = _collect_summaries(out / "runs", store, split)
    tables: dict[str, Path] = {}
    if summaries:
        tables = write_tables_by_alignment(
            summaries, out / "tables", frc=True, compare_paper=compare_paper and split == "test"
        )
    report = EvalRunsReport(discovery, jobs, outcomes, tables, out)
    _write_json(out / "eval_runs.json", _report_payload(report, root, store, split))
    return report


def _read_metrics(out: Path) -> dict[str, Any] | None:
    from srcaco2.trainers.evaluate import read_eval

    try:
        return read_eval(out)["metrics"]
    except (OSError, ValueError):
        return None


def _report_payload(report: EvalRunsReport, root: Any, store: str, split: str) -> dict[str, Any]:
    """``eval_runs.json``: the same after a resumed run as after an uninterrupted one."""
    status = {id(o.job): o for o in report.outcomes}
    runs = []
    for j in report.jobs:
        o = status.get(id(j))
        runs.append({
            "name": j.entry.name, "kind": j.entry.kind, "method": j.entry.method, "scale": j.entry.scale,
            "marker": j.entry.marker, "path": None if j.entry.path is None else str(j.entry.path),
            "out": j.out.relative_to(report.out_dir).as_posix(),
            "status": "failed" if o is None or o.status == "failed" else "done",
            "reason": None if o is None else o.reason,
        })  # fmt: skip
    return {
        "root": str(root),
        "store": store,
        "split": split,
        "runs": runs,
        "broken": [{"path": str(b.path), "reason": b.reason} for b in report.discovery.broken],
        "skipped": [{"path": str(s.path), "reason": s.reason} for s in report.discovery.skipped],
        "tables": sorted(report.tables),
    }
