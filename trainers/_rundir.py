"""Run directory: what a run writes, refusing to mix two runs, CSV logs that survive a resume.

A run directory holds ``config.yaml``, ``last.pt``, ``best.pt``, ``metrics.csv`` (one row per
logged training step), ``val.csv`` (one row per validation) and ``tb/`` (TensorBoard, optional).
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

RUN_FILES: tuple[str, ...] = ("config.yaml", "last.pt", "best.pt", "metrics.csv", "val.csv", "tb")
"""Names a run writes; their presence marks a directory as holding a run."""


class RunDirError(FileExistsError):
    """The output directory already holds a run (and neither resume nor force was asked)."""


def prepare_run_dir(out_dir: str | Path, *, resume: bool, force: bool) -> Path:
    """Create or check the run directory.

    Parameters
    ----------
    out_dir : path
    resume : bool
        Continue the run in `out_dir` (needs its ``last.pt``).
    force : bool
        Delete the previous run's files (only the names in `RUN_FILES`) and start afresh.

    Raises
    ------
    RunDirError
        `out_dir` holds another run and neither `resume` nor `force` is set.
    FileNotFoundError
        `resume` without a ``last.pt`` in `out_dir`.
    """
    out = Path(out_dir)
    if out.exists() and not out.is_dir():
        raise RunDirError(f"run directory {out} exists and is not a directory; choose another --out")
    present = [n for n in RUN_FILES if (out / n).exists()]
    if resume and force:
        raise ValueError("--resume and --force exclude each other: resume continues a run, force deletes it")
    if resume:
        if not (out / "last.pt").exists():
            raise FileNotFoundError(
                f"nothing to resume in {out}: no last.pt (files there: {present or 'none'}); "
                "start a new run without --resume"
            )
        return out
    if present:
        if not force:
            raise RunDirError(
                f"{out} already holds a run ({', '.join(present)}); pass --resume to continue it, "
                "--force to overwrite it, or choose another --out"
            )
        for name in present:
            p = out / name
            shutil.rmtree(p) if p.is_dir() else p.unlink()
        log.warning("--force: removed the previous run's files in %s: %s", out, ", ".join(present))
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
