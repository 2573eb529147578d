"""`srdata export-patches STORE OUT` (logic in `srcaco2.srdata.export_patches`)."""

from __future__ import annotations

import click

__all__ = ["export_patches"]

_MARKERS = ("CELL0", "CELL1", "CELL2")
_SCALES = (2, 4, 8)


def _split_list(value: tuple[str, ...]) -> list[str]:
    return [v.strip() for item in value for v in item.split(",") if v.strip()]


def _markers(ctx: click.Context, param: click.Parameter, value: tuple[str, ...]) -> list[str] | None:
    out = _split_list(value)
    bad = [m for m in out if m not in _MARKERS]
    if bad:
        raise click.BadParameter(f"unknown marker(s) {bad}; choose from {', '.join(_MARKERS)}")
    return out or None


def _scales(ctx: click.Context, param: click.Parameter, value: tuple[str, ...]) -> list[int] | None:
    out = _split_list(value)
    bad = [s for s in out if not s.isdigit() or int(s) not in _SCALES]
    if bad:
        raise click.BadParameter(f"unknown scale(s) {bad}; choose from {', '.join(map(str, _SCALES))}")
    return [int(s) for s in out] or None


@click.command("export-patches")
@click.argument("store")
@click.argument("out", type=click.Path(file_okay=False))
@click.option("--split", type=click.Choice(["train", "val", "test"]), default=None, help="Only this split.")
@click.option(
    "--markers", multiple=True, callback=_markers, help="Markers, e.g. CELL2 or CELL0,CELL2 (default all)."
)
@click.option("--scales", multiple=True, callback=_scales, help="LR scales, e.g. 4 or 2,8 (default all).")
@click.option("--workers", default=4, show_default=True, type=click.IntRange(1), help="Threads over windows.")
@click.option("--overwrite", is_flag=True, help="Replace a non-empty OUT (never merged into).")
def export_patches(
    store: str,
    out: str,
    split: str | None,
    markers: list[str] | None,
    scales: list[int] | None,
    workers: int,
    overwrite: bool,
) -> None:
    """Write STORE's accepted windows to OUT in the released SR-CACO-2 patch layout + fold lists."""
    import sys

    from tqdm import tqdm

    from srcaco2.srdata.export_patches import export_patches as run
    from srcaco2.srdata.schema import StoreFormatError

    try:
        with tqdm(unit="window", file=sys.stderr, disable=None, desc="export") as bar:
            res = run(
                store,
                out,
                split=split,
                markers=markers,
                scales=scales,
                workers=workers,
                progress=bar.update,
                overwrite=overwrite,
            )
    except (StoreFormatError, ValueError, OSError) as exc:
        raise click.ClickException(str(exc)) from None
    click.echo(
        f"wrote {res['files']} patch files of {res['windows']} windows and {len(res['fold_lists'])} "
        f"fold lists to {res['out']}"
    )
