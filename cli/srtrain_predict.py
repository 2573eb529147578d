"""`srtrain predict`: whole-tile inference written into the store as OME-NGFF images."""

from __future__ import annotations

import sys

import click


@click.command("predict")
@click.option("--store", "store", required=True, help="Store holding the LR tiles (path or fsspec URL).")
@click.option("--checkpoint", type=click.Path(exists=True), help="Our checkpoint or an original run dir.")
@click.option("--method", help="Instead of a checkpoint: a weight-free method (bicubic).")
@click.option(
    "--scale", type=click.Choice(["2", "4", "8"]), help="Scale (taken from the checkpoint if omitted)."
)
@click.option("--marker", help="Marker (default: the checkpoint's marker, else CELL2).")
@click.option("--tile", "tiles", type=int, multiple=True, help="Tile id(s) to predict (default: all).")
@click.option("--name", help="Prediction name under predictions/ (default: <method>_x<scale>_<marker>).")
@click.option("--out-store", help="Write into this store instead of STORE (created if missing).")
@click.option(
    "--tile-size", default=128, show_default=True, type=click.IntRange(1), help="Core side, LR pixels."
)
@click.option(
    "--overlap",
    default=16,
    show_default=True,
    type=click.IntRange(0),
    help="Overlap between cores, LR pixels.",
)
@click.option(
    "--halo",
    default=16,
    show_default=True,
    type=click.IntRange(0),
    help="Discarded context per side, LR pixels.",
)
@click.option("--batch-size", default=4, show_default=True, type=click.IntRange(1))
@click.option("--device", default="auto", show_default=True, help="auto | cpu | cuda | cuda:N")
@click.option(
    "--panels",
    type=click.IntRange(0),
    default=0,
    show_default=True,
    help="Also draw PNG panels LR | bicubic | SR | HR | ROI for the first N windows of --split.",
)
@click.option("--split", default="test", show_default=True, help="Split of the panel windows.")
@click.option(
    "--panel-dir", type=click.Path(file_okay=False), help="Where panels go (default ./panels_<name>)."
)
def predict(
    store: str,
    checkpoint: str | None,
    method: str | None,
    scale: str | None,
    marker: str | None,
    tiles: tuple[int, ...],
    name: str | None,
    out_store: str | None,
    tile_size: int,
    overlap: int,
    halo: int,
    batch_size: int,
    device: str,
    panels: int,
    split: str,
    panel_dir: str | None,
) -> None:
    """Super-resolve whole LR tiles of STORE in overlapping tiles (no seams), into predictions/."""
    from srdata.schema import StoreFormatError, open_root, read_attrs

    if (checkpoint is None) == (method is None):
        raise click.UsageError("give exactly one of --checkpoint PATH or --method bicubic")
    if overlap >= tile_size:
        raise click.BadParameter(
            f"--overlap {overlap} must be smaller than --tile-size {tile_size} (cores must advance)",
            param_hint="--overlap",
        )
    try:
        src = open_root(store, mode="r")
        attrs = read_attrs(src, where=store)
    except StoreFormatError as exc:  # what is wrong with STORE and how to fix it
        raise click.ClickException(str(exc)) from None
    from srdata.storefs import StoreNotWritableError, ensure_writable

    try:  # refuse an unwritable target before loading a model and predicting
        ensure_writable(out_store or store, fix="predict into a writable store with --out-store PATH")
    except StoreNotWritableError as exc:
        raise click.ClickException(str(exc)) from None
    if checkpoint is not None:
        from trainers.checkpoints import load_pretrained

        try:
            model, info = load_pretrained(checkpoint, scale=int(scale) if scale else None, marker=marker)
        except (ValueError, FileNotFoundError, KeyError) as exc:
            raise click.ClickException(str(exc)) from None
        meth, s = info["method"], int(info["scale"])
        mk = marker or info.get("marker") or "CELL2"
    else:
        from trainers.evaluate import check_weight_free_method
        from trainers.models import build_model

        try:
            method = check_weight_free_method(method)  # a network without weights would predict noise
        except ValueError as exc:
            raise click.ClickException(str(exc)) from None
        if scale is None:
            raise click.UsageError("--method needs --scale")
        meth, s, mk = method, int(scale), marker or "CELL2"
        model = build_model(method, s).eval()
    from trainers._ddp import resolve_device

    try:
        dev = resolve_device(device)
    except ValueError as exc:
        raise click.BadParameter(str(exc), param_hint="--device") from None
    model = model.to(dev).eval()
    todo = list(tiles) or list(attrs.tiles)
    missing = [t for t in todo if t not in attrs.tiles]
    if missing:
        raise click.ClickException(f"{store}: no tile(s) {missing}; tiles are {attrs.tiles}")
    if mk not in attrs.markers:
        raise click.ClickException(f"{store}: no marker {mk!r}; markers are {attrs.markers}")
    if s not in attrs.scales:
        raise click.ClickException(f"{store}: no x{s} acquisition; scales are {attrs.scales}")
    pname = name or f"{meth}_x{s}_{mk}"
    from srdata.integrity import CheckedReader
    from srdata.lease import LeaseLostError, store_lease
    from srdata.schema import image_path

    checked = CheckedReader(store)
    lr_arrays = {t: src[image_path(t, s)] for t in todo}
    try:  # a deleted LR chunk would be predicted from zeros: refuse before writing anything
        for arr in lr_arrays.values():
            checked.check_box(arr, [(0, int(n)) for n in arr.shape])
        with store_lease(out_store or store, operation="srtrain predict"):  # one writer per store
            _predict_tiles(todo, lr_arrays, checked, model, store, s, mk, pname, out_store, tile_size,
                           overlap, halo, batch_size, dev, meth, checkpoint, method)  # fmt: skip
    except (StoreFormatError, LeaseLostError) as exc:  # missing chunk, another writer, lost lease
        raise click.ClickException(str(exc)) from None
    if panels > 0:
        from trainers.report import write_window_panels

        try:
            pngs = write_window_panels(model, store, panel_dir or f"panels_{pname}", split=split, scale=s,
                                       marker=mk, n=panels, device=dev)  # fmt: skip
        except ValueError as exc:
            raise click.ClickException(str(exc)) from None
        for p in pngs:
            click.echo(str(p))


def _predict_tiles(todo, lr_arrays, checked, model, store, s, mk, pname, out_store, tile_size, overlap,
                   halo, batch_size, dev, meth, checkpoint, method) -> None:  # fmt: skip
    """Predict each tile of `todo` into the target store; a damaged chunk stops with one line."""
    from tqdm import tqdm

    from srdata.integrity import ChunkError
    from trainers.predict import input_grid, predict_to_store

    for t in todo:
        with tqdm(total=1, desc=f"tile {t}", unit="row", file=sys.stderr) as bar:

            def progress(done: int, total: int, bar: tqdm = bar) -> None:
                bar.total = total
                bar.n = done
                bar.refresh()

            try:
                path = predict_to_store(
                    model, store, t, s, [mk], name=pname, out_store=out_store, tile=tile_size,
                    overlap=overlap, halo=halo, batch_size=batch_size, device=dev, progress=progress,
                    align=input_grid(meth),
                    metadata={"method": meth, "source": str(checkpoint or method)},
                )  # fmt: skip
            except ValueError as exc:  # a damaged chunk, or e.g. a network that refuses the tile size
                arr = lr_arrays[t]
                err = checked.explain(arr, [(0, int(n)) for n in arr.shape], exc)
                msg = str(err) if isinstance(err, ChunkError) else f"tile {t}: {exc}"
                raise click.ClickException(msg) from None
        click.echo(f"{out_store or store}/{path}")
