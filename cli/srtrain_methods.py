"""`srtrain methods`: the registry as a table (name, family, paper, parameters and halo at x2/x4/x8)."""

from __future__ import annotations

import json

import click

__all__ = ["methods", "method_rows"]


def method_rows() -> list[dict]:
    """One row per registered model; parameter counts come from the reference layouts
    (``trainers/models/reference/<name>_x<s>.json``, which the registry's networks are tested to
    match): no network is built."""
    from srcaco2.trainers.models import MODEL_NAMES, model_info
    from srcaco2.trainers.models.registry import reference_layout

    rows = []
    for name in MODEL_NAMES:
        row: dict = {"name": name, "family": None, "paper": None, "multi_output": None, "params": {},
                     "halo": {}}  # fmt: skip
        try:
            info = model_info(name)
        except Exception as exc:  # one broken family must not hide the others
            row["error"] = f"{type(exc).__name__}: {exc}"
            rows.append(row)
            continue
        row.update(family=info.family, paper=info.paper, multi_output=info.multi_output,
                   display_name=info.display_name, input_grid=info.input_grid,
                   global_reason=info.global_reason)  # fmt: skip
        for s in (2, 4, 8):
            row["halo"][f"x{s}"] = info.receptive_halo(s) if s in info.scales else None
            layout = reference_layout(name, s) if s in info.scales else None
            if name == "bicubic":
                row["params"][f"x{s}"] = 0  # no weights
            else:
                row["params"][f"x{s}"] = None if layout is None else int(layout["param_count"])
        rows.append(row)
    return rows


def _fmt(n: int | None) -> str:
    if n is None:
        return "n/a"
    return f"{n:,}" if n < 1_000_000 else f"{n / 1e6:.2f}M"


@click.command("methods")
@click.option("--json", "as_json", is_flag=True, help="Print the rows as JSON instead of a table.")
def methods(as_json: bool) -> None:
    """List the benchmark's methods: name, family, paper, parameter count and tiling halo at x2 / x4 / x8.

    The halo (LR px) is the receptive reach `srtrain predict` uses by default; "global" marks a
    network whose output depends on the whole image (whole-image context by default).
    """
    rows = method_rows()
    if as_json:
        click.echo(json.dumps(rows, indent=2))
        return
    head = ("name", "family", "paper", "x2", "x4", "x8", "halo x2/x4/x8")
    table = [head] + [
        (
            r["name"],
            r["family"] or "?",
            r["paper"] or r.get("error", "?"),
            *(_fmt(r["params"].get(f"x{s}")) for s in (2, 4, 8)),
            "global" if r.get("global_reason") else "/".join(str(r["halo"].get(f"x{s}")) for s in (2, 4, 8)),
        )
        for r in rows
    ]
    widths = [max(len(str(t[i])) for t in table) for i in range(len(head))]
    for i, t in enumerate(table):
        cells = [str(c).ljust(w) if j < 3 else str(c).rjust(w) for j, (c, w) in enumerate(zip(t, widths))]
        click.echo("  ".join(cells).rstrip())
        if i == 0:
            click.echo("  ".join("-" * w for w in widths))
    for r in rows:
        if r.get("error"):
            click.echo(f"warning: {r['name']}: {r['error']}", err=True)
