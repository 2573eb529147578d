"""Run directory: what a run writes, refusing to mix two runs, CSV logs that survive a resume.

A run directory holds ``config.yaml``, ``last.pt`` (and ``last.prev.pt``, the one before it),
``best.pt``, ``metrics.csv`` (one row per logged training step), ``val.csv`` (one row per
validation) and ``tb/`` (TensorBoard, optional); ``last.bad.pt`` is a damaged ``last.pt`` set aside
by a resume that fell back to ``last.prev.pt``.

A directory holding a run is refused unless resumed or forced, but a run that stopped before its
first checkpoint (no ``*.pt``: nothing to resume) is simply replaced by the next start: its
``metrics.csv`` / ``config.yaml`` describe steps that cannot be continued.
"""

from __future__ import annotations

import csv
import logging
import shutil
from collections.abc import Mapping
from pathlib import Path
from typing import Any

__all__ = ["RunDirError", "RUN_FILES", "prepare_run_dir", "CsvLog"]

log = logging.getLogger(__name__)

RUN_FILES: tuple[str, ...] = (
    "config.yaml", "last.pt", "last.prev.pt", "last.bad.pt", "best.pt", "metrics.csv", "val.csv", "tb",
)  # fmt: skip
"""Names a run writes; their presence marks a directory as holding a run."""

CHECKPOINT_FILES: tuple[str, ...] = ("last.pt", "last.prev.pt", "best.pt")
"""A run holding none of these stopped before its first checkpoint: nothing in it can be resumed."""


class RunDirError(FileExistsError):
    """The output directory already holds a run (and neither resume nor force was asked)."""


def prepare_run_dir(out_dir: str | Path, *, resume: bool, force: bool) -> Path:
    """Create or check the run directory.

    Parameters
    ----------
    out_dir : path
    resume : bool
        Continue the run in `out_dir` (needs its ``last.pt`` or ``last.prev.pt``).
    force : bool
        Delete the previous run's files (only the names in `RUN_FILES`) and start afresh. Not
        needed when the previous run stopped before its first checkpoint (its files are replaced,
        with a warning in the log).

    Raises
    ------
    RunDirError
        `out_dir` holds a run with a checkpoint and neither `resume` nor `force` is set.
    FileNotFoundError
        `resume` without ``last.pt`` / ``last.prev.pt`` in `out_dir`.
    """
    out = Path(out_dir)
    if out.exists() and not out.is_dir():
        raise RunDirError(f"run directory {out} exists and is not a directory; choose another --out")
    present = [n for n in RUN_FILES if (out / n).exists()]
    if resume and force:
        raise ValueError("--resume and --force exclude each other: resume continues a run, force deletes it")
    if resume:
        if not any((out / n).exists() for n in ("last.pt", "last.prev.pt")):
            stopped = " (its run stopped before its first checkpoint)" if present else ""
            raise FileNotFoundError(
                f"nothing to resume in {out}: no last.pt{stopped} (files there: {present or 'none'}); "
                "start a new run without --resume"
            )
        return out
    if present:
        resumable = any(n in CHECKPOINT_FILES for n in present)
        if resumable and not force:
            raise RunDirError(
                f"{out} already holds a run ({', '.join(present)}); pass --resume to continue it, "
                "--force to overwrite it, or choose another --out"
            )
        for name in present:
            p = out / name
            shutil.rmtree(p) if p.is_dir() else p.unlink()
        why = "--force" if resumable else "a previous run that stopped before its first checkpoint"
        log.warning("%s: removed the previous run's files in %s: %s", why, out, ", ".join(present))
    out.mkdir(parents=True, exist_ok=True)
    return out


class CsvLog:
    """Append-only CSV log with a fixed header; `truncate_after(step)` drops rows past a resume point."""

    def __init__(self, path: str | Path, fields: list[str]) -> None:
        self.path = Path(path)
        self.fields = list(fields)

    def truncate_after(self, step: int) -> None:
        """Keep only rows with ``step <= step`` (rows a killed run wrote after its last checkpoint)."""
        if not self.path.exists():
            return
        with self.path.open(newline="") as f:
            rows = [r for r in csv.DictReader(f) if int(r["step"]) <= step]
        with self.path.open("w", newline="") as f:
            w = csv.DictWriter(f, fieldnames=self.fields)
            w.writeheader()
            w.writerows(rows)

    def write(self, row: Mapping[str, Any]) -> None:
        """Append one row (header written on first use)."""
        new = not self.path.exists()
        with self.path.open("a", newline="") as f:
            w = csv.DictWriter(f, fieldnames=self.fields, extrasaction="ignore")
            if new:
                w.writeheader()
            w.writerow(dict(row))

    def read(self) -> list[dict[str, str]]:
        """All rows as dicts of strings."""
        if not self.path.exists():
            return []
        with self.path.open(newline="") as f:
            return list(csv.DictReader(f))
