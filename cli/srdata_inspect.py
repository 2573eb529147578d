"""`srdata info STORE` and `srdata verify STORE` (logic in `srcaco2.srdata.inspect`)."""

from __future__ import annotations

import json
from typing import Any

import click

__all__ = ["info", "verify", "format_info"]


def _human(n: int) -> str:
    size = float(n)
    for unit in ("B", "KB", "MB", "GB", "TB"):
        if size < 1024 or unit == "TB":
            return f"{size:.1f} {unit}" if unit != "B" else f"{int(size)} B"
        size /= 1024
    return f"{n} B"  # pragma: no cover


def _table(header: list[str], rows: list[list[str]]) -> list[str]:
    widths = [max(len(str(r[i])) for r in [header, *rows]) for i in range(len(header))]
    fmt = "  ".join(f"{{:<{w}}}" for w in widths)
    return [fmt.format(*header).rstrip(), *(fmt.format(*map(str, r)).rstrip() for r in rows)]


def _um(v: float | None) -> str:
    return "unknown" if v is None else f"{v:g} um"


def format_info(d: dict[str, Any]) -> str:
    """Readable text of a `srcaco2.srdata.inspect.store_info` dict."""
    lines = [
        f"store     {d['path']}  ({_human(d['store_bytes'])}, format {d['format_version']}, "
        f"source {d['source'].get('kind', '?')})",
        f"markers   {', '.join(d['markers'])}",
        f"scales    {', '.join(str(s) for s in d['scales'])}",
        f"pixels    {d.get('dtype', 'uint8')}",
        "windows   "
        + (
            "{size}² px at stride {stride}, patch {patch}² (margin {margin}), accepted when the central "
            "{center}² holds >= {min_fraction:g} ROI".format(**d["window"])
            if d.get("window")
            else "-"
        ),
        "pixel     " + ", ".join(f"{k} {_um(v)}" for k, v in d["pixel_size_um"].items()),
        "chunks    " + ", ".join(f"{k} {v}" for k, v in d["chunks"].items()),
        f"index     {'complete' if d['index_complete'] else 'INCOMPLETE'}",
        "checksums "
        + (
            "crc32c on every chunk"
            if d.get("checksums")
            else "NONE (format 1: damaged or missing chunks go unnoticed; rebuild with this version)"
        ),
    ]
    reg = d.get("registration")
    if reg:
        scales = ", ".join(f"x{s}" for s in reg["scales"]) or "-"
        lines.append(f"register  {reg['method']} ({', '.join(reg['markers']) or '-'}; {scales})")
    lines += [
        "",
    ]
    acqs = ["hr", *(f"x{s}" for s in d["scales"]), "roi"]
    header = ["tile", "finished", *(f"{a} (shape / chunk)" for a in acqs), "roi fraction"]
    rows = []
    for t in d["tiles"]:
        cells = []
        for a in acqs:
            info = t["acquisitions"].get(a)
            cells.append(
                "-"
                if info is None
                else f"{'x'.join(map(str, info['shape']))} / {'x'.join(map(str, info['chunks']))}"
            )
        frac = "-" if t["roi_fraction"] is None else f"{t['roi_fraction']:.3f}"
        rows.append([t["tile"], "yes" if t["finished"] else "NO", *cells, frac])
    lines += _table(header, rows)
    preds = d.get("predictions") or []
    if preds:
        lines.append("")
        prow = [
            [p["path"], p["method"] or "?", f"x{p['scale']}" if p["scale"] else "?",
             ",".join(p["markers"] or []),
             "x".join(map(str, p["shape"] or [])) or "-", p["levels"],
             "yes" if p["exact"] else ("no" if p["exact"] is False else "?"),
             "yes" if p["complete"] else "INTERRUPTED"]
            for p in preds
        ]  # fmt: skip
        head = ["prediction", "method", "scale", "markers", "shape", "levels", "exact", "complete"]
        lines += _table(head, prow)
    if d["windows"]:
        lines.append("")
        wrows = [[k, v["accepted"], v["total"]] for k, v in d["windows"].items()]
        lines += _table(["split", "accepted", "total"], wrows)
    return "\n".join(lines)


@click.command()
@click.argument("store")
@click.option("--json", "as_json", is_flag=True, help="Print the summary as JSON.")
def info(store: str, as_json: bool) -> None:
    """Summarise STORE (path or fsspec URL): tiles, shapes, chunks, windows, ROI, predictions, size."""
    from srcaco2.srdata.inspect import store_info
    from srcaco2.srdata.schema import StoreFormatError

    try:
        d = store_info(store)
    except StoreFormatError as exc:
        raise click.ClickException(str(exc)) from None
    click.echo(json.dumps(d, indent=2) if as_json else format_info(d))


@click.command()
@click.argument("store")
@click.option("--no-chunks", is_flag=True, help="Check metadata and index only; do not decode every chunk.")
@click.option(
    "--workers", default=4, show_default=True, type=click.IntRange(1), help="Threads decoding chunks."
)
def verify(store: str, no_chunks: bool, workers: int) -> None:
    """Check STORE against the store contract; list every problem and exit 1 if there is any."""
    from srcaco2.srdata.verify import verify_store

    problems = verify_store(store, read_chunks=not no_chunks, workers=workers)
    if problems:
        for p in problems:
            click.echo(f"PROBLEM {p}")
        click.echo(f"{len(problems)} problem(s) in {store}", err=True)
        raise SystemExit(1)
    from srcaco2.srdata.inspect import checksummed
    from srcaco2.srdata.store import Store

    attrs = Store.open(store).attrs

    what = "metadata and index" if no_chunks else "metadata, index and every chunk"
    click.echo(
        f"OK {store}: {len(attrs.tiles)} tiles, markers {','.join(attrs.markers)}, scales "
        f"{','.join(map(str, attrs.scales))}; {what} follow the contract (format {attrs.format_version})"
    )
    if not checksummed(attrs):
        click.echo(
            f"note: {store} is a format-{attrs.format_version} store without chunk checksums: a corrupted "
            "chunk may decode to wrong pixels and a deleted one reads as zeros, unnoticed; rebuild it "
            "with this version's `srdata build` to get checksums",
            err=True,
        )
