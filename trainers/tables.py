"""Many `srtrain eval` outputs → the paper's Table 4 (ROI) and Table 5 (full image) (docs/protocol.md#tables).

Rows: methods grouped by family (Bicubic | Pre-upsampling | Post-upsampling | Iterative up-and-down
| Progressive), one row per scale; columns PSNR↑, NRMSE↓, SSIM↑, each for CELL0, CELL1, CELL2 and
their plain mean (over the markers present). The best value of each column within a scale is
bold. Written as Markdown, CSV and LaTeX.

Also: an FRC table (``kind="frc"``, the FRC resolution columns of `srcaco2.trainers.evaluate`, beyond the
paper's protocol), the paper's published Tables 4 and 5 (`load_paper_tables`, shipped as
``trainers/data/paper_tables.csv``) and the difference ours − paper (`compare_paper`,
`write_delta`).
"""

from __future__ import annotations

import csv
import math
from collections.abc import Iterable, Mapping
from pathlib import Path
from typing import Any

from srcaco2.srdata.atomic import write_text_atomic
from srcaco2.trainers.models.registry import FAMILIES  # the paper's families: one home, the registry

__all__ = [
    "FAMILIES",
    "PAPER_TABLES_PATH",
    "DELTA_TOLERANCES",
    "TableData",
    "DeltaTable",
    "method_facts",
    "build_table",
    "render_markdown",
    "render_latex",
    "write_tables",
    "load_paper_tables",
    "compare_paper",
    "compare_paper_summaries",
    "render_delta_markdown",
    "write_delta",
]
_FAMILY_TITLES = {
    "bicubic": "Bicubic",
    "pre-upsampling": "Pre-upsampling",
    "post-upsampling": "Post-upsampling",
    "iterative up-and-down": "Iterative up-and-down",
    "progressive": "Progressive",
    "other": "Other",
}
_METRICS = (("psnr", "PSNR", max, 2), ("nrmse", "NRMSE", min, 4), ("ssim", "SSIM", max, 4))
_FRC_METRICS = (("frc_px", "FRC px", min, 2), ("frc_um", "FRC µm", min, 3))
_KIND_METRICS = {"roi": _METRICS, "full": _METRICS, "frc": _FRC_METRICS}
_KIND_PREFIX = {"roi": "roi_", "full": "", "frc": ""}
_TITLES = {
    "roi": "Table 4 — ROI only (thresholds 4..10)",
    "full": "Table 5 — full image (border-cropped)",
    "frc": "FRC resolution (1/7 threshold; lower is finer; beyond the paper's protocol)",
}
_COLS = ("CELL0", "CELL1", "CELL2", "Mean")

PAPER_TABLES_PATH = Path(__file__).parent / "data" / "paper_tables.csv"
"""The paper's Tables 4 (``table=roi``) and 5 (``table=full``), every row and cell (docs/protocol.md#tables).

Columns: ``table``, ``method`` (registry name), ``scale``, then ``{psnr,nrmse,ssim}_{CELL0,CELL1,
CELL2,Mean}`` as printed (PSNR 2 decimals, NRMSE / SSIM 4)."""

DELTA_TOLERANCES: dict[str, float] = {"psnr": 0.01, "nrmse": 1e-4, "ssim": 1e-4}
"""|ours − paper| beyond these (dB, NRMSE, SSIM) is marked in the delta table."""


def method_facts(method: str) -> tuple[str, str]:
    """(family, display name) of a method, as the paper's tables group and print it.

    Read from the model registry (`srcaco2.trainers.models.registry.ModelInfo`), the facts' one home;
    unknown methods: family ``"other"``, the name as given.
    """
    from srcaco2.trainers.models.registry import UnknownModelError, model_info

    try:
        info = model_info(str(method).lower())
    except UnknownModelError:
        return "other", str(method)
    return info.family, info.display_name


class TableData:
    """Values of one table.

    ``rows`` = [(family, method, scale)]; ``values[(method, scale)][(metric, column)]``;
    ``best[(scale, metric, column)]`` = the best value of that column within the scale;
    ``metrics`` = ((key, label, best-picker, digits), ...) of the table's kind.
    """

    def __init__(
        self,
        kind: str,
        rows: list[tuple[str, str, int]],
        values: dict,
        best: dict,
        metrics: tuple = _METRICS,
        cols: tuple[str, ...] = _COLS,
    ) -> None:
        self.kind = kind
        self.rows = rows
        self.values = values
        self.best = best
        self.metrics = metrics
        self.cols = cols  # the markers (SR-CACO-2: CELL0, CELL1, CELL2), then "Mean"

    def columns(self) -> list[tuple[str, str]]:
        """(metric, column) pairs in display order."""
        return [(m, c) for m, *_ in self.metrics for c in self.cols]


def _order_key(method: str) -> tuple[int, int, str]:
    from srcaco2.trainers.models.registry import model_names

    fam, _ = method_facts(method)
    names = list(model_names())
    return (
        FAMILIES.index(fam) if fam in FAMILIES else len(FAMILIES),
        names.index(method) if method in names else len(names),
        method,
    )


def build_table(summaries: Iterable[Mapping[str, Any]], *, kind: str) -> TableData:
    """Collect eval summaries (``read_eval`` dicts) into one table.

    Parameters
    ----------
    summaries : dicts with ``method``, ``scale``, ``marker``, ``split`` and ``metrics`` (the six means,
        plus ``frc_px`` / ``frc_um`` for the FRC table)
    kind : ``"roi"`` (Table 4), ``"full"`` (Table 5) or ``"frc"`` (FRC resolution; summaries
        without it leave their cells empty)

    Raises
    ------
    ValueError
        Two summaries for the same (method, scale, marker), or summaries of different splits.
    """
    if kind not in _KIND_METRICS:
        raise ValueError(f"kind must be 'roi', 'full' or 'frc', got {kind!r}")
    metrics = _KIND_METRICS[kind]
    prefix = _KIND_PREFIX[kind]
    cells: dict[tuple[str, int], dict[str, dict[str, float]]] = {}
    seen: dict[tuple[str, int, str], str] = {}
    splits = set()
    for s in summaries:
        method, scale, marker = str(s["method"]).lower(), int(s["scale"]), str(s["marker"])
        splits.add(s.get("split"))
        key = (method, scale, marker)
        where = str(s.get("_path", "?"))
        if key in seen:
            raise ValueError(
                f"two evaluations of {method} x{scale} {marker}: {seen[key]} and {where}; keep one"
            )
        seen[key] = where
        row_cells = cells.setdefault((method, scale), {})
        for m, *_ in metrics:
            v = s["metrics"].get(prefix + m) if kind == "frc" else s["metrics"][prefix + m]
            if v is not None:
                row_cells.setdefault(m, {})[marker] = float(v)
    if len(splits) > 1:
        raise ValueError(
            f"evaluations of different splits cannot share a table: {sorted(map(str, splits))}; "
            "pass only `srtrain eval` outputs of one --split"
        )
    seen_markers = list(dict.fromkeys(marker for _, _, marker in seen))
    # SR-CACO-2: the paper's three columns always; your own data: its markers, as first seen
    markers = _COLS[:3] if set(seen_markers) <= set(_COLS[:3]) else tuple(seen_markers)
    cols = (*markers, "Mean")
    values: dict[tuple[str, int], dict[tuple[str, str], float]] = {}
    for key, per_metric in cells.items():
        row: dict[tuple[str, str], float] = {}
        for m, vals in per_metric.items():
            for c in markers:
                if c in vals:
                    row[(m, c)] = vals[c]
            present = [vals[c] for c in markers if c in vals]
            if present:
                row[(m, "Mean")] = sum(present) / len(present)
        values[key] = row
    rows = sorted(((method_facts(m)[0], m, s) for m, s in values), key=lambda r: (_order_key(r[1]), r[2]))
    best: dict[tuple[int, str, str], float] = {}
    for m, _, pick, _ in metrics:
        for c in cols:
            for scale in {s for _, _, s in rows}:
                col = [
                    values[(meth, s)][(m, c)]
                    for _, meth, s in rows
                    if s == scale and (m, c) in values[(meth, s)]
                ]
                col = [v for v in col if math.isfinite(v)]
                if col:
                    best[(scale, m, c)] = pick(col)
    return TableData(kind, rows, values, best, metrics, cols)


def _fmt(v: float | None, digits: int) -> str:
    return "—" if v is None else f"{v:.{digits}f}"


def _cell(t: TableData, method: str, scale: int, m: str, c: str, digits: int, bold: tuple[str, str]) -> str:
    v = t.values[(method, scale)].get((m, c))
    text = _fmt(v, digits)
    if v is not None and t.best.get((scale, m, c)) == v:
        text = f"{bold[0]}{text}{bold[1]}"
    return text


def render_markdown(t: TableData) -> str:
    """The table as GitHub Markdown (best per scale in **bold**)."""
    head = ["Family", "Method", "Scale"] + [f"{label} {c}" for _, label, _, _ in t.metrics for c in t.cols]
    lines = [
        f"**{_TITLES[t.kind]}**",
        "",
        "| " + " | ".join(head) + " |",
        "|" + "|".join(["---"] * 3 + ["---:"] * (len(t.metrics) * len(t.cols))) + "|",
    ]
    last_family = None
    for fam, method, scale in t.rows:
        fam_txt = _FAMILY_TITLES.get(fam, fam) if fam != last_family else ""
        last_family = fam
        cells = [_cell(t, method, scale, m, c, d, ("**", "**")) for m, _, _, d in t.metrics for c in t.cols]
        lines.append("| " + " | ".join([fam_txt, method_facts(method)[1], f"×{scale}"] + cells) + " |")
    return "\n".join(lines) + "\n"


def render_latex(t: TableData) -> str:
    """The table as a LaTeX ``tabular`` (booktabs; best per scale in \\textbf)."""
    ncols = len(t.metrics) * len(t.cols)
    out = [
        r"\begin{tabular}{ll" + "r" * ncols + "}",
        r"\toprule",
        " & & " + " & ".join(rf"\multicolumn{{4}}{{c}}{{{label}}}" for _, label, _, _ in t.metrics) + r" \\",
        "Method & Scale & " + " & ".join(c for _ in t.metrics for c in t.cols) + r" \\",
        r"\midrule",
    ]
    last_family = None
    for fam, method, scale in t.rows:
        if last_family is not None and fam != last_family:
            out.append(r"\midrule")
        last_family = fam
        cells = [
            _cell(t, method, scale, m, c, d, (r"\textbf{", "}")) for m, _, _, d in t.metrics for c in t.cols
        ]
        out.append(
            " & ".join([method_facts(method)[1].replace("_", r"\_"), rf"$\times{scale}$"] + cells) + r" \\"
        )
    out += [r"\bottomrule", r"\end{tabular}"]
    return "\n".join(out).replace("µm", r"\textmu m") + "\n"


def _csv_text(t: TableData) -> str:
    import io

    buf = io.StringIO()
    w = csv.writer(buf, lineterminator="\n")
    w.writerow(["family", "method", "scale"] + [f"{m}_{c}" for m, c in t.columns()])
    for fam, method, scale in t.rows:
        vals = t.values[(method, scale)]
        w.writerow(
            [fam, method, scale] + ["" if (m, c) not in vals else repr(vals[(m, c)]) for m, c in t.columns()]
        )
    return buf.getvalue()


def write_tables(
    summaries: Iterable[Mapping[str, Any]],
    out_dir: str | Path,
    *,
    frc: bool = False,
    compare_paper: bool = False,
) -> dict[str, Path]:
    """Write ``table4_roi.{md,csv,tex}`` and ``table5_full.{md,csv,tex}``; returns name → path.

    ``frc=True`` adds ``table_frc.{md,csv,tex}``; ``compare_paper=True`` adds
    ``delta_paper.{md,csv}`` (`write_delta`; test-split summaries only). All summaries are of the
    paper's alignment; `srcaco2.trainers.alignment_tables.write_tables_by_alignment` sorts mixed
    ones (``--alignment subpixel`` gets tables of its own) and calls this for the paper's.

    Raises
    ------
    ValueError
        No summaries, duplicates, mixed splits, or ``compare_paper`` for a split other than test.
    """
    out = Path(out_dir)
    summaries = list(summaries)
    if not summaries:
        raise ValueError("no evaluation summaries given: pass `srtrain eval` output directories")
    kinds = (("roi", "table4_roi"), ("full", "table5_full")) + ((("frc", "table_frc"),) if frc else ())
    tables = {stem: build_table(summaries, kind=kind) for kind, stem in kinds}
    delta = compare_paper_summaries(summaries) if compare_paper else None
    out.mkdir(parents=True, exist_ok=True)  # only once every input was accepted: no empty OUT on errors
    paths: dict[str, Path] = {}
    for stem, t in tables.items():
        for ext, text in (("md", render_markdown(t)), ("tex", render_latex(t)), ("csv", _csv_text(t))):
            paths[f"{stem}.{ext}"] = write_text_atomic(out / f"{stem}.{ext}", text)
    if delta is not None:
        paths.update(write_delta(delta, out))
    return paths


# ------------------------------------------------------------------------------- the paper's tables
PaperTables = dict[str, dict[tuple[str, int], dict[tuple[str, str], float]]]
"""``{"roi" | "full": {(method, scale): {(metric, column): value}}}``."""


def load_paper_tables(path: str | Path | None = None) -> PaperTables:
    """The paper's published Tables 4 and 5 (docs/protocol.md#tables).

    Parameters
    ----------
    path : path, optional
        A CSV in the layout of `PAPER_TABLES_PATH` (default: that file, shipped with the package).

    Returns
    -------
    dict
        ``{"roi": ..., "full": ...}``, each ``{(method, scale): {(metric, column): value}}`` with
        metric in psnr / nrmse / ssim and column in CELL0, CELL1, CELL2, Mean.

    Raises
    ------
    ValueError
        A malformed file (missing column, unknown table, a cell that is not a number, a row twice).
    """
    p = Path(path) if path is not None else PAPER_TABLES_PATH
    want = [f"{m}_{c}" for m, *_ in _METRICS for c in _COLS]
    out: PaperTables = {"roi": {}, "full": {}}
    with p.open(newline="") as fh:
        reader = csv.DictReader(fh)
        missing = [c for c in ["table", "method", "scale", *want] if c not in (reader.fieldnames or [])]
        if missing:
            raise ValueError(f"{p}: columns {missing} missing; not a paper-tables CSV")
        for n, row in enumerate(reader, start=2):
            table = row["table"]
            if table not in out:
                raise ValueError(f"{p}:{n}: table {table!r} is neither 'roi' nor 'full'")
            try:
                key = (row["method"].lower(), int(row["scale"]))
                cells = {(m, c): float(row[f"{m}_{c}"]) for m, *_ in _METRICS for c in _COLS}
            except (TypeError, ValueError) as exc:
                raise ValueError(f"{p}:{n}: {exc}") from None
            if key in out[table]:
                raise ValueError(f"{p}:{n}: {table} {key[0]} x{key[1]} appears twice")
            out[table][key] = cells
    return out


class DeltaTable:
    """Ours − paper per (table, method, scale, metric, column).

    ``cells`` = list of dicts with ``table`` (roi / full), ``method``, ``scale``, ``metric``,
    ``column``, ``ours``, ``paper``, ``delta``, ``tolerance``, ``beyond`` (|delta| > tolerance);
    ``not_in_paper`` = (method, scale) pairs evaluated here that the paper does not list;
    ``data`` = what the evaluated store holds: ``"real"`` (SR-CACO-2 raw tiles or released
    patches), ``"synthetic"`` (`srdata synth`) or ``"unknown"``: only a comparison on real data is a
    reproduction check.
    """

    def __init__(
        self, cells: list[dict[str, Any]], not_in_paper: list[tuple[str, int]], data: str = "unknown"
    ) -> None:
        self.cells = cells
        self.not_in_paper = not_in_paper
        self.data = data

    @property
    def n_beyond(self) -> int:
        """Cells whose difference exceeds the tolerance."""
        return sum(1 for c in self.cells if c["beyond"])


def compare_paper(
    tables: Mapping[str, TableData],
    paper: PaperTables | None = None,
) -> DeltaTable:
    """Ours − paper for every cell both have.

    Parameters
    ----------
    tables : ``{"roi": build_table(..., kind="roi"), "full": build_table(..., kind="full")}``
        (either may be absent)
    paper : `load_paper_tables` output (default: the shipped tables)

    Notes
    -----
    A Mean cell is compared only when ours holds all three markers (the paper's Mean is over
    CELL0..2). The paper prints PSNR with 2 decimals and NRMSE / SSIM with 4, so an exact
    reproduction differs by up to half a unit of the last digit, within `DELTA_TOLERANCES`.
    """
    paper = load_paper_tables() if paper is None else paper
    cells: list[dict[str, Any]] = []
    missing: set[tuple[str, int]] = set()
    for kind in ("roi", "full"):
        t = tables.get(kind)
        if t is None:
            continue
        for _, method, scale in t.rows:
            ref = paper.get(kind, {}).get((method, scale))
            if ref is None:
                missing.add((method, scale))
                continue
            ours = t.values[(method, scale)]
            for m, *_ in _METRICS:
                complete = all((m, c) in ours for c in _COLS[:3])
                for c in _COLS:
                    if (m, c) not in ours or (m, c) not in ref or (c == "Mean" and not complete):
                        continue
                    d = ours[(m, c)] - ref[(m, c)]
                    tol = DELTA_TOLERANCES[m]
                    cells.append({
                        "table": kind, "method": method, "scale": scale, "metric": m, "column": c,
                        "ours": ours[(m, c)], "paper": ref[(m, c)], "delta": d, "tolerance": tol,
                        "beyond": not (abs(d) <= tol + 1e-12),
                    })  # fmt: skip
    return DeltaTable(cells, sorted(missing, key=lambda r: (_order_key(r[0]), r[1])))


def compare_paper_summaries(
    summaries: Iterable[Mapping[str, Any]], paper: PaperTables | None = None
) -> DeltaTable:
    """`compare_paper` from eval summaries (``read_eval`` dicts) of the test split.

    Raises
    ------
    ValueError
        Summaries of another split (the paper's tables are test-set numbers).
    """
    summaries = list(summaries)
    splits = {s.get("split") for s in summaries} - {None}
    if splits and splits != {"test"}:
        raise ValueError(
            f"the paper's Tables 4 and 5 are test-set numbers; these evaluations are of split(s) "
            f"{sorted(map(str, splits))}: evaluate with --split test to compare"
        )
    tables = {kind: build_table(summaries, kind=kind) for kind in ("roi", "full")}
    delta = compare_paper(tables, paper)
    delta.data = _store_data({str(s.get("store")) for s in summaries if s.get("store")})
    return delta


def _store_data(stores: set[str]) -> str:
    """``real`` when every store was built from SR-CACO-2 raw tiles or patches, ``synthetic`` when any
    holds `srdata synth` tiles, else ``unknown`` (a store that cannot be read here)."""
    from srcaco2.srdata.store import Store

    kinds = set()
    for store in stores:
        try:
            kinds.add(Store.open(store).kind)
        except Exception:  # noqa: BLE001 - a moved or remote store: say unknown, not fail the tables
            kinds.add("unknown")
    if "synth" in kinds:
        return "synthetic"
    return "real" if kinds and kinds <= {"raw", "patches"} else "unknown"


_DELTA_DIGITS = {"psnr": 3, "nrmse": 5, "ssim": 5}


def render_delta_markdown(delta: DeltaTable) -> str:
    """Ours − paper as Markdown, one table per paper table; cells beyond tolerance in **bold**."""
    tol = ", ".join(f"{m.upper()} ±{v:g}" for m, v in DELTA_TOLERANCES.items())
    real = delta.data == "real"
    lines = [
        "**Ours − paper (Tables 4 and 5 of the paper, test set)**",
        "",
        (
            f"{len(delta.cells) - delta.n_beyond} of {len(delta.cells)} cells within tolerance ({tol}); "
            "cells beyond it are **bold**; — = not compared (not evaluated here, or Mean without all "
            "three markers)."
            if real
            else f"Not a reproduction check: the evaluated store holds {delta.data} data (not the "
            "SR-CACO-2 test tiles), the paper's numbers are of the real test set; the differences "
            "show how the data differ, not whether the toolkit reproduces the paper (no cell is "
            "marked). — = not compared."
        ),
    ]
    if delta.not_in_paper:
        named = ", ".join(f"{method_facts(m)[1]} ×{s}" for m, s in delta.not_in_paper)
        lines.append(f"Not in the paper: {named}.")
    by_key = {(c["table"], c["method"], c["scale"], c["metric"], c["column"]): c for c in delta.cells}
    for kind in ("roi", "full"):
        keys = sorted({(c["method"], c["scale"]) for c in delta.cells if c["table"] == kind},
                      key=lambda r: (_order_key(r[0]), r[1]))  # fmt: skip
        if not keys:
            continue
        lines += ["", f"*{_TITLES[kind]}: ours − paper*", ""]
        head = ["Method", "Scale"] + [f"Δ{label} {c}" for _, label, _, _ in _METRICS for c in _COLS]
        lines += ["| " + " | ".join(head) + " |", "|" + "|".join(["---"] * 2 + ["---:"] * 12) + "|"]
        for method, scale in keys:
            cells = []
            for m, *_ in _METRICS:
                for c in _COLS:
                    cell = by_key.get((kind, method, scale, m, c))
                    if cell is None:
                        cells.append("—")
                        continue
                    text = f"{cell['delta']:+.{_DELTA_DIGITS[m]}f}"
                    cells.append(f"**{text}**" if cell["beyond"] and real else text)
            lines.append("| " + " | ".join([method_facts(method)[1], f"×{scale}"] + cells) + " |")
    return "\n".join(lines) + "\n"


def _delta_csv(delta: DeltaTable) -> str:
    import io

    fields = ["table", "method", "scale", "metric", "column", "ours", "paper", "delta", "tolerance", "beyond"]
    buf = io.StringIO()
    w = csv.DictWriter(buf, fieldnames=fields, lineterminator="\n")
    w.writeheader()
    for c in delta.cells:
        w.writerow({**c, **{k: repr(c[k]) for k in ("ours", "paper", "delta", "tolerance")},
                    "beyond": int(c["beyond"])})  # fmt: skip
    return buf.getvalue()


def write_delta(delta: DeltaTable, out_dir: str | Path) -> dict[str, Path]:
    """Write ``delta_paper.md`` and ``delta_paper.csv`` (one row per compared cell) to `out_dir`."""
    out = Path(out_dir)
    out.mkdir(parents=True, exist_ok=True)
    return {
        "delta_paper.md": write_text_atomic(out / "delta_paper.md", render_delta_markdown(delta)),
        "delta_paper.csv": write_text_atomic(out / "delta_paper.csv", _delta_csv(delta)),
    }
