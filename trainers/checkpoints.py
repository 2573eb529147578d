"""Checkpoints: one weights-only file format for this toolkit, and loading of the original's weights.

Our format (``torch.save`` of a plain dict, loadable with ``torch.load(weights_only=True)``)::

    {"format": "srcaco2-checkpoint", "version": 1,
     "model": state_dict, "config": dict, "meta": dict, "training_state": dict | None}

``meta`` holds ``method``, ``scale``, ``marker``, ``in_channels``, ``overrides``, ``step``, ``epoch``
(plus anything else the trainer records). Files are written atomically (temp file in the same
directory, flush + fsync, ``os.replace``), so a crash or a full disk never leaves a half-written
checkpoint under the final name.

`load_pretrained` also reads the original benchmark's published weights (SPEC §4.7, §7.1): a run
directory holding ``config_model.yml`` and ``best-models/G-model.pth`` (a plain state_dict), or
the ``G-model.pth`` file itself. Nothing is ever unpickled beyond tensors and plain containers.
"""

from __future__ import annotations

import logging
import os
import pickle
import re
import tempfile
from collections.abc import Mapping
from pathlib import Path
from typing import Any

__all__ = [
    "CHECKPOINT_FORMAT",
    "CHECKPOINT_VERSION",
    "CheckpointError",
    "save_checkpoint",
    "load_checkpoint",
    "load_pretrained",
]

log = logging.getLogger(__name__)

CHECKPOINT_FORMAT = "srcaco2-checkpoint"
CHECKPOINT_VERSION = 1
_META_DEFAULTS: dict[str, Any] = {"marker": None, "in_channels": 1, "overrides": {}, "step": 0, "epoch": 0}


class CheckpointError(ValueError):
    """A file is not a usable checkpoint (wrong format, truncated, not weights-only, mismatch)."""


# ------------------------------------------------------------------------------------------- saving
def _plain(obj: Any, where: str) -> Any:
    """Copy `obj` keeping only what ``torch.load(weights_only=True)`` reads; refuse anything else."""
    import torch

    if obj is None or isinstance(obj, (bool, int, float, str)):
        return obj
    if isinstance(obj, torch.Tensor):
        return obj.detach().cpu()
    if isinstance(obj, Mapping):
        out = {}
        for k, v in obj.items():
            if not isinstance(k, (str, int)):
                raise TypeError(
                    f"{where}: key {k!r} is a {type(k).__name__}; checkpoint keys must be str or int"
                )
            out[k] = _plain(v, f"{where}[{k!r}]")
        return out
    if isinstance(obj, list):
        return [_plain(v, f"{where}[{i}]") for i, v in enumerate(obj)]
    if isinstance(obj, tuple):
        return tuple(_plain(v, f"{where}[{i}]") for i, v in enumerate(obj))
    raise TypeError(
        f"{where} is a {type(obj).__module__}.{type(obj).__qualname__}; a checkpoint holds only tensors, "
        "dicts, lists, tuples, str, int, float, bool and None (so it loads with weights_only=True): "
        "convert it first (e.g. str(path), float(x), array.tolist(), dataclasses.asdict(cfg))"
    )


def save_checkpoint(
    path: str | os.PathLike,
    *,
    model_state: Mapping[str, Any],
    config: Mapping[str, Any],
    meta: Mapping[str, Any],
    training_state: Mapping[str, Any] | None = None,
) -> Path:
    """Write a checkpoint atomically in this toolkit's format.

    Parameters
    ----------
    path : path-like
        Destination file (its directory must exist).
    model_state : mapping str -> tensor
        The network's ``state_dict()`` (tensors are stored detached, on CPU).
    config : mapping
        The run configuration as plain data.
    meta : mapping
        Must hold ``method`` and ``scale``; ``marker`` (None), ``in_channels`` (1),
        ``overrides`` ({}), ``step`` (0) and ``epoch`` (0) are filled in when absent.
    training_state : mapping, optional
        Optimizer / scheduler / RNG / loader state for resuming.

    Returns
    -------
    Path
        `path`.

    Raises
    ------
    TypeError
        Something that ``torch.load(weights_only=True)`` could not read back (names where it is).
    ValueError
        `meta` lacks ``method`` or ``scale``.
    OSError
        The file could not be written; any previous file at `path` is left intact and the
        temporary file is removed.
    """
    import torch

    path = Path(path)
    missing = [k for k in ("method", "scale") if k not in meta]
    if missing:
        raise ValueError(f"save_checkpoint({path}): meta lacks {missing}; give at least method and scale")
    full_meta = {**_META_DEFAULTS, **dict(meta)}
    payload = {
        "format": CHECKPOINT_FORMAT,
        "version": CHECKPOINT_VERSION,
        "model": _plain(dict(model_state), "model_state"),
        "config": _plain(dict(config), "config"),
        "meta": _plain(full_meta, "meta"),
        "training_state": None if training_state is None else _plain(dict(training_state), "training_state"),
    }
    fd, tmp_name = tempfile.mkstemp(prefix=f".{path.name}.", suffix=".tmp", dir=path.parent)
    tmp = Path(tmp_name)
    try:
        with os.fdopen(fd, "wb") as fh:
            torch.save(payload, fh)
            fh.flush()
            os.fsync(fh.fileno())
        os.replace(tmp, path)
    except BaseException:
        tmp.unlink(missing_ok=True)
        raise
    try:  # make the rename durable (best effort; not every filesystem allows opening a directory)
        dir_fd = os.open(path.parent, os.O_RDONLY)
        try:
            os.fsync(dir_fd)
        finally:
            os.close(dir_fd)
    except OSError:
        pass
    return path


# ------------------------------------------------------------------------------------------ loading
def _torch_load(path: Path, map_location: Any) -> Any:
    """``torch.load(weights_only=True)`` with errors turned into one clear `CheckpointError`."""
    import torch

    if not path.exists():
        raise FileNotFoundError(f"checkpoint {path} does not exist")
    if path.is_dir():
        raise CheckpointError(f"{path} is a directory, not a checkpoint file")
    try:
        return torch.load(path, map_location=map_location, weights_only=True)
    except pickle.UnpicklingError as exc:
        msg = str(exc)
        if "weights only" in msg.lower() or "weights_only" in msg.lower():
            detail = next((ln.strip() for ln in msg.splitlines() if "unsupported global" in ln.lower()), "")
            raise CheckpointError(
                f"{path} is not a weights-only file: it holds Python objects beyond tensors and plain "
                "containers, which are never unpickled here (that could run code). Re-save only its "
                "state_dict (torch.save(model.state_dict(), path)) where it was made. " + detail
            ) from None
        raise CheckpointError(
            f"{path} is not a PyTorch checkpoint (unpickling failed: {msg[:160]})"
        ) from None
    except Exception as exc:  # truncated zip, text file, wrong magic number, ...
        raise CheckpointError(
            f"{path} could not be read as a PyTorch checkpoint ({type(exc).__name__}: {str(exc)[:120]}); "
            "it is truncated, corrupt (e.g. an interrupted copy or download) or not a checkpoint at all"
        ) from None


def load_checkpoint(path: str | os.PathLike, *, map_location: Any = "cpu") -> dict[str, Any]:
    """Read a checkpoint written by `save_checkpoint`.

    Parameters
    ----------
    path : path-like
        The file.
    map_location : str or torch.device
        Where tensors go (default CPU).

    Returns
    -------
    dict
        ``format``, ``version``, ``model``, ``config``, ``meta``, ``training_state``.

    Raises
    ------
    FileNotFoundError
        No such file.
    CheckpointError
        Truncated / corrupt file, not weights-only, a plain state_dict (use `load_pretrained`), or
        an unknown format version.
    """
    path = Path(path)
    return _validated(_torch_load(path, map_location), path)


def _validated(obj: Any, path: Path) -> dict[str, Any]:
    if not isinstance(obj, dict) or obj.get("format") != CHECKPOINT_FORMAT:
        kind = type(obj).__name__
        if isinstance(obj, dict):
            kind = "a plain state_dict (e.g. an original G-model.pth)"
        raise CheckpointError(
            f"{path} is not a {CHECKPOINT_FORMAT} file but {kind}; load original weights with "
            "trainers.checkpoints.load_pretrained(path, method=..., scale=...)"
        )
    version = obj.get("version")
    if not isinstance(version, int) or version > CHECKPOINT_VERSION or version < 1:
        raise CheckpointError(
            f"{path}: checkpoint format version {version!r} is not supported (this toolkit reads "
            f"1..{CHECKPOINT_VERSION}); update the toolkit"
        )
    missing = [k for k in ("model", "config", "meta") if k not in obj]
    if missing:
        raise CheckpointError(f"{path}: checkpoint lacks {missing}; the file is damaged")
    obj.setdefault("training_state", None)
    return obj


def _agree(name: str, given: Any, found: Any, source: str, path: Path) -> Any:
    if given is None:
        return found
    if found is not None and str(given).lower() != str(found).lower():
        raise CheckpointError(
            f"{path} holds {name}={found!r} (from {source}) but {name}={given!r} was requested; "
            f"pass --{name} {found} or a checkpoint trained for {name}={given}"
        )
    return given


def load_pretrained(
    path: str | os.PathLike,
    *,
    method: str | None = None,
    scale: int | None = None,
    marker: str | None = None,
    map_location: Any = "cpu",
    strict: bool = True,
) -> tuple[Any, dict[str, Any]]:
    """Build the right network and load weights into it: ours or the original benchmark's.

    Parameters
    ----------
    path : path-like
        One of: a checkpoint of ours (``best.pt``/``last.pt``); an original run directory
        (``config_model.yml`` + ``best-models/G-model.pth``); an original ``G-model.pth`` (plain
        state_dict; the yml is looked for beside it and one level up).
    method, scale, marker : optional
        What the caller expects / knows. Needed when the file does not say (a bare state_dict
        without yml or telling directory name); when the file does say, they must agree.
    map_location : str or torch.device
        Where the loaded tensors go before being copied into the model (built on CPU).
    strict : bool
        ``load_state_dict(strict=...)``; with False, missing / unexpected keys are reported in the
        returned info instead of raising (shape differences always raise).

    Returns
    -------
    model : torch.nn.Module
        In ``eval()`` mode, on CPU.
    info : dict
        ``method``, ``scale``, ``marker``, ``source`` (the weights file), ``format``
        (``"srcaco2"`` or ``"original"``), ``overrides``, and ``meta`` / ``config`` for ours,
        ``missing_keys`` / ``unexpected_keys`` when not strict.

    Raises
    ------
    FileNotFoundError
        No such file / no weights in the directory.
    CheckpointError (a ValueError)
        Unreadable, truncated or not weights-only file; method / scale / marker unknown or in
        conflict with the file; keys or shapes that do not fit the network (one message listing
        missing, unexpected and reshaped keys, and which registered network they do fit).
    """
    from trainers.models import build_model
    from trainers.models.registry import MODEL_NAMES

    weights_path, run_dir = _resolve_weights_path(Path(path))
    if method is not None:
        method = _method_from(method) or str(method).lower()
    if marker is not None:
        marker = str(marker).upper()
    obj = _torch_load(weights_path, map_location)
    info: dict[str, Any] = {"source": str(weights_path)}
    overrides: dict[str, Any] = {}
    in_channels = 1
    if isinstance(obj, dict) and obj.get("format") == CHECKPOINT_FORMAT:
        ckpt = _validated(obj, weights_path)
        meta = ckpt["meta"]
        src = "its meta"
        method = _agree("method", method, meta.get("method"), src, weights_path)
        scale = _agree("scale", scale, meta.get("scale"), src, weights_path)
        marker = _agree("marker", marker, meta.get("marker"), src, weights_path)
        overrides = dict(meta.get("overrides") or {})
        in_channels = int(meta.get("in_channels") or 1)
        state = ckpt["model"]
        info.update(format="srcaco2", meta=meta, config=ckpt["config"])
        yml_overrides: dict[str, Any] = {}
    else:
        state = _unwrap_state_dict(obj, weights_path)
        found = _infer_original(weights_path, run_dir)
        src = found.get("source") or "its directory name"
        method = _agree("method", method, found.get("method"), src, weights_path)
        scale = _agree("scale", scale, found.get("scale"), src, weights_path)
        marker = _agree("marker", marker, found.get("marker"), src, weights_path)
        yml_overrides = dict(found.get("overrides") or {})
        info.update(format="original", original=found)
    if method is None or scale is None:
        raise CheckpointError(
            f"cannot tell which network {weights_path} holds (method={method!r}, scale={scale!r}): no "
            "config_model.yml beside it or one level up and no run-directory name to read; pass "
            f"method= and scale= (methods: {', '.join(n for n in MODEL_NAMES if n != 'bicubic')})"
        )
    method = str(method).lower()
    scale = int(scale)
    if marker is not None and not re.fullmatch(r"CELL[0-2]", str(marker)):
        raise CheckpointError(f"marker must be CELL0, CELL1 or CELL2, got {marker!r} for {weights_path}")

    attempts = [{**overrides, **yml_overrides}, overrides] if yml_overrides else [overrides]
    model, problem = None, None
    for attempt in attempts:
        candidate = build_model(method, scale, in_channels=in_channels, **attempt)
        problem = _explain_mismatch(candidate.state_dict(), state, method, scale, weights_path, strict=strict)
        if problem is None:
            model, overrides = candidate, attempt
            break
        if len(attempts) > 1 and attempt is attempts[0]:
            log.warning("%s: hyperparameters %s read from the yml do not fit the weights; trying the "
                        "benchmark defaults", weights_path, yml_overrides)
    if model is None:
        raise CheckpointError(problem)
    result = model.load_state_dict(state, strict=strict)
    if not strict:
        info.update(missing_keys=list(result.missing_keys), unexpected_keys=list(result.unexpected_keys))
    model.eval()
    info.update(method=method, scale=scale, marker=marker, overrides=overrides)
    return model, info


# ------------------------------------------------------------------ the original's published weights
# The original's net_type names (SPEC §6.1, run-directory ``netG_{NET}``) -> registry names.
_NET_TYPES = {n.lower(): n.lower() for n in (
    "SRCNN", "VDSR", "MemNet", "DRRN", "swinir", "DFCAN", "OmniSR", "GRL", "ENLCN", "ACT", "NLSN",
    "EDSR_LIIF", "SRFBN", "DBPN", "MSLapSRN", "ProSR")}
_NET_TYPES.update({"mslapsr": "mslapsrn", "edsr-liif": "edsr_liif", "omni_sr": "omnisr"})
_METHOD_KEYS = ("net_type", "netg", "net_g", "netG", "method", "arch")
_SCALE_KEYS = ("scale", "upscale", "sr_scale", "upscale_factor")
_YML_NAMES = ("config_model.yml", "config_final.yml", "config.yml")
_WEIGHT_NAMES = ("best-models/G-model.pth", "G-model.pth", "best.pt", "last.pt")


def _resolve_weights_path(path: Path) -> tuple[Path, Path | None]:
    """(weights file, run directory or None) for a file or a run directory."""
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


def _unwrap_state_dict(obj: Any, path: Path) -> dict[str, Any]:
    """The plain state_dict inside `obj` (also under a single ``state_dict``/``params``/... key)."""
    import torch

    if isinstance(obj, dict) and obj and all(isinstance(v, torch.Tensor) for v in obj.values()):
        keys = list(obj)
        if all(isinstance(k, str) and k.startswith("module.") for k in keys):  # saved from DataParallel
            return {k[len("module."):]: v for k, v in obj.items()}
        return dict(obj)
    if isinstance(obj, dict):
        for key in ("state_dict", "params_ema", "params", "model", "G"):
            if isinstance(obj.get(key), dict):
                return _unwrap_state_dict(obj[key], path)
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


def _method_from(value: Any) -> str | None:
    return _NET_TYPES.get(value.lower()) if isinstance(value, str) else None


def _from_yml(cfg: Any) -> dict[str, Any]:
    out: dict[str, Any] = {}
    method_keys = {k.lower() for k in _METHOD_KEYS}
    for k, v in _walk(cfg):
        key = str(k).lower() if k is not None else ""
        if "method" not in out and key in method_keys:
            m = _method_from(v) or (_method_from(v.get("net_type")) if isinstance(v, dict) else None)
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
        if hit and "method" not in out and _method_from(hit.group(1)):
            out["method"] = _method_from(hit.group(1))
        hit = re.search(r"(?:-x_|_X_)(\d+)(?:-|_|$)", part)
        if hit and "scale" not in out:
            out["scale"] = int(hit.group(1))
        hit = re.search(r"cell_(CELL[0-2])", part)
        if hit and "marker" not in out:
            out["marker"] = hit.group(1)
    return out


def _infer_original(weights: Path, run_dir: Path | None) -> dict[str, Any]:
    """What an original weights file holds, from its yml (preferred) and its directory names."""
    from trainers.models.registry import reference_layout

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
            log.warning("%s: %s=%r from the yml but %r from the directory name; using the yml", weights, k,
                        found[k], v)
    if "source" not in found and names:
        found["source"] = "the directory names"
    if cfg is not None and found.get("method") and found.get("scale"):
        ref = reference_layout(found["method"], int(found["scale"])) or {}
        hp = {k: v for k, v in (ref.get("hyperparameters") or {}).items() if k not in ("in_chans", "upscale")}
        flat = {str(k): v for k, v in _walk(cfg) if k is not None}
        found["overrides"] = {k: flat[k] for k in hp if k in flat and flat[k] != hp[k]}
    return found


def _explain_mismatch(
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
    reshaped = [(k, tuple(state[k].shape), tuple(v.shape)) for k, v in expected.items()
                if k in state and tuple(state[k].shape) != tuple(v.shape)]
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
    from trainers.models.registry import MODEL_NAMES, reference_layout

    shapes = {k: list(getattr(v, "shape", ())) for k, v in state.items()}
    hits = []
    for name in MODEL_NAMES:
        for s in (2, 4, 8):
            ref = reference_layout(name, s)
            if ref and len(ref["state_dict"]) == len(shapes) and all(
                shapes.get(row[0]) == list(row[1]) for row in ref["state_dict"]
            ):
                hits.append((name, s))
    return hits
