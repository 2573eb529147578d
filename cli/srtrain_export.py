"""`srtrain export`: a trained model as a bioimage.io package (Fiji, napari, ilastik) or safetensors."""

from __future__ import annotations

import json

import click

__all__ = ["export_cmd"]


@click.command("export")
@click.option(
    "--checkpoint", required=True, type=click.Path(exists=True),
    help="What --init-from takes: a run of ours (directory, best.pt), an original run directory, a bare "
    "G-model.pth, or an earlier export (.safetensors / .zip).",
)  # fmt: skip
@click.option(
    "--output", "output", required=True, type=click.Path(dir_okay=False),
    help="M.zip (bioimage.io model package) or M.safetensors; the format follows the suffix.",
)  # fmt: skip
@click.option(
    "--format", "fmt", type=click.Choice(["bioimageio", "safetensors"]),
    help="Format (default: from the --output suffix).",
)  # fmt: skip
@click.option("--overwrite", is_flag=True, help="Replace an existing --output.")
@click.option("--name", help="Package name (default: 'SR-CACO-2 <network> x<scale> <marker>').")
@click.option("--description", help="Package description (default: task, network, tiling rule).")
@click.option(
    "--author",
    "authors",
    multiple=True,
    help="Package author (repeat for several; default: srcaco2 contributors).",
)
@click.option(
    "--license", "license_id", default="MIT", show_default=True, help="SPDX licence of the weights."
)
@click.option("--tag", "tags", multiple=True, help="Extra package tag (repeatable).")
@click.option(
    "--halo", type=click.IntRange(0),
    help="Package tiling halo, LR px (default: the receptive halo; measured where it exceeds the smallest "
    "input, which takes minutes for MemNet/ProSR/SwinIR on a CPU).",
)  # fmt: skip
@click.option(
    "--no-test", is_flag=True, help="Skip bioimageio.core's test of the package (it runs the network on CPU)."
)
@click.option("--json", "as_json", is_flag=True, help="Print what was written as JSON.")
def export_cmd(checkpoint, output, fmt, overwrite, name, description, authors, license_id, tags, halo,
               no_test, as_json) -> None:  # fmt: skip
    """Export a trained model so that others can run it without this toolkit.

    A .zip is a bioimage.io model package (spec 0.5: architecture source needing torch only, state_dict
    and, where exact, TorchScript weights, raw-uint8 input with its [0, 1] scaling, test images from the
    real SR-CACO-2 sample, cover, README with the training facts and metrics); it is checked with
    bioimageio.core's own test before it appears. Fiji (deepImageJ), napari, ilastik and bioimage.io's
    tools run it; `srtrain predict --checkpoint M.zip` and `srtrain fit --init-from M.zip` read it back.
    A .safetensors file holds the weights and the run's facts (method, scale, marker, overrides) in its
    header. Needs `pip install 'srcaco2[bioimageio]'` for .zip.
    """
    from srcaco2.trainers.export.api import export_model

    try:
        out = export_model(checkpoint, output, fmt=fmt, overwrite=overwrite, name=name,
                           description=description, authors=authors, license_id=license_id, tags=tags,
                           halo=halo, check=not no_test)  # fmt: skip
    except (ValueError, FileExistsError, FileNotFoundError, ImportError) as exc:
        raise click.ClickException(str(exc).splitlines()[0] if str(exc) else type(exc).__name__) from None
    if as_json:
        click.echo(json.dumps(out, indent=2))
        return
    extra = ""
    if out["format"] == "bioimageio":
        halo = "whole image (global network)" if out.get("global") else f"halo {out['halo']} px"
        test = "bioimageio test passed" if out.get("test") == "passed" else "not tested (--no-test)"
        extra = f", weights {'+'.join(out['weights'])}, {halo}, {test}"
    click.echo(
        f"{out['output']}  ({out['format']}: {out['method']} x{out['scale']} {out['marker'] or ''}{extra})"
    )
