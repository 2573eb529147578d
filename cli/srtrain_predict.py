"""`srtrain predict`: whole-image inference, into a store's predictions/ or from/to image files."""

from __future__ import annotations

import sys
from typing import Any

import click

from srcaco2.cli._commands import TILE_ID

__all__ = ["predict"]


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
            from srcaco2.trainers.tiling import halo_table

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
@click.option("--scale", type=click.IntRange(2, 8), help="Scale (taken from the checkpoint if omitted).")
@click.option("--marker", help="Store: marker (default: the checkpoint's marker, else CELL2).")
@click.option("--tile", "tiles", type=TILE_ID, multiple=True, help="Store: tile id(s) (default: all).")
@click.option("--name", help="Store: prediction name (default: <method>_x<scale>_<marker>).")
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
    "--overlap", type=click.IntRange(0), help="Overlap of cores, LR px. Default min(16, tile // 4)."
)
@click.option("--halo", type=click.IntRange(0), help="Context per side, LR px. Default: the network's reach.")
@click.option(
    "--whole-image", is_flag=True, help="One forward over the whole image (exact for every network)."
)
@click.option("--batch-size", default=4, show_default=True, type=click.IntRange(1))
@click.option("--device", default="auto", show_default=True, help="auto | cpu | cuda | cuda:N")
@click.option(
    "--panels", type=click.IntRange(0), default=0, show_default=True,
    help="Store: also draw PNG panels LR | bicubic | SR | HR | ROI for the first N windows of --split.",
)  # fmt: skip
@click.option("--split", default="test", show_default=True, help="Split of the panel windows.")
@click.option("--panel-dir", type=click.Path(file_okay=False), help="Panels go here (./panels_<name>).")
def predict(**options: Any) -> None:
    """Super-resolve whole images in overlapping tiles, exact and without seams.

    Either the LR tiles of a store (--store; written into its predictions/ group as OME-NGFF images)
    or an image file (--input TIFF or OME-Zarr; written to --output as OME-Zarr or TIFF). The
    output is streamed row band by row band, so it never has to fit in memory.
    """
    from srcaco2.trainers.predict_run import PredictError, PredictRequest, PredictUsageError, run_predict

    bars: list[Any] = []
    try:
        request = PredictRequest(**options)
        lines = run_predict(
            request, progress=lambda label: _bar(label, bars), notify=lambda m: click.echo(m, err=True)
        )
    except PredictUsageError as exc:
        if exc.param is None:
            raise click.UsageError(str(exc)) from None
        raise click.BadParameter(str(exc), param_hint=exc.param) from None
    except PredictError as exc:
        raise click.ClickException(str(exc)) from None
    finally:
        for bar in bars:  # an interrupted bar ends its line before the error is printed
            bar.close()
    for line in lines:
        click.echo(line)


def _bar(label: str, bars: list[Any]) -> Any:
    """A progress bar on stderr for one image (kept in `bars`); returns its ``(done, total)`` callback."""
    from tqdm import tqdm

    bar = tqdm(total=1, desc=label, unit="tile row", file=sys.stderr)
    bars.append(bar)

    def update(done: int, total: int) -> None:
        bar.total, bar.n = total, done
        bar.refresh()

    return update
