"""`srdata build`: raw tiles -> one Zarr store (OME-NGFF images, ROI masks, window index)."""

from __future__ import annotations

import json
import sys

import click


@click.command("build")
@click.argument("raw", type=click.Path(exists=True))
@click.argument("store", type=str)
@click.option(
    "--scheduler", default="threads", show_default=True,
    help="Dask scheduler: threads, processes, sync, or a dask.distributed address (tcp://host:8786).",
)  # fmt: skip
@click.option(
    "--workers", type=click.IntRange(min=1), default=None,
    help="Threads (threads) or worker processes (processes: a local dask.distributed cluster).",
)  # fmt: skip
@click.option(
    "--chunk", type=click.IntRange(min=8), default=512, show_default=True, help="HR chunk edge, px."
)
@click.option(
    "--roi-threshold", type=click.IntRange(0, 255), default=4, show_default=True,
    help="ROI = HR CELL2 >= this (uint8 intensity; official layout).",
)  # fmt: skip
@click.option("--roi-min-fraction", type=click.FloatRange(0, 1), default=0.2, show_default=True)
@click.option("--roi-method", type=click.Choice(["fixed", "otsu"]), default="fixed", show_default=True)
@click.option("--split", type=click.Choice(["auto", "official"]), default="auto", show_default=True)
@click.option("--no-register", is_flag=True, help="Skip the TV-L1 registration (all shifts 0).")
@click.option(
    "--register-markers", default=None, metavar="M[,M..]",
    help="Register only these markers (comma list of CELL0,CELL1,CELL2; default all); others keep shift 0.",
)  # fmt: skip
@click.option(
    "--register-scales", default=None, metavar="S[,S..]",
    help="Register only these scales (comma list of 2,4,8; default all); others keep shift 0.",
)  # fmt: skip
@click.option(
    "--registration", "registration_impl", type=click.Choice(["numba", "skimage"]), default="numba",
    show_default=True,
    help="TV-L1 implementation: numba (compiled, 13-20x faster) or skimage (the reference); same "
    "algorithm and parameters; recorded in the store's attributes.",
)  # fmt: skip
@click.option(
    "--pixel-size-um", type=click.FloatRange(min=0, min_open=True), default=None,
    help="HR pixel size, µm. Default: read from the HR TIFFs' metadata (OME-XML, ImageJ, resolution "
    "tags); when they hold none, the store records the size as unknown (coordinates in HR pixels). "
    "Given, it overrides the metadata. See docs/store.md#pixel-size.",
)  # fmt: skip
@click.option("--overwrite", is_flag=True, help="Replace an existing store at STORE.")
@click.option("--json", "as_json", is_flag=True, help="Print the summary as JSON.")
def build(
    raw: str, store: str, scheduler: str, workers: int | None, chunk: int, roi_threshold: int,
    roi_min_fraction: float, roi_method: str, split: str, no_register: bool,
    register_markers: str | None, register_scales: str | None, registration_impl: str,
    pixel_size_um: float | None,
    overwrite: bool, as_json: bool,
) -> None:  # fmt: skip
    """Build STORE (path or fsspec URL) from RAW: tiles in the official layout, or a manifest.

    RAW is a folder (HighRes1024/, LowRes512/, ...) or a manifest YAML naming your own paired scans
    (any channels, uint8/uint16, integer scales 2-8; see the README, "Your own data"); a manifest
    sets the channels, the ROI rule and the window geometry itself (the --roi-* options are for the
    official layout). Resumable: rerunning the same command skips finished tiles and redoes a
    partial one.
    """
    from tqdm import tqdm

    from srcaco2.srdata.build import BuildConfig, BuildError, build_store
    from srcaco2.srdata.layout import RawInputError
    from srcaco2.srdata.lease import LeaseLostError
    from srcaco2.srdata.schedulers import check_scheduler
    from srcaco2.srdata.schema import StoreFormatError

    def _list(text: str | None) -> list[str] | None:
        return None if text is None else [v.strip() for v in text.split(",") if v.strip()]

    try:
        check_scheduler(scheduler)
        scales = _list(register_scales)
        cfg = BuildConfig(
            chunk=chunk, roi_threshold=roi_threshold, roi_min_fraction=roi_min_fraction,
            roi_method=roi_method, split=split, register=not no_register, overwrite=overwrite,  # type: ignore[arg-type]
            pixel_size_um=pixel_size_um, registration_impl=registration_impl,
            register_markers=None if register_markers is None else tuple(_list(register_markers) or ()),
            register_scales=None if scales is None else tuple(int(v) for v in scales),
        )  # fmt: skip
    except ValueError as exc:
        raise click.BadParameter(str(exc)) from None
    bar = tqdm(unit="tile", desc="build", file=sys.stderr)

    def on_event(ev) -> None:
        if ev.stage == "tile":
            bar.total = ev.total
            bar.set_postfix_str(f"tile {ev.tile}")
        elif ev.stage in ("write", "roi", "register"):
            bar.set_postfix_str(f"tile {ev.tile} {ev.stage} {ev.done}/{ev.total}")
        elif ev.stage == "skip":
            bar.set_postfix_str(f"tile {ev.tile} already built")
        elif ev.stage == "index":
            bar.set_postfix_str("index")
        if ev.stage == "finished":
            bar.update(1)

    try:
        summary = build_store(raw, store, cfg, scheduler=scheduler, workers=workers, progress=on_event)
    except (RawInputError, StoreFormatError, BuildError, LeaseLostError, ValueError) as exc:
        bar.close()
        raise click.ClickException(str(exc)) from None
    bar.close()
    if as_json:
        click.echo(json.dumps(summary))
    else:
        click.echo(
            f"{summary['store']}: {len(summary['tiles'])} tiles ({len(summary['built'])} built, "
            f"{len(summary['skipped'])} already done), {summary['windows']} windows, "
            f"{summary['accepted']} accepted (train {summary['train']}, val {summary['val']}, "
            f"test {summary['test']})"
        )
    if summary["windows"] and summary["accepted"] == 0:
        click.echo(
            "warning: no window passed the ROI rule; lower --roi-threshold / --roi-min-fraction or use "
            "--roi-method otsu for data dimmer than SR-CACO-2",
            err=True,
        )
