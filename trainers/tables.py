"""Many `srtrain eval` outputs → the paper's Table 4 (ROI) and Table 5 (full image) (SPEC.md §7.2).

Rows: methods grouped by family (Bicubic | Pre-upsampling | Post-upsampling | Iterative up-and-down
| Progressive), one row per scale; columns PSNR↑, NRMSE↓, SSIM↑, each for CELL0, CELL1, CELL2 and
their plain mean (over the markers present). The best value of each column within a scale is
bold. Written as Markdown, CSV and LaTeX.
"""

from __future__ import annotations

import csv
import math
from collections.abc import Iterable, Mapping
from pathlib import Path
from typing import Any

__all__ = [
    "FAMILIES",
    "DISPLAY_NAMES",
    "TableData",
    "build_table",
    "render_markdown",
    "render_latex",
    "write_tables",
]

FAMILIES: tuple[str, ...] = (
    "bicubic",
    "pre-upsampling",
    "post-upsampling",
    "iterative up-and-down",
    "progressive",
)
_FAMILY_TITLES = {
    "bicubic": "Bicubic",
    "pre-upsampling": "Pre-upsampling",
    "post-upsampling": "Post-upsampling",
    "iterative up-and-down": "Iterative up-and-down",
    "progressive": "Progressive",
    "other": "Other",
}
_FAMILY_OF = {
    "bicubic": "bicubic",
    "srcnn": "pre-upsampling",
    "vdsr": "pre-upsampling",
    "drrn": "pre-upsampling",
    "memnet": "pre-upsampling",
    "nlsn": "post-upsampling",
    "dfcan": "post-upsampling",
    "swinir": "post-upsampling",
    "edsr_liif": "post-upsampling",
    "enlcn": "post-upsampling",
    "grl": "post-upsampling",
    "act": "post-upsampling",
    "omnisr": "post-upsampling",
    "dbpn": "iterative up-and-down",
    "srfbn": "iterative up-and-down",
    "prosr": "progressive",
    "mslapsrn": "progressive",
}
DISPLAY_NAMES: dict[str, str] = {
    "bicubic": "Bicubic", "srcnn": "SRCNN", "vdsr": "VDSR", "drrn": "DRRN", "memnet": "MemNet",
    "nlsn": "NLSN", "dfcan": "DFCAN", "swinir": "SwinIR", "edsr_liif": "EDSR-LIIF", "enlcn": "ENLCN",
    "grl": "GRL", "act": "ACT", "omnisr": "Omni-SR", "dbpn": "DBPN", "srfbn": "SRFBN", "prosr": "ProSR",
    "mslapsrn": "MS-LapSRN",
}  # fmt: skip
"""Method names as the paper prints them."""

_METRICS = (("psnr", "PSNR", max, 2), ("nrmse", "NRMSE", min, 4), ("ssim", "SSIM", max, 4))
_COLS = ("CELL0", "CELL1", "CELL2", "Mean")


class TableData:
    """Values of one table.

    ``rows`` = [(family, method, scale)]; ``values[(method, scale)][(metric, column)]``;
    ``best[(scale, metric, column)]`` = the best value of that column within the scale.
    """

    def __init__(self, kind: str, rows: list[tuple[str, str, int]], values: dict, best: dict) -> None:
        self.kind = kind
        self.rows = rows
        self.values = values
        self.best = best

    def columns(self) -> list[tuple[str, str]]:
        """(metric, column) pairs in display order."""
        return [(m, c) for m, *_ in _METRICS for c in _COLS]


def _order_key(method: str) -> tuple[int, int, str]:
    fam = _FAMILY_OF.get(method, "other")
    names = list(_FAMILY_OF)
    return (
        FAMILIES.index(fam) if fam in FAMILIES else len(FAMILIES),
        names.index(method) if method in names else len(names),
        method,
    )


def build_table(summaries: Iterable[Mapping[str, Any]], *, kind: str) -> TableData:
    """Collect eval summaries (``read_eval`` dicts) into one table.

    Parameters
    ----------
    summaries : dicts with ``method``, ``scale``, ``marker``, ``split`` and ``metrics`` (the six means)
    kind : ``"roi"`` (Table 4) or ``"full"`` (Table 5)

    Raises
    ------
    ValueError
        Two summaries for the same (method, scale, marker), or summaries of different splits.
    """
    if kind not in ("roi", "full"):
        raise ValueError(f"kind must be 'roi' or 'full', got {kind!r}")
    prefix = "roi_" if kind == "roi" else ""
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
        for m, *_ in _METRICS:
            cells.setdefault((method, scale), {}).setdefault(m, {})[marker] = float(s["metrics"][prefix + m])
    if len(splits) > 1:
        raise ValueError(
            f"evaluations of different splits cannot share a table: {sorted(map(str, splits))}; "
            "pass only `srtrain eval` outputs of one --split"
        )
    values: dict[tuple[str, int], dict[tuple[str, str], float]] = {}
    for key, per_metric in cells.items():
        row: dict[tuple[str, str], float] = {}
        for m, vals in per_metric.items():
            for c in _COLS[:3]:
                if c in vals:
                    row[(m, c)] = vals[c]
            present = [vals[c] for c in _COLS[:3] if c in vals]
            row[(m, "Mean")] = sum(present) / len(present)
        values[key] = row
    rows = sorted(
        ((_FAMILY_OF.get(m, "other"), m, s) for m, s in values), key=lambda r: (_order_key(r[1]), r[2])
    )
    best: dict[tuple[int, str, str], float] = {}
    for m, _, pick, _ in _METRICS:
        for c in _COLS:
            for scale in {s for _, _, s in rows}:
                col = [
                    values[(meth, s)][(m, c)]
                    for _, meth, s in rows
                    if s == scale and (m, c) in values[(meth, s)]
                ]
                col = [v for v in col if math.isfinite(v)]
                if col:
                    best[(scale, m, c)] = pick(col)
    return TableData(kind, rows, values, best)


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
    title = (
        "Table 4 — ROI only (thresholds 4..10)"
        if t.kind == "roi"
        else "Table 5 — full image (border-cropped)"
    )
    head = ["Family", "Method", "Scale"] + [f"{label} {c}" for _, label, _, _ in _METRICS for c in _COLS]
    lines = [
        f"**{title}**",
        "",
        "| " + " | ".join(head) + " |",
        "|" + "|".join(["---"] * 3 + ["---:"] * 12) + "|",
    ]
    last_family = None
    for fam, method, scale in t.rows:
        fam_txt = _FAMILY_TITLES.get(fam, fam) if fam != last_family else ""
        last_family = fam
        cells = [_cell(t, method, scale, m, c, d, ("**", "**")) for m, _, _, d in _METRICS for c in _COLS]
        lines.append(
            "| " + " | ".join([fam_txt, DISPLAY_NAMES.get(method, method), f"×{scale}"] + cells) + " |"
        )
    return "\n".join(lines) + "\n"


def render_latex(t: TableData) -> str:
    """The table as a LaTeX ``tabular`` (booktabs; best per scale in \\textbf)."""
    out = [
        r"\begin{tabular}{ll" + "r" * 12 + "}",
        r"\toprule",
        " & & " + " & ".join(rf"\multicolumn{{4}}{{c}}{{{label}}}" for _, label, _, _ in _METRICS) + r" \\",
        "Method & Scale & " + " & ".join(c for _ in _METRICS for c in _COLS) + r" \\",
        r"\midrule",
    ]
    last_family = None
    for fam, method, scale in t.rows:
        if last_family is not None and fam != last_family:
            out.append(r"\midrule")
        last_family = fam
        cells = [
            _cell(t, method, scale, m, c, d, (r"\textbf{", "}")) for m, _, _, d in _METRICS for c in _COLS
        ]
        out.append(
            " & ".join([DISPLAY_NAMES.get(method, method).replace("_", r"\_"), rf"$\times{scale}$"] + cells)
            + r" \\"
        )
    out += [r"\bottomrule", r"\end{tabular}"]
    return "\n".join(out) + "\n"


def _write_csv(t: TableData, path: Path) -> None:
    with path.open("w", newline="") as f:
        w = csv.writer(f)
        w.writerow(["family", "method", "scale"] + [f"{m}_{c}" for m, c in t.columns()])
        for fam, method, scale in t.rows:
            vals = t.values[(method, scale)]
            w.writerow(
                [fam, method, scale]
                + ["" if (m, c) not in vals else repr(vals[(m, c)]) for m, c in t.columns()]
            )


def write_tables(summaries: Iterable[Mapping[str, Any]], out_dir: str | Path) -> dict[str, Path]:
    """Write ``table4_roi.{md,csv,tex}`` and ``table5_full.{md,csv,tex}``; returns name → path."""
    out = Path(out_dir)
    summaries = list(summaries)
    if not summaries:
        raise ValueError("no evaluation summaries given: pass `srtrain eval` output directories")
    tables = {
        stem: build_table(summaries, kind=kind)
        for kind, stem in (("roi", "table4_roi"), ("full", "table5_full"))
    }
    out.mkdir(parents=True, exist_ok=True)  # only once every input was accepted: no empty OUT on errors
    paths: dict[str, Path] = {}
    for stem, t in tables.items():
        for ext, text in (("md", render_markdown(t)), ("tex", render_latex(t))):
            p = out / f"{stem}.{ext}"
            p.write_text(text)
            paths[f"{stem}.{ext}"] = p
        _write_csv(t, out / f"{stem}.csv")
        paths[f"{stem}.csv"] = out / f"{stem}.csv"
    return paths
