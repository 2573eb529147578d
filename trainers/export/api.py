"""`export_model`: the one library call behind ``srtrain export``.

Reads any weights ``--init-from`` takes (`srcaco2.trainers.checkpoints.load_pretrained`: a run of
ours, its ``best.pt``, an original run directory, a bare ``G-model.pth``, or an earlier export) and
writes either a bioimage.io package (``.zip``, `srcaco2.trainers.export.bioimageio_package`) or a
safetensors file (`srcaco2.trainers.export.safetensors_io`). The format follows the suffix unless
given. Everything is checked before anything is written, and the file appears under its final name
only when complete.
"""

from __future__ import annotations

import os
from collections.abc import Sequence
from pathlib import Path
from typing import Any

__all__ = ["FORMATS", "export_model", "format_for"]

FORMATS = {".zip": "bioimageio", ".safetensors": "safetensors"}
"""Output suffix -> format."""


def format_for(output: str | os.PathLike, fmt: str | None) -> str:
    """The export format of `output` (`fmt` when given, else from the suffix).

    Raises
    ------
    ValueError
        Unknown `fmt`, a suffix that names no format, or a `fmt` that contradicts the suffix.
    """
    suffix = Path(output).suffix.lower()
    known = sorted(set(FORMATS.values()))
    if fmt is not None and fmt not in known:
        raise ValueError(f"unknown format {fmt!r}; formats are {', '.join(known)}")
    by_suffix = FORMATS.get(suffix)
    if fmt is None and by_suffix is None:
        raise ValueError(
            f"cannot tell the format of {output} from its suffix {suffix or '(none)'!r}: name it *.zip "
            "(bioimage.io package) or *.safetensors"
        )
    if fmt is not None and by_suffix is not None and fmt != by_suffix:
        raise ValueError(f"--format {fmt} but {output} ends in {suffix} ({by_suffix}); make them agree")
    return fmt or str(by_suffix)


def export_model(
    checkpoint: str | os.PathLike,
    output: str | os.PathLike,
    *,
    fmt: str | None = None,
    overwrite: bool = False,
    name: str | None = None,
    description: str | None = None,
    authors: Sequence[str] = (),
    license_id: str = "MIT",
    tags: Sequence[str] = (),
    halo: int | None = None,
    check: bool = True,
) -> dict[str, Any]:
    """Export the weights at `checkpoint` to `output`.

    Parameters
    ----------
    checkpoint : path-like
        Anything `load_pretrained` reads.
    output : path-like
        ``*.zip`` (bioimage.io package) or ``*.safetensors``; its folder must exist.
    fmt : {"bioimageio", "safetensors"}, optional
        Overrides the suffix rule (they must agree when both name a format).
    overwrite : bool
        Replace an existing `output`.
    name, description, authors, license_id, tags, halo, check
        Package metadata, tiling halo (LR px) and self-test (bioimageio only; see `write_bioimageio_package`).

    Returns
    -------
    dict
        ``output``, ``format``, ``method``, ``scale``, ``marker`` and the writer's details.

    Raises
    ------
    FileNotFoundError, FileExistsError, ValueError (incl. CheckpointError), ImportError
        A missing checkpoint or output folder, an existing output without `overwrite`, an unknown
        format, unreadable / foreign weights, bioimageio not installed.
    """
    from srcaco2.trainers.checkpoints import load_pretrained
    from srcaco2.trainers.export.facts import facts_to_metadata, run_facts

    out = Path(output)
    kind = format_for(out, fmt)
    if out.is_dir():
        raise FileExistsError(f"{out} is a directory; give a file name ending in .zip or .safetensors")
    if out.exists() and not overwrite:
        raise FileExistsError(f"{out} exists; pass --overwrite to replace it")
    if not out.parent.is_dir():
        raise FileNotFoundError(f"the folder of {out} does not exist; create it first")
    if kind == "bioimageio":  # fail before loading weights when the extra is missing
        try:
            import bioimageio.core  # noqa: F401
            import bioimageio.spec  # noqa: F401
        except ImportError as exc:
            raise ImportError(
                f"bioimage.io export needs bioimageio.core ({exc.name} is missing): "
                "pip install 'srcaco2[bioimageio]'"
            ) from None
    model, info = load_pretrained(checkpoint)
    facts = run_facts(info)
    result: dict[str, Any] = {"format": kind, "method": facts["method"], "scale": facts["scale"],
                              "marker": facts.get("marker")}  # fmt: skip
    if kind == "safetensors":
        from srcaco2.trainers.export.safetensors_io import save_safetensors

        save_safetensors(model.state_dict(), facts_to_metadata(facts), out)
        result["output"] = str(out)
        return result
    from srcaco2.trainers.export.bioimageio_package import write_bioimageio_package

    result.update(write_bioimageio_package(model, facts, out, name=name, description=description,
                                           authors=authors, license_id=license_id, tags=tags,
                                           halo=halo, check=check))  # fmt: skip
    return result
