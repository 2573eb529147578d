"""`srtrain predict`: whole-image inference, into a store's predictions/ or from/to image files."""

from __future__ import annotations

import os
import sys
from typing import Any

import click

__all__ = ["predict", "halo_table"]


def halo_table() -> list[str]:
    """Lines of the per-network default-halo table shown by ``srtrain predict --help``."""
    from srcaco2.trainers.models import available_models

    lines = ["network     halo x2/x4/x8 (LR px)  grid"]
    for i in available_models():
        halos = (
            "whole image (global)" if i.is_global else "/".join(str(i.receptive_halo(s)) for s in (2, 4, 8))
        )
        lines.append(f"{i.name:<11} {halos:<22} {i.input_grid}")
    return lines


class _PredictCommand(click.Command):
    """Builds the halo table only when the help is shown (it imports the networks)."""

    def format_epilog(self, ctx: click.Context, formatter: click.HelpFormatter) -> None:
        with formatter.section("Default halo per network (= its receptive reach; exact tiling)"):
            formatter.write_text(
                "A smaller --halo bounds the context of each core: output pixels within (reach - halo) "
                "LR px of a core border then differ from whole-image inference (the overlap blends the "
                "seams but does not remove the error); the compute per core is ((tile + 2 halo) / "
                "tile)^2 times the core's, hence the default tile of max(128, 2 halo). Global networks "
                "have no exact finite halo: their default is one whole-image forward (memory of the "
                "whole image); --halo N tiles them approximately with bounded memory."
            )
            formatter.write_paragraph()
            for line in halo_table():
                formatter.write(f"{' ' * (formatter.current_indent + 2)}{line}\n")
        super().format_epilog(ctx, formatter)


@click.command("predict", cls=_PredictCommand)
@click.option("--store", "store", help="Store holding the LR tiles (path or fsspec URL).")
@click.option(
    "--input",
    "input_path",
    type=click.Path(exists=True),
    help="Instead of --store: an image file, TIFF (2-D or channel-first (c, y, x), uint8 or uint16) or "
    "OME-Zarr image.",
)
@click.option(
    "--output",
    "output_path",
    help="With --input: OUT.ome.zarr (OME-Zarr: channel names, colours, pixel size / scale) or OUT.tif "
    "(ImageJ TIFF, up to 4 GiB). Default: <input>_<method>_x<scale>.ome.zarr beside the input.",
)
@click.option("--checkpoint", type=click.Path(exists=True), help="Our checkpoint or an original run dir.")
@click.option("--method", help="Instead of a checkpoint: a weight-free method (bicubic).")
@click.option(
    "--scale", type=click.Choice(["2", "4", "8"]), help="Scale (taken from the checkpoint if omitted)."
)
@click.option("--marker", help="Store: marker (default: the checkpoint's marker, else CELL2).")
@click.option("--tile", "tiles", type=int, multiple=True, help="Store: tile id(s) to predict (default: all).")
@click.option(
    "--name", help="Store: prediction name under predictions/ (default: <method>_x<scale>_<marker>)."
)
@click.option("--out-store", help="Store: write into this store instead of STORE (created if missing).")
@click.option(
    "--channel", "channels", type=click.IntRange(0), multiple=True,
    help="--input: channel index(es) to predict (default: all; channels are predicted one by one).",
)  # fmt: skip
@click.option(
    "--in-max", type=click.FloatRange(min=0, min_open=True),
    help="--input: grey level mapped to 1.0. Default 255 for uint8, 65535 for uint16 (pass e.g. 4095 for "
    "12-bit data). uint16 output = round(clip(sr, 0, 1) x in-max), uint8 output = round(clip(sr) x 255).",
)  # fmt: skip
@click.option(
    "--pixel-size-um", type=click.FloatRange(min=0, min_open=True),
    help="--input: input pixel size in um when the file does not state it (output: this / scale).",
)  # fmt: skip
@click.option("--overwrite", is_flag=True, help="--input: replace an existing --output.")
@click.option("--tile-size", type=click.IntRange(1), help="Core side, LR pixels. Default max(128, 2 x halo).")
@click.option(
    "--overlap", type=click.IntRange(0), help="Overlap between cores, LR pixels. Default min(16, tile // 4)."
)
@click.option(
    "--halo",
    type=click.IntRange(0),
    help="Discarded context per side, LR pixels. Default: the network's receptive halo (table below).",
)
@click.option(
    "--whole-image", is_flag=True, help="One forward over the whole image (exact for every network)."
)
@click.option("--batch-size", default=4, show_default=True, type=click.IntRange(1))
@click.option("--device", default="auto", show_default=True, help="auto | cpu | cuda | cuda:N")
@click.option(
    "--panels",
    type=click.IntRange(0),
    default=0,
    show_default=True,
    help="Store: also draw PNG panels LR | bicubic | SR | HR | ROI for the first N windows of --split "
    "(of the --tile tiles when given).",
)
@click.option("--split", default="test", show_default=True, help="Split of the panel windows.")
@click.option(
    "--panel-dir", type=click.Path(file_okay=False), help="Where panels go (default ./panels_<name>)."
)
def predict(
    store: str | None,
    input_path: str | None,
    output_path: str | None,
    checkpoint: str | None,
    method: str | None,
    scale: str | None,
    marker: str | None,
    tiles: tuple[int, ...],
    name: str | None,
    out_store: str | None,
    channels: tuple[int, ...],
    in_max: float | None,
    pixel_size_um: float | None,
    overwrite: bool,
    tile_size: int | None,
    overlap: int | None,
    halo: int | None,
    whole_image: bool,
    batch_size: int,
    device: str,
    panels: int,
    split: str,
    panel_dir: str | None,
) -> None:
    """Super-resolve whole images in overlapping tiles, exact and without seams.

    Either the LR tiles of a store (--store; written into its predictions/ group as OME-NGFF images)
    or an image file (--input TIFF or OME-Zarr; written to --output as OME-Zarr or TIFF). The
    output is streamed row band by row band, so it never has to fit in memory.
    """
    if (store is None) == (input_path is None):
        raise click.UsageError("give exactly one of --store STORE or --input IMAGE")
    if (checkpoint is None) == (method is None):
        raise click.UsageError("give exactly one of --checkpoint PATH or --method bicubic")
    if whole_image and halo is not None:
        raise click.UsageError("--whole-image and --halo exclude each other (whole image = unlimited halo)")
    if overlap is not None and tile_size is not None and overlap >= tile_size:
        raise click.BadParameter(
            f"--overlap {overlap} must be smaller than --tile-size {tile_size} (cores must advance)",
            param_hint="--overlap",
        )
    if input_path is not None:  # refuse bad file arguments before the (slow) imports and model load
        from srcaco2.srdata.images import check_image_request

        try:
            check_image_request(input_path, output_path, channels, overwrite)
        except (ValueError, FileExistsError, FileNotFoundError) as exc:
            raise click.ClickException(str(exc)) from None
    model, meth, s, mk, overrides = _load_model(checkpoint, method, scale, marker)
    from srcaco2.trainers._ddp import resolve_device
    from srcaco2.trainers.tiling import plan_tiling

    try:
        dev = resolve_device(device)
    except ValueError as exc:
        raise click.BadParameter(str(exc), param_hint="--device") from None
    model = model.to(dev).eval()
    try:
        plan = plan_tiling(meth, s, overrides=overrides, tile=tile_size, overlap=overlap, halo=halo,
                           whole=whole_image)  # fmt: skip
    except ValueError as exc:
        raise click.BadParameter(str(exc), param_hint="--overlap") from None
    if not plan.exact:
        click.echo(
            f"note: --halo {plan.halo} is below {meth}'s receptive reach "
            f"({plan.receptive_halo if plan.receptive_halo is not None else 'the whole image'} LR px): "
            "tiles differ slightly from whole-image inference near their borders",
            err=True,
        )
    source = str(checkpoint or method)
    try:
        if input_path is not None:
            _predict_file(model, meth, s, plan, input_path, output_path, channels, in_max, pixel_size_um,
                          overwrite, batch_size, dev, source)  # fmt: skip
        else:
            _predict_store(model, meth, s, mk, plan, str(store), tiles, name, out_store, batch_size, dev,
                           source, panels, split, panel_dir)  # fmt: skip
    except _oom_errors() as exc:
        raise click.ClickException(
            f"out of memory ({type(exc).__name__}); pass a smaller --tile-size or --batch-size"
            + (", or --halo N to tile this global network" if plan.halo is None else "")
        ) from None


def _oom_errors() -> tuple[type[BaseException], ...]:
    import torch

    return (torch.OutOfMemoryError,) if hasattr(torch, "OutOfMemoryError") else (MemoryError,)


def _load_model(
    checkpoint: str | None, method: str | None, scale: str | None, marker: str | None
) -> tuple[Any, str, int, str, dict[str, Any] | None]:
    """(model, method, scale, marker, overrides) from a checkpoint or a weight-free method."""
    if checkpoint is not None:
        from srcaco2.trainers.checkpoints import load_pretrained

        try:
            model, info = load_pretrained(checkpoint, scale=int(scale) if scale else None, marker=marker)
        except (ValueError, FileNotFoundError, KeyError) as exc:
            raise click.ClickException(str(exc)) from None
        return (
            model,
            info["method"],
            int(info["scale"]),
            marker or info.get("marker") or "CELL2",
            info.get("overrides"),
        )
    from srcaco2.trainers.evaluate import check_weight_free_method
    from srcaco2.trainers.models import build_model

    try:
        method = check_weight_free_method(method)  # a network without weights would predict noise
    except ValueError as exc:
        raise click.ClickException(str(exc)) from None
    if scale is None:
        raise click.UsageError("--method needs --scale")
    return build_model(method, int(scale)).eval(), method, int(scale), marker or "CELL2", None


def _bar(desc: str) -> Any:
    from tqdm import tqdm

    return tqdm(total=1, desc=desc, unit="tile row", file=sys.stderr)


def _progress(bar: Any) -> Any:
    def update(done: int, total: int) -> None:
        bar.total = total
        bar.n = done
        bar.refresh()

    return update


def _predict_file(model: Any, meth: str, s: int, plan: Any, input_path: str, output_path: str | None,
                  channels: tuple[int, ...], in_max: float | None, pixel_size_um: float | None,
                  overwrite: bool, batch_size: int, dev: Any, source: str) -> None:  # fmt: skip
    from srcaco2.trainers.predict_image import predict_image

    if output_path is None:
        stem = os.path.basename(input_path.rstrip("/"))
        for ext in (".ome.zarr", ".zarr", ".ome.tiff", ".ome.tif", ".tiff", ".tif"):
            if stem.lower().endswith(ext):
                stem = stem[: -len(ext)]
                break
        output_path = os.path.join(
            os.path.dirname(os.path.abspath(input_path)), f"{stem}_{meth}_x{s}.ome.zarr"
        )
    with _bar(os.path.basename(input_path)) as bar:
        try:
            out = predict_image(
                model, input_path, output_path, s, method=meth, channels=list(channels) or None,
                in_max=in_max, pixel_size_um=pixel_size_um, tiling=plan, batch_size=batch_size, device=dev,
                progress=_progress(bar), overwrite=overwrite, metadata={"source_model": source},
            )  # fmt: skip
        except (ValueError, FileExistsError, FileNotFoundError) as exc:
            raise click.ClickException(str(exc)) from None
        except OSError as exc:  # disk full, folder made read-only meanwhile: the partial output is removed
            raise click.ClickException(
                f"could not write {output_path} ({exc.strerror or exc}); nothing was left there: free space "
                "or choose another --output and rerun"
            ) from None
    px = "unknown pixel size" if out["pixel_size_um"] is None else f"{out['pixel_size_um']:g} um/px"
    click.echo(f"{out['output']}  ({out['kind']}, {'x'.join(map(str, out['shape']))} {out['dtype']}, {px})")


def _predict_store(model: Any, meth: str, s: int, mk: str, plan: Any, store: str, tiles: tuple[int, ...],
                   name: str | None, out_store: str | None, batch_size: int, dev: Any, source: str,
                   panels: int, split: str, panel_dir: str | None) -> None:  # fmt: skip
    from srcaco2.srdata.schema import StoreFormatError, open_root, read_attrs
    from srcaco2.trainers.predict import predict_to_store

    try:
        src = open_root(store, mode="r")
        attrs = read_attrs(src, where=store)
    except StoreFormatError as exc:  # what is wrong with STORE and how to fix it
        raise click.ClickException(str(exc)) from None
    todo = list(tiles) or list(attrs.tiles)
    missing = [t for t in todo if t not in attrs.tiles]
    if missing:
        raise click.ClickException(f"{store}: no tile(s) {missing}; tiles are {attrs.tiles}")
    if mk not in attrs.markers:
        raise click.ClickException(f"{store}: no marker {mk!r}; markers are {attrs.markers}")
    if s not in attrs.scales:
        raise click.ClickException(f"{store}: no x{s} acquisition; scales are {attrs.scales}")
    from srcaco2.srdata.storefs import StoreNotWritableError, ensure_writable

    try:  # refuse an unwritable target before predicting
        ensure_writable(out_store or store, fix="predict into a writable store with --out-store PATH")
    except StoreNotWritableError as exc:
        raise click.ClickException(str(exc)) from None
    pname = name or f"{meth}_x{s}_{mk}"
    from srcaco2.srdata.integrity import CheckedReader, ChunkError
    from srcaco2.srdata.lease import LeaseLostError, store_lease
    from srcaco2.srdata.schema import image_path

    checked = CheckedReader(store)
    lr_arrays = {t: src[image_path(t, s)] for t in todo}
    try:  # a deleted LR chunk would be predicted from zeros: refuse before writing anything
        for arr in lr_arrays.values():
            checked.check_box(arr, [(0, int(n)) for n in arr.shape])
        with store_lease(out_store or store, operation="srtrain predict"):  # one writer per store
            for t in todo:
                with _bar(f"tile {t}") as bar:
                    try:
                        path = predict_to_store(
                            model, store, t, s, [mk], name=pname, method=meth, out_store=out_store,
                            tiling=plan, batch_size=batch_size, device=dev, progress=_progress(bar),
                            metadata={"source": source},
                        )  # fmt: skip
                    except ValueError as exc:  # a damaged chunk, or a network refusing the tile size
                        arr = lr_arrays[t]
                        err = checked.explain(arr, [(0, int(n)) for n in arr.shape], exc)
                        msg = str(err) if isinstance(err, ChunkError) else f"tile {t}: {exc}"
                        raise click.ClickException(msg) from None
                click.echo(f"{out_store or store}/{path}")
    except (StoreFormatError, LeaseLostError) as exc:  # missing chunk, another writer, lost lease
        raise click.ClickException(str(exc)) from None
    if panels > 0:
        from srcaco2.trainers.report import write_window_panels

        try:
            pngs = write_window_panels(model, store, panel_dir or f"panels_{pname}", split=split, scale=s,
                                       marker=mk, n=panels, device=dev,
                                       tiles=list(tiles) or None)  # fmt: skip
        except ValueError as exc:
            raise click.ClickException(str(exc)) from None
        for p in pngs:
            click.echo(str(p))
