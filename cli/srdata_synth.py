"""`srdata synth`: write synthetic raw tiles in the official layout."""

from __future__ import annotations

import sys

import click


def _parse_scales(ctx: click.Context, param: click.Parameter, value: str) -> tuple[int, ...]:
    """``"2,3"`` -> ``(2, 3)``: distinct integers 2..8, sorted."""
    try:
        scales = sorted({int(v) for v in value.split(",")})
    except ValueError:
        raise click.BadParameter(f"{value!r}: use comma-separated integers 2-8, e.g. 2,3") from None
    if not all(2 <= s <= 8 for s in scales) or any(str(int(v)) != v.strip() for v in value.split(",")):
        raise click.BadParameter(f"{value!r}: use comma-separated integers 2-8, e.g. 2,3")
    return tuple(scales)


def _parse_names(ctx: click.Context, param: click.Parameter, value: str | None) -> list[str] | None:
    """``"DAPI,Actin"`` -> ``["DAPI", "Actin"]``: 1-8 distinct, non-empty names."""
    if value is None:
        return None
    names = [v.strip() for v in value.split(",")]
    if not 1 <= len(names) <= 8 or any(not n for n in names) or len(set(names)) != len(names):
        raise click.BadParameter(f"{value!r}: use 1-8 distinct comma-separated names, e.g. DAPI,Actin")
    return names


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
    "--channels", type=click.IntRange(1, 8), default=None,
    help="Channels per acquisition, 1-8 (default 3, or one per --channel-names).",
)  # fmt: skip
@click.option(
    "--channel-names", callback=_parse_names, default=None,
    help="Comma-separated channel names, e.g. DAPI,Actin (own-data form; default ch0..chN-1).",
)  # fmt: skip
@click.option(
    "--bit-depth", type=click.Choice(["8", "16"]), default="8", show_default=True,
    help="Detector bit depth: uint8, or uint16 (camera-like offset and gain).",
)  # fmt: skip
@click.option(
    "--scales", callback=_parse_scales, default="2,4,8", show_default=True,
    help="Comma-separated LR scales, integers 2-8, e.g. 2,3.",
)  # fmt: skip
@click.option(
    "--layout", type=click.Choice(["auto", "official", "manifest"]), default="auto", show_default=True,
    help="official: HighRes1024/ LowRes*/ (3 channels, 8 bit, 2,4,8 only); manifest: acq/ TIFFs + "
    "manifest.yaml; auto: official for the SR-CACO-2 settings, else manifest.",
)  # fmt: skip
@click.option(
    "--overwrite", is_flag=True,
    help="Replace the synthetic output (HighRes1024/, LowRes*/, acq/, manifest.yaml, synth.json) of a "
    "non-empty OUT.",
)  # fmt: skip
def synth(
    out: str,
    n_tiles: int,
    hr_size: int,
    seed: int,
    no_noise: bool,
    no_misregistration: bool,
    channels: int | None,
    channel_names: list[str] | None,
    bit_depth: str,
    scales: tuple[int, ...],
    layout: str,
    overwrite: bool,
) -> None:
    """Write N synthetic tiles (cysts of packed nuclei: CELL0 puncta, CELL1 membranes, CELL2 nuclei) to OUT.

    A physical model calibrated on a real SR-CACO-2 sample (srcaco2.srdata.synth.SynthParams): HR and each
    LR scan are separate acquisitions with their own focus, PSF, pixel integration, gain,
    background, shot and read noise, and a stage offset of 1-2.5 LR px (register them at build
    time). OUT receives HighRes1024/, LowRes512/, LowRes256/, LowRes128/ with (3, H, W) uint8 TIFFs
    named like the real data, and synth.json with every parameter and each scan's offset. Build a
    store from it with `srdata build OUT STORE`.

    With other channels, bit depth or scales (or --layout manifest), OUT receives the own-data form
    instead: acq/<id>_HR.tif (C, H, W) and acq/<id>_lr<s>.tif per scale (H a multiple of every
    scale, HR = s x LR exactly; --hr-size is rounded down to one) and manifest.yaml, ready for
    `srdata build OUT/manifest.yaml STORE`.
    """
    from tqdm import tqdm

    from srcaco2.srdata.synth import SynthParams, write_synth
    from srcaco2.srdata.synth.acquire import is_official
    from srcaco2.srdata.synth.own import own_tile_side

    if channel_names is not None and channels is not None and len(channel_names) != channels:
        raise click.BadParameter(
            f"{len(channel_names)} names for --channels {channels}", param_hint="'--channel-names'"
        )
    n_channels = channels if channels is not None else len(channel_names) if channel_names else 3
    settings = dict(channels=n_channels, bit_depth=int(bit_depth), scales=scales)
    official = is_official(SynthParams(hr_size=64, **settings)) and channel_names is None
    if layout == "official" and not official:
        raise click.BadParameter(
            "the official layout holds 3 unnamed channels, 8 bit, scales 2,4,8; use --layout manifest",
            param_hint="'--layout'",
        )
    manifest = layout == "manifest" or (layout == "auto" and not official)
    if manifest:
        try:
            side = own_tile_side(hr_size, scales)
        except ValueError as exc:
            raise click.BadParameter(str(exc), param_hint="'--hr-size'") from None
        if side != hr_size:
            click.echo(
                f"note: --hr-size {hr_size} rounded down to {side}, a multiple of every scale", err=True
            )
            hr_size = side
    params = SynthParams(
        hr_size=hr_size, seed=seed, noise=not no_noise, misregistration=not no_misregistration, **settings
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

        for name in (*FOLDERS.values(), "synth.json", "acq", "manifest.yaml"):
            target = Path(out) / name
            if target.is_dir():
                shutil.rmtree(target)
            elif target.exists():
                target.unlink()
    try:
        with tqdm(total=n_tiles, unit="tile", desc="synth", file=sys.stderr) as bar:
            if manifest:
                from srcaco2.srdata.synth.own import write_own_synth

                path = write_own_synth(out, n_tiles=n_tiles, params=params, channel_names=channel_names,
                                       progress=lambda t: bar.update(1))  # fmt: skip
                tiles = list(range(1, n_tiles + 1))
            else:
                tiles = write_synth(out, n_tiles=n_tiles, params=params, progress=lambda t: bar.update(1))
    except OSError as exc:
        raise click.ClickException(
            f"{out}: writing the synthetic tiles failed ({exc.strerror or type(exc).__name__}"
            f"{f': {exc.filename}' if getattr(exc, 'filename', None) else ''}); choose a writable OUT "
            "folder with free space"
        ) from None
    click.echo(f"wrote {len(tiles)} synthetic tiles ({hr_size}² HR) to {out}")
    if manifest:
        click.echo(f"manifest: {path} (build: srdata build {path} STORE)")
    if hr_size < 640:
        click.echo(
            f"warning: --hr-size {hr_size} is below one 640 px window: a store built from these tiles has "
            "no training window (use --hr-size 1024 or more)",
            err=True,
        )
