"""Reading the original benchmark's published weights (docs/protocol.md#pretrained-evaluation,
#weights-archive), for `srcaco2.trainers.checkpoints`.

An original run directory holds ``config_model.yml`` and ``best-models/G-model.pth`` (a plain
state_dict) under names like
``.../{NET}/caco2_train_X_{s}_in_{lr}_out_512_cell_{CELLk}/id_...-x_{s}-netG_{NET}-sd_0-...``.
This module finds the weights file, unwraps the state_dict, reads method / scale / marker (and
hyperparameters that differ from the benchmark's) from the yml and the directory names, and
explains in one message why a state_dict does not fit a network.
`srcaco2.trainers.checkpoints.load_pretrained`
is the public entry point.
"""

from __future__ import annotations

import logging
import re
from collections.abc import Mapping
from pathlib import Path
from typing import Any

from srcaco2.trainers._errors import CheckpointError

__all__ = [
    "resolve_weights_path",
    "unwrap_state_dict",
    "method_from",
    "infer_original",
    "explain_mismatch",
]

log = logging.getLogger(__name__)

# The original's net_type names (docs/protocol.md#method-registry, run-directory ``netG_{NET}``) -> registry
# names.
_NET_TYPES = {
    n.lower(): n.lower()
    for n in (
        "SRCNN",
        "VDSR",
        "MemNet",
        "DRRN",
        "swinir",
        "DFCAN",
        "OmniSR",
        "GRL",
        "ENLCN",
        "ACT",
        "NLSN",
        "EDSR_LIIF",
        "SRFBN",
        "DBPN",
        "MSLapSRN",
        "ProSR",
    )
}
_NET_TYPES.update({"mslapsr": "mslapsrn", "edsr-liif": "edsr_liif", "omni_sr": "omnisr"})
_METHOD_KEYS = ("net_type", "netg", "net_g", "netG", "method", "arch")
_SCALE_KEYS = ("scale", "upscale", "sr_scale", "upscale_factor")
_YML_NAMES = ("config_model.yml", "config_final.yml", "config.yml")
_WEIGHT_NAMES = ("best-models/G-model.pth", "G-model.pth", "best.pt", "last.pt")


def resolve_weights_path(path: Path) -> tuple[Path, Path | None]:
    """(weights file, run directory or None) for a file or a run directory.

    A file is returned as it is: a checkpoint of ours, an original ``G-model.pth``, or what
    ``srtrain export`` wrote (``.safetensors``, a bioimage.io ``.zip``; read by
    `srcaco2.trainers.export.readback`); its content decides how it is read, not its suffix.
    """
    if not path.exists():
        raise FileNotFoundError(f"checkpoint {path} does not exist")
    if not path.is_dir():
        return path, None
    for name in _WEIGHT_NAMES:
        if (path / name).is_file():
            return path / name, path
    raise FileNotFoundError(
        f"{path} is a directory without weights: expected one of {list(_WEIGHT_NAMES)} (an original run "
        "directory holds config_model.yml and best-models/G-model.pth)"
    )


def unwrap_state_dict(obj: Any, path: Path) -> dict[str, Any]:
    """The plain state_dict inside `obj` (also under a single ``state_dict``/``params``/... key)."""
    import torch

    if isinstance(obj, dict) and obj and all(isinstance(v, torch.Tensor) for v in obj.values()):
        keys = list(obj)
        if all(isinstance(k, str) and k.startswith("module.") for k in keys):  # saved from DataParallel
            return {k[len("module.") :]: v for k, v in obj.items()}
        return dict(obj)
    if isinstance(obj, dict):
        for key in ("state_dict", "params_ema", "params", "model", "G"):
            if isinstance(obj.get(key), dict):
                return unwrap_state_dict(obj[key], path)
        raise CheckpointError(
            f"{path} holds a dict with keys {list(obj)[:8]}, not a state_dict (name -> tensor)"
        )
    raise CheckpointError(f"{path} holds a {type(obj).__name__}, not a state_dict (name -> tensor)")


def _yaml_load(path: Path) -> Any:
    """yaml.safe_load that reads python-tagged nodes (tuples, objects) as plain data, never as code."""
    import yaml

    class _Loader(yaml.SafeLoader):
        pass

    def _plain_node(loader: yaml.SafeLoader, suffix: str, node: yaml.Node) -> Any:
        if isinstance(node, yaml.MappingNode):
            return loader.construct_mapping(node, deep=True)
        if isinstance(node, yaml.SequenceNode):
            return loader.construct_sequence(node, deep=True)
        return loader.construct_scalar(node)

    _Loader.add_multi_constructor("tag:yaml.org,2002:python/", _plain_node)
    _Loader.add_multi_constructor("!", _plain_node)
    with open(path, encoding="utf-8") as fh:
        return yaml.load(fh, Loader=_Loader)  # noqa: S506 - a SafeLoader subclass


def _walk(obj: Any):
    """Yield (key, value) pairs of nested dicts/lists (key None for list items)."""
    if isinstance(obj, dict):
        for k, v in obj.items():
            yield k, v
            yield from _walk(v)
    elif isinstance(obj, (list, tuple)):
        for v in obj:
            yield None, v
            yield from _walk(v)


def method_from(value: Any) -> str | None:
    """Registry name for an original ``net_type`` string (case-insensitive), None if unknown."""
    return _NET_TYPES.get(value.lower()) if isinstance(value, str) else None


def _from_yml(cfg: Any) -> dict[str, Any]:
    out: dict[str, Any] = {}
    method_keys = {k.lower() for k in _METHOD_KEYS}
    for k, v in _walk(cfg):
        key = str(k).lower() if k is not None else ""
        if "method" not in out and key in method_keys:
            m = method_from(v) or (method_from(v.get("net_type")) if isinstance(v, dict) else None)
            if m:
                out["method"] = m
        if "scale" not in out and key in _SCALE_KEYS and isinstance(v, int) and not isinstance(v, bool):
            out["scale"] = v
        if "marker" not in out and isinstance(v, str):
            hit = re.search(r"cell_(CELL[0-2])", v)
            if hit:
                out["marker"] = hit.group(1)
    return out


def _from_names(path: Path) -> dict[str, Any]:
    """Method / scale / marker from the archive's directory names.

    ``.../{NET}/caco2_train_X_{s}_in_{lr}_out_512_cell_{CELLk}/id_...-x_{s}-netG_{NET}-sd_0-...``
    """
    out: dict[str, Any] = {}
    for part in reversed(path.parts[-5:]):
        hit = re.search(r"netG_([A-Za-z0-9_]+?)-", part + "-")
        if hit and "method" not in out and method_from(hit.group(1)):
            out["method"] = method_from(hit.group(1))
        hit = re.search(r"(?:-x_|_X_)(\d+)(?:-|_|$)", part)
        if hit and "scale" not in out:
            out["scale"] = int(hit.group(1))
        hit = re.search(r"cell_(CELL[0-2])", part)
        if hit and "marker" not in out:
            out["marker"] = hit.group(1)
    return out


def infer_original(weights: Path, run_dir: Path | None) -> dict[str, Any]:
    """What an original weights file holds, from its yml (preferred) and its directory names."""
    from srcaco2.trainers.models.registry import reference_layout

    dirs = [run_dir] if run_dir is not None else [weights.parent, weights.parent.parent]
    yml = next((d / n for n in _YML_NAMES for d in dirs if (d / n).is_file()), None)
    found: dict[str, Any] = {}
    cfg = None
    if yml is not None:
        try:
            cfg = _yaml_load(yml)
        except Exception as exc:  # a broken yml must not hide what the directory name tells
            log.warning("cannot read %s (%s); using the directory names only", yml, exc)
        if cfg is not None:
            found.update({k: v for k, v in _from_yml(cfg).items()})
            found["source"] = str(yml)
    names = _from_names(weights.resolve())
    for k, v in names.items():
        if k not in found:
            found[k] = v
        elif found[k] != v:
            log.warning(
                "%s: %s=%r from the yml but %r from the directory name; using the yml",
                weights,
                k,
                found[k],
                v,
            )
    if "source" not in found and names:
        found["source"] = "the directory names"
    if cfg is not None and found.get("method") and found.get("scale"):
        ref = reference_layout(found["method"], int(found["scale"])) or {}
        hp = {k: v for k, v in (ref.get("hyperparameters") or {}).items() if k not in ("in_chans", "upscale")}
        flat = {str(k): v for k, v in _walk(cfg) if k is not None}
        found["overrides"] = {k: flat[k] for k in hp if k in flat and flat[k] != hp[k]}
    return found


def explain_mismatch(
    expected: Mapping[str, Any],
    state: Mapping[str, Any],
    method: str,
    scale: int,
    path: Path,
    *,
    strict: bool,
) -> str | None:
    """None when `state` fits `expected`; else ONE message (missing, unexpected, shapes, a hint)."""
    missing = [k for k in expected if k not in state]
    unexpected = [k for k in state if k not in expected]
    reshaped = [
        (k, tuple(state[k].shape), tuple(v.shape))
        for k, v in expected.items()
        if k in state and tuple(state[k].shape) != tuple(v.shape)
    ]
    if not reshaped and (not strict or not (missing or unexpected)):
        return None
    parts = [f"{path} does not fit {method} x{scale}:"]
    if missing:
        parts.append(f"{len(missing)} missing key(s) (e.g. {', '.join(missing[:4])})")
    if unexpected:
        parts.append(f"{len(unexpected)} unexpected key(s) (e.g. {', '.join(unexpected[:4])})")
    if reshaped:
        shown = "; ".join(f"{k}: file {list(a)} vs model {list(b)}" for k, a, b in reshaped[:4])
        parts.append(f"{len(reshaped)} shape difference(s) ({shown})")
    guesses = _guess_layouts(state)
    if guesses and (method, scale) not in guesses:
        named = ", ".join(f"{m} x{sc}" for m, sc in guesses)
        parts.append(f"this looks like a checkpoint of {named}")
    return parts[0] + " " + "; ".join(parts[1:])


def _guess_layouts(state: Mapping[str, Any]) -> list[tuple[str, int]]:
    """Every registered (method, scale) whose reference layout has exactly these keys and shapes."""
    from srcaco2.trainers.models.registry import MODEL_NAMES, reference_layout

    shapes = {k: list(getattr(v, "shape", ())) for k, v in state.items()}
    hits = []
    for name in MODEL_NAMES:
        for s in (2, 4, 8):
            ref = reference_layout(name, s)
            if (
                ref
                and len(ref["state_dict"]) == len(shapes)
                and all(shapes.get(row[0]) == list(row[1]) for row in ref["state_dict"])
            ):
                hits.append((name, s))
    return hits
