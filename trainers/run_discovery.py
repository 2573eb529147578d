"""Finding trained runs under a directory, without loading any network (`discover_runs`).

An original run directory of the benchmark's archive (docs/protocol.md#weights-archive) holds
``config_model.yml`` and ``best-models/G-model.pth``; a run of this toolkit holds ``best.pt``.
`discover_runs` finds both at any depth, says what it skips and why, and numbers the runs of one
(method, scale, marker) cell from the newest; `srcaco2.trainers.eval_runs` evaluates what it finds.
"""

from __future__ import annotations

import dataclasses
from collections.abc import Iterable, Sequence
from pathlib import Path
from typing import Any

__all__ = [
    "ORIGINAL_YML",
    "ORIGINAL_WEIGHTS",
    "OUR_WEIGHTS",
    "RunEntry",
    "Skipped",
    "Discovery",
    "discover_runs",
]

ORIGINAL_YML = "config_model.yml"
ORIGINAL_WEIGHTS = "best-models/G-model.pth"
OUR_WEIGHTS = "best.pt"


@dataclasses.dataclass(frozen=True)
class RunEntry:
    """One run to evaluate.

    Attributes
    ----------
    path : Path
        What ``srtrain eval --checkpoint`` is given: the run directory (original) or ``best.pt``
        (ours); None for bicubic.
    kind : ``"original"``, ``"ours"`` or ``"bicubic"``
    method, scale, marker : what it holds (registry method name, scale 2-8, marker name)
    """

    path: Path | None
    kind: str
    method: str
    scale: int
    marker: str
    rank: int = 1
    """1 for the newest run of its (method, scale, marker) cell (the one in the tables); 2, 3, ... for
    older ones, evaluated under ``select="all"``."""

    @property
    def name(self) -> str:
        """Output directory name under ``OUT/runs``: ``{method}_x{scale}_{marker}`` (``.run{rank}`` for
        an older run of the same cell)."""
        base = f"{self.method}_x{self.scale}_{self.marker}"
        return base if self.rank == 1 else f"{base}.run{self.rank}"


@dataclasses.dataclass(frozen=True)
class Skipped:
    """Something under ROOT that is not evaluated, and why."""

    path: Path
    reason: str


@dataclasses.dataclass
class Discovery:
    """`discover_runs` result: runs to evaluate, things skipped, runs found but unusable."""

    runs: list[RunEntry]
    skipped: list[Skipped]
    broken: list[Skipped]


def _original_identity(run_dir: Path) -> tuple[dict[str, Any] | None, str | None]:
    from srcaco2.trainers._pretrained import infer_original

    weights = run_dir / ORIGINAL_WEIGHTS
    try:
        found = infer_original(weights, run_dir)
    except Exception as exc:  # noqa: BLE001 - a damaged yml must not stop the discovery of the others
        return None, f"cannot read {ORIGINAL_YML} ({type(exc).__name__}: {exc})"
    missing = [k for k in ("method", "scale", "marker") if not found.get(k)]
    if missing:
        return None, (
            f"cannot tell the {', '.join(missing)} of this run from {ORIGINAL_YML} or the directory names "
            "(net_type / scale / cell_CELLk)"
        )
    return found, None


def _our_identity(path: Path) -> tuple[dict[str, Any] | None, str | None]:
    from srcaco2.trainers.checkpoints import load_checkpoint

    try:
        meta = load_checkpoint(path)["meta"]
    except (OSError, ValueError) as exc:
        return None, str(exc)
    missing = [k for k in ("method", "scale", "marker") if not meta.get(k)]
    if missing:
        return None, f"{path} records no {', '.join(missing)} in its meta; evaluate it with `srtrain eval`"
    return {
        "method": str(meta["method"]).lower(),
        "scale": int(meta["scale"]),
        "marker": meta["marker"],
    }, None


def _check_filter(values: Iterable[Any] | None, known: Sequence[Any], what: str) -> set | None:
    if values is None:
        return None
    chosen = set(values)
    unknown = sorted(map(str, chosen - set(known)))
    if unknown:
        raise ValueError(f"unknown {what} {', '.join(unknown)}; known: {', '.join(map(str, known))}")
    return chosen


def discover_runs(
    root: str | Path,
    *,
    methods: Iterable[str] | None = None,
    markers: Iterable[str] | None = None,
    scales: Iterable[int] | None = None,
    select: str = "latest",
) -> Discovery:
    """Find the runs under `root` (any depth) without loading any network.

    An original run directory holds ``config_model.yml`` and ``best-models/G-model.pth``; a run of
    ours holds ``best.pt``. Directories below a run are not searched; hidden ones (``.name``)
    neither.

    Parameters
    ----------
    root : directory (or one run directory)
    methods, markers, scales : optional filters (registry names, marker names, scales 2-8)
    select : {"latest", "all"}
        Several runs of one (method, scale, marker): ``latest`` evaluates the newest (weights file
        modified last) and skips the others, naming the one kept; ``all`` evaluates every one (the
        newest goes in the tables, the others under ``OUT/runs/<cell>.run2``, ...).

    Returns
    -------
    Discovery
        ``runs`` in path order, ``skipped`` (incomplete run directories, runs outside the filters,
        older runs of a cell under ``latest``, ``last.pt`` without ``best.pt``) and ``broken`` (runs
        whose method / scale / marker cannot be read).

    Raises
    ------
    FileNotFoundError
        `root` does not exist.
    ValueError
        An unknown method, marker or scale in the filters.
    """
    from srcaco2.trainers.models.registry import MODEL_NAMES

    root = Path(root)
    if not root.exists():
        raise FileNotFoundError(f"{root} does not exist: give the directory holding the runs")
    want_methods = _check_filter(
        None if methods is None else [str(m).lower() for m in methods], MODEL_NAMES, "method(s)"
    )
    want_markers = None if markers is None else set(markers)  # any names: a store's own markers too
    want_scales = _check_filter(
        None if scales is None else [int(s) for s in scales], tuple(range(2, 9)), "scale(s)"
    )
    if select not in ("latest", "all"):
        raise ValueError(f"select={select!r}: give 'latest' or 'all'")
    runs: list[RunEntry] = []
    skipped: list[Skipped] = []
    broken: list[Skipped] = []

    def consider(path: Path, kind: str, ident: dict[str, Any] | None, why: str | None) -> None:
        if ident is None:
            broken.append(Skipped(path, str(why)))
            return
        entry = RunEntry(path, kind, str(ident["method"]).lower(), int(ident["scale"]), str(ident["marker"]))
        outside = [
            f"--{flag} {val}"
            for flag, val, want in (
                ("methods", entry.method, want_methods),
                ("markers", entry.marker, want_markers),
                ("scales", entry.scale, want_scales),
            )
            if want is not None and val not in want
        ]
        if outside:
            skipped.append(Skipped(path, f"{entry.name}: not selected ({', '.join(outside)} not asked)"))
            return
        runs.append(entry)

    if root.is_file():
        dirs_to_walk: list[Path] = []
        if root.name == OUR_WEIGHTS:
            ident, why = _our_identity(root)
            consider(root, "ours", ident, why)
        else:
            skipped.append(Skipped(root, "a file: give the directory holding the runs"))
    else:
        dirs_to_walk = [root]
    while dirs_to_walk:
        d = dirs_to_walk.pop(0)
        try:
            children = sorted(p for p in d.iterdir())
        except OSError as exc:
            skipped.append(Skipped(d, f"cannot list it ({exc.strerror or exc})"))
            continue
        names = {p.name for p in children}
        has_yml = (d / ORIGINAL_YML).is_file()
        has_g = (d / ORIGINAL_WEIGHTS).is_file()
        if has_yml or has_g:
            if not has_g:
                skipped.append(Skipped(d, f"{ORIGINAL_YML} but no {ORIGINAL_WEIGHTS} (an incomplete copy?)"))
            elif not has_yml:
                skipped.append(Skipped(d, f"{ORIGINAL_WEIGHTS} but no {ORIGINAL_YML} (an incomplete copy?)"))
            else:
                ident, why = _original_identity(d)
                consider(d, "original", ident, why)
            continue
        if OUR_WEIGHTS in names and (d / OUR_WEIGHTS).is_file():
            ident, why = _our_identity(d / OUR_WEIGHTS)
            p = d / OUR_WEIGHTS
            consider(p, "ours", ident, why)
            continue
        if "last.pt" in names and "config.yaml" in names:
            skipped.append(
                Skipped(d, "last.pt but no best.pt (no validation yet): nothing selected to evaluate")
            )
            continue
        dirs_to_walk[:0] = [p for p in children if p.is_dir() and not p.name.startswith(".")]
    return Discovery(*_rank_duplicates(runs, skipped, select), broken)


def _weights_mtime(entry: RunEntry) -> float:
    weights = entry.path / ORIGINAL_WEIGHTS if entry.kind == "original" else entry.path
    try:
        return weights.stat().st_mtime  # type: ignore[union-attr]
    except OSError:
        return 0.0


def _rank_duplicates(
    runs: list[RunEntry], skipped: list[Skipped], select: str
) -> tuple[list[RunEntry], list[Skipped]]:
    """Number the runs of each (method, scale, marker) from the newest (rank 1); under ``latest``
    move the older ones to `skipped` with the newest named."""
    cells: dict[tuple[str, int, str], list[RunEntry]] = {}
    for r in runs:
        cells.setdefault((r.method, r.scale, r.marker), []).append(r)
    ranks: dict[Path, int] = {}
    newest: dict[tuple[str, int, str], RunEntry] = {}
    for key, group in cells.items():
        ordered = sorted(group, key=lambda r: (-_weights_mtime(r), str(r.path)))
        newest[key] = ordered[0]
        for k, r in enumerate(ordered, start=1):
            ranks[r.path] = k  # type: ignore[index]
    kept: list[RunEntry] = []
    for r in runs:
        k = ranks[r.path]  # type: ignore[index]
        if k > 1 and select == "latest":
            n = newest[(r.method, r.scale, r.marker)]
            skipped.append(Skipped(r.path, f"{r.name}: an older run than {n.path} (--select latest keeps "
                                           "the newest of a cell; --select all evaluates every run)"))  # type: ignore[arg-type]  # fmt: skip
            continue
        kept.append(dataclasses.replace(r, rank=k))
    return kept, skipped
