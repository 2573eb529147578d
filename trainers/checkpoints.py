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
the ``G-model.pth`` file itself (the reading rules live in `trainers._pretrained`). Nothing is ever
unpickled beyond tensors and plain containers.
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
    from trainers._pretrained import (
        explain_mismatch,
        infer_original,
        method_from,
        resolve_weights_path,
        unwrap_state_dict,
    )
    from trainers.models import build_model
    from trainers.models.registry import MODEL_NAMES

    weights_path, run_dir = resolve_weights_path(Path(path))
    if method is not None:
        method = method_from(method) or str(method).lower()
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
        state = unwrap_state_dict(obj, weights_path)
        found = infer_original(weights_path, run_dir)
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
        problem = explain_mismatch(candidate.state_dict(), state, method, scale, weights_path, strict=strict)
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
