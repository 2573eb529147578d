"""`srdata import-patches PATCHES STORE` (logic in `srcaco2.srdata.import_patches`)."""

from __future__ import annotations

import click

__all__ = ["import_patches"]


@click.command("import-patches")
@click.argument("patches", type=click.Path(file_okay=False))
@click.argument("store")
@click.option(
    "--folds",
    type=click.Path(file_okay=False),
    default=None,
    help="Folder with the caco2_<split>_X_<s>_... fold folders (default: searched in PATCHES).",
)
@click.option(
    "--chunk",
    default=512,
    show_default=True,
    type=click.IntRange(8),
    help="HR chunk edge in pixels (a multiple of 8, as `srdata build`; LR chunk = chunk / s).",
)
@click.option(
    "--pixel-size-um",
    default=None,
    type=click.FloatRange(min=0, min_open=True),
    help="HR pixel size in micrometres. The release does not record it: without this option the store "
    "says 'unknown' and its coordinates are HR pixels (docs/store.md#pixel-size).",
)
@click.option("--overwrite", is_flag=True, help="Replace an existing store at STORE.")
@click.option(
    "--workers", default=4, show_default=True, type=click.IntRange(1), help="Threads reading TIFFs."
)
def import_patches(
    patches: str,
    store: str,
    folds: str | None,
    chunk: int,
    pixel_size_um: float | None,
    overwrite: bool,
    workers: int,
) -> None:
    """Build STORE from a released SR-CACO-2 patch folder PATCHES (hr_div_1/, hr_div_{2,4,8}/, folds/)."""
    import os

    from srcaco2.srdata.import_patches import import_patches as run
    from srcaco2.srdata.lease import LeaseLostError
    from srcaco2.srdata.schema import StoreFormatError

    if not os.path.isdir(patches):
        raise click.ClickException(
            f"{patches}: no such folder; PATCHES must be the released-patch root "
            "holding hr_div_1/, hr_div_2/, ..."
        )
    try:
        res = run(
            patches,
            store,
            folds=folds,
            chunk=chunk,
            pixel_size_um=pixel_size_um,
            overwrite=overwrite,
            workers=workers,
        )
    except (StoreFormatError, LeaseLostError, ValueError, OSError) as exc:
        raise click.ClickException(str(exc)) from None
    splits = ", ".join(f"{k} {v}" for k, v in sorted(res["splits"].items()))
    click.echo(
        f"imported {res['windows']} windows of {len(res['tiles'])} tiles ({splits}) into {res['store']}; "
        f"{res['shifted']} LR patches placed with an offset, {len(res['conflicts'])} conflicting"
    )
    for path in res["conflicts"][:20]:
        click.echo(f"  conflict: {path}", err=True)
