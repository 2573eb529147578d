"""`srdata synth`: write synthetic raw tiles in the official layout."""

from __future__ import annotations

import sys

import click


@click.command("synth")
@click.argument("out", type=click.Path(file_okay=False))
@click.option(
    "--tiles", "n_tiles", type=click.IntRange(min=1), default=3, show_default=True, help="Number of tiles."
)
@click.option(
    "--hr-size",
    type=click.IntRange(min=64),
    default=2048,
    show_default=True,
    help="HR tile side, px (real: ~9344).",
)
@click.option(
    "--seed", type=click.IntRange(min=0), default=0, show_default=True,
    help="Root seed (tile t uses [seed, t]).",
)  # fmt: skip
@click.option("--no-noise", is_flag=True, help="No shot/read noise (the rounded expected image).")
@click.option(
    "--no-misregistration",
    is_flag=True,
    help="No stage offsets (LR aligned with HR); with --no-noise: LR = exact area mean of HR.",
)
@click.option(
    "--overwrite", is_flag=True,
    help="Replace the raw layout (HighRes1024/, LowRes*/, synth.json) of a non-empty OUT.",
)  # fmt: skip
def synth(
    out: str, n_tiles: int, hr_size: int, seed: int, no_noise: bool, no_misregistration: bool, overwrite: bool
) -> None:
    """Write N synthetic tiles (cysts of packed nuclei: CELL0 puncta, CELL1 membranes, CELL2 nuclei) to OUT.

    A physical model calibrated on a real SR-CACO-2 sample (srcaco2.srdata.synth.SynthParams): HR and each
    LR scan are separate acquisitions with their own focus, PSF, pixel integration, gain,
    background, shot and read noise, and a stage offset of 1-2.5 LR px (register them at build
    time). OUT receives HighRes1024/, LowRes512/, LowRes256/, LowRes128/ with (3, H, W) uint8 TIFFs
    named like the real data, and synth.json with every parameter and each scan's offset. Build a
    store from it with `srdata build OUT STORE`.
    """
    from tqdm import tqdm

    from srcaco2.srdata.synth import SynthParams, write_synth

    params = SynthParams(
        hr_size=hr_size, seed=seed, noise=not no_noise, misregistration=not no_misregistration
    )
    from pathlib import Path

    from srcaco2.srdata.storefs import StoreNotWritableError, ensure_writable

    try:
        ensure_writable(out, fix="choose a writable OUT folder")  # refuse before the first tile
    except StoreNotWritableError as exc:
        raise click.ClickException(str(exc)) from None
    if Path(out).is_dir() and any(Path(out).iterdir()):
        if not overwrite:  # a second synthesis into one folder leaves tiles of mixed sizes and seeds
            raise click.ClickException(
                f"{out} is not empty; synthesise into a new or empty folder, or pass --overwrite to replace "
                "its raw layout"
            )
        import shutil

        from srcaco2.srdata.layout import FOLDERS

        for name in (*FOLDERS.values(), "synth.json"):
            target = Path(out) / name
            if target.is_dir():
                shutil.rmtree(target)
            elif target.exists():
                target.unlink()
    try:
        with tqdm(total=n_tiles, unit="tile", desc="synth", file=sys.stderr) as bar:
            tiles = write_synth(out, n_tiles=n_tiles, params=params, progress=lambda t: bar.update(1))
    except OSError as exc:
        raise click.ClickException(
            f"{out}: writing the synthetic tiles failed ({exc.strerror or type(exc).__name__}"
            f"{f': {exc.filename}' if getattr(exc, 'filename', None) else ''}); choose a writable OUT "
            "folder with free space"
        ) from None
    click.echo(f"wrote {len(tiles)} synthetic tiles ({hr_size}² HR) to {out}")
    if hr_size < 640:
        click.echo(
            f"warning: --hr-size {hr_size} is below one 640 px window: a store built from these tiles has "
            "no training window (use --hr-size 1024 or more)",
            err=True,
        )
