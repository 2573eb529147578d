"""Reading back what `srtrain export` wrote: a safetensors file or a bioimage.io package (.zip).

Used by `srcaco2.trainers.checkpoints.read_weights` (hence ``load_pretrained``, ``srtrain predict
--checkpoint`` and ``srtrain fit --init-from``). Neither needs bioimageio.core: the package's rdf is
YAML, its ``config.srcaco2`` holds our facts, its ``pytorch_state_dict`` weights a plain state_dict
read with ``torch.load(weights_only=True)``. A package exported by another tool has no
``config.srcaco2``: it is refused in one line that says where it does run.
"""

from __future__ import annotations

import io
import zipfile
from pathlib import Path
from typing import Any

from srcaco2.trainers._errors import CheckpointError

__all__ = ["read_exported", "RDF_NAMES"]

RDF_NAMES = ("rdf.yaml", "bioimageio.yaml")
"""Names of a package's model description (spec 0.5 accepts ``*.bioimageio.yaml`` too)."""


def _rdf_name(names: list[str]) -> str | None:
    for n in names:
        if n in RDF_NAMES or n.endswith(".bioimageio.yaml"):
            return n
    return None


def _read_package(path: Path, map_location: Any) -> tuple[dict[str, Any], dict[str, Any] | None, str]:
    import torch
    import yaml

    try:
        with zipfile.ZipFile(path) as zf:
            rdf_name = _rdf_name(zf.namelist())
            if rdf_name is None:
                raise CheckpointError(f"{path} is a zip archive without rdf.yaml: not a bioimage.io package")
            rdf = yaml.safe_load(zf.read(rdf_name))
            facts = ((rdf.get("config") or {}).get("srcaco2") or None) if isinstance(rdf, dict) else None
            if not isinstance(facts, dict):
                name = rdf.get("name", "?") if isinstance(rdf, dict) else "?"
                raise CheckpointError(
                    f"{path} is a bioimage.io package ({name!r}) that srcaco2 did not export (its rdf has "
                    "no config.srcaco2): this toolkit rebuilds only its own networks; run the package "
                    "with bioimageio.core, deepImageJ or napari instead"
                )
            weights = (rdf.get("weights") or {}).get("pytorch_state_dict") or {}
            source = str(weights.get("source", ""))
            if source not in zf.namelist():
                raise CheckpointError(f"{path}: its rdf names weights {source!r} that the package lacks")
            state = torch.load(io.BytesIO(zf.read(source)), map_location=map_location, weights_only=True)
    except (zipfile.BadZipFile, OSError, yaml.YAMLError, EOFError, RuntimeError) as exc:
        raise CheckpointError(
            f"{path} could not be read as a bioimage.io package ({type(exc).__name__}: {str(exc)[:120]}); "
            "it is truncated or corrupt (e.g. an interrupted download): export or download it again"
        ) from None
    if not isinstance(state, dict):
        raise CheckpointError(f"{path}: its weights file holds a {type(state).__name__}, not a state_dict")
    return state, facts, "bioimageio"


def read_exported(path: Path, map_location: Any) -> tuple[dict[str, Any], dict[str, Any] | None, str] | None:
    """``(state_dict, facts or None, kind)`` of an exported file, None for anything else (a .pt file).

    Parameters
    ----------
    path : Path
        A file (``kind`` ``"safetensors"`` or ``"bioimageio"``).
    map_location : str or torch.device

    Returns
    -------
    tuple or None
        ``facts`` is None for a safetensors file without our header (a state_dict of unknown origin:
        the caller needs method and scale from elsewhere).

    Raises
    ------
    CheckpointError
        A truncated / corrupt exported file, or a bioimage.io package that srcaco2 did not export.
    """
    from srcaco2.trainers.export.facts import facts_from_metadata
    from srcaco2.trainers.export.safetensors_io import load_safetensors, looks_like_safetensors

    suffix = path.suffix.lower()
    if suffix == ".safetensors" or looks_like_safetensors(path):
        try:
            state, metadata = load_safetensors(path)
        except ValueError as exc:
            raise CheckpointError(str(exc)) from None
        return state, facts_from_metadata(metadata), "safetensors"
    if zipfile.is_zipfile(path):
        with zipfile.ZipFile(path) as zf:
            is_package = _rdf_name(zf.namelist()) is not None
        if is_package:
            return _read_package(path, map_location)
    elif suffix == ".zip":
        raise CheckpointError(
            f"{path} is not a readable zip archive: a truncated or corrupt bioimage.io package (e.g. an "
            "interrupted download); export or download it again"
        )
    return None
