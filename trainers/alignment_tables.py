"""Tables of ``--alignment subpixel`` evaluations, and paper vs sub-pixel side by side (beyond the paper).

`srcaco2.trainers.tables.write_tables` hands the summaries whose ``alignment`` is ``subpixel``
(`srcaco2.trainers.alignment`) here; the paper-aligned ones (no ``alignment`` key, or ``paper``)
keep the paper's tables unchanged. Written:

- ``table4_roi_subpixel``, ``table5_full_subpixel`` (and ``table_frc_subpixel`` with ``frc``):
  the paper's two tables, the sub-pixel scores (``.md``, ``.csv``, ``.tex``);
- ``alignment_gain.{md,csv}``: for every (method, scale, marker) evaluated under both, PSNR and
  SSIM (full image and ROI) under ``paper``, under ``subpixel`` and the difference, so a reader
  sees how much of a score was registration error.
"""

from __future__ import annotations

import csv
import io
from collections.abc import Iterable, Mapping
from pathlib import Path
from typing import Any

from srcaco2.srdata.atomic import write_text_atomic

__all__ = ["GAIN_METRICS", "alignment_of", "split_by_alignment", "alignment_gain", "write_alignment_tables"]

GAIN_METRICS: tuple[str, ...] = ("psnr", "roi_psnr", "ssim", "roi_ssim")
"""Metrics of ``alignment_gain`` (higher is better for all four)."""


def alignment_of(summary: Mapping[str, Any]) -> str:
    """The alignment a summary was scored under (``paper`` when it does not say: older outputs)."""
    return str(summary.get("alignment") or "paper")


def split_by_alignment(
    summaries: Iterable[Mapping[str, Any]],
) -> tuple[list[Mapping[str, Any]], list[Mapping[str, Any]]]:
    """(paper-aligned summaries, sub-pixel ones), order kept."""
    paper: list[Mapping[str, Any]] = []
    sub: list[Mapping[str, Any]] = []
    for s in summaries:
        (sub if alignment_of(s) == "subpixel" else paper).append(s)
    return paper, sub


def alignment_gain(
    paper: Iterable[Mapping[str, Any]], subpixel: Iterable[Mapping[str, Any]]
) -> list[dict[str, Any]]:
    """One row per (method, scale, marker) scored under both alignments, in the tables' row order.

    Returns
    -------
    list of dict
        ``method``, ``scale``, ``marker``, and for each of `GAIN_METRICS` ``<m>_paper``,
        ``<m>_subpixel`` and ``<m>_gain`` (subpixel − paper; dB for PSNR).
    """
    from srcaco2.trainers.tables import _order_key

    def key(s: Mapping[str, Any]) -> tuple[str, int, str]:
        return str(s["method"]).lower(), int(s["scale"]), str(s["marker"])

    ref = {key(s): s["metrics"] for s in paper}
    rows = []
    for s in subpixel:
        k = key(s)
        if k not in ref:
            continue
        row: dict[str, Any] = {"method": k[0], "scale": k[1], "marker": k[2]}
        for m in GAIN_METRICS:
            a, b = float(ref[k][m]), float(s["metrics"][m])
            row.update({f"{m}_paper": a, f"{m}_subpixel": b, f"{m}_gain": b - a})
        rows.append(row)
    return sorted(rows, key=lambda r: (_order_key(r["method"]), r["scale"], r["marker"]))


def _gain_markdown(rows: list[dict[str, Any]]) -> str:
    from srcaco2.trainers.tables import method_facts

    head = ["Method", "Scale", "Marker"]
    for m in GAIN_METRICS:
        name = ("ROI " if m.startswith("roi_") else "") + m.removeprefix("roi_").upper()
        head += [f"{name} paper", f"{name} sub-px", "Δ"]
    lines = [
        "Scores under the paper's registration (LR moved by whole LR pixels) and under sub-pixel "
        "alignment (prediction resampled by the residual TV-L1 shift; beyond the paper). "
        "Δ = sub-pixel − paper: the part of the paper-aligned score lost to registration.",
        "",
        "| " + " | ".join(head) + " |",
        "|" + "---|" * len(head),
    ]
    for r in rows:
        cells = [method_facts(r["method"])[1], f"×{r['scale']}", r["marker"]]
        for m in GAIN_METRICS:
            d = 2 if "psnr" in m else 4
            cells += [f"{r[m + '_paper']:.{d}f}", f"{r[m + '_subpixel']:.{d}f}", f"{r[m + '_gain']:+.{d}f}"]
        lines.append("| " + " | ".join(cells) + " |")
    return "\n".join(lines) + "\n"


def _gain_csv(rows: list[dict[str, Any]]) -> str:
    fields = ["method", "scale", "marker"] + [
        f"{m}_{a}" for m in GAIN_METRICS for a in ("paper", "subpixel", "gain")
    ]
    buf = io.StringIO()
    w = csv.DictWriter(buf, fieldnames=fields, lineterminator="\n")
    w.writeheader()
    w.writerows({k: repr(v) if isinstance(v, float) else v for k, v in r.items()} for r in rows)
    return buf.getvalue()


def write_alignment_tables(
    paper: list[Mapping[str, Any]],
    subpixel: list[Mapping[str, Any]],
    out_dir: str | Path,
    *,
    frc: bool = False,
) -> dict[str, Path]:
    """Write the ``*_subpixel`` tables and, when `paper` shares cells with `subpixel`, ``alignment_gain``.

    Returns name → path. Raises `ValueError` as `srcaco2.trainers.tables.build_table` does
    (duplicates, mixed splits).
    """
    from srcaco2.trainers.tables import _csv_text, build_table, render_latex, render_markdown

    out = Path(out_dir)
    kinds = (("roi", "table4_roi"), ("full", "table5_full")) + ((("frc", "table_frc"),) if frc else ())
    tables = {f"{stem}_subpixel": build_table(subpixel, kind=kind) for kind, stem in kinds}
    gain = alignment_gain(paper, subpixel)
    out.mkdir(parents=True, exist_ok=True)
    paths: dict[str, Path] = {}
    for stem, t in tables.items():
        md = render_markdown(t).replace("**\n", " — sub-pixel alignment (beyond the paper)**\n", 1)
        for ext, text in (("md", md), ("tex", render_latex(t)), ("csv", _csv_text(t))):
            paths[f"{stem}.{ext}"] = write_text_atomic(out / f"{stem}.{ext}", text)
    if gain:
        paths["alignment_gain.md"] = write_text_atomic(out / "alignment_gain.md", _gain_markdown(gain))
        paths["alignment_gain.csv"] = write_text_atomic(out / "alignment_gain.csv", _gain_csv(gain))
    return paths


def write_tables_by_alignment(
    summaries: list[Any], out_dir: str | Path, *, frc: bool = False, compare_paper: bool = False
) -> dict[str, Path]:
    """`srcaco2.trainers.tables.write_tables` for the paper-aligned summaries, and for those scored
    with ``--alignment subpixel`` their own tables and ``alignment_gain`` (`write_alignment_tables`)."""
    from srcaco2.trainers.tables import write_tables

    out = Path(out_dir)
    paper, subpixel = split_by_alignment(list(summaries))
    if not subpixel:
        return write_tables(paper, out, frc=frc, compare_paper=compare_paper)
    paths = write_tables(paper, out, frc=frc, compare_paper=compare_paper) if paper else {}
    return paths | write_alignment_tables(paper, subpixel, out, frc=frc)
