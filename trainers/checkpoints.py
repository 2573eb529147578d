"""Checkpoints: one weights-only file format for this toolkit, and loading of the original's weights.

Our format (``torch.save`` of a plain dict, loadable with ``torch.load(weights_only=True)``)::

    {"format": "srcaco2-checkpoint", "version": 1,
     "model": state_dict, "config": dict, "meta": dict, "training_state": dict | None}

``meta`` holds ``method``, ``scale``, ``marker``, ``in_channels``, ``overrides``, ``step``, ``epoch``
(plus anything else the trainer records). Files are written atomically (temp file in the same
directory, flush + fsync, ``os.replace``), so a crash or a full disk never leaves a half-written
checkpoint under the final name.

`load_pretrained` also reads the original benchmark's published weights
(docs/protocol.md#pretrained-evaluation, #weights-archive): a run directory holding ``config_model.yml`` and
``best-models/G-model.pth`` (a plain state_dict), or the ``G-model.pth`` file itself (the reading rules live
in `srcaco2.trainers._pretrained`). Nothing is ever unpickled beyond tensors and plain containers.
"""

from __future__ import annotations

import logging
import os
import pickle
import re
from collections.abc import Mapping
from pathlib import Path
from typing import Any

from srcaco2.trainers._errors import CheckpointError

__all__ = [
    "CHECKPOINT_FORMAT",
    "CHECKPOINT_VERSION",
    "CheckpointError",
    "save_checkpoint",
    "load_checkpoint",
    "load_pretrained",
    "read_weights",
    "previous_path",
    "nonfinite_keys",
    "load_resume_checkpoint",
    "load_init_weights",
]

log = logging.getLogger(__name__)

CHECKPOINT_FORMAT = "srcaco2-checkpoint"
CHECKPOINT_VERSION = 1
_META_DEFAULTS: dict[str, Any] = {"marker": None, "in_channels": 1, "overrides": {}, "step": 0, "epoch": 0}


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
    keep_previous: bool = False,
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
    keep_previous : bool
        Keep the file being replaced as `previous_path` (``last.pt`` -> ``last.prev.pt``), a
        fallback for a newest file damaged after the write (`load_resume_checkpoint`). The old
        file is hard-linked there before the new one takes its name (renamed where links are not
        supported), so `path` exists at every moment once it has been written.

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
    from srcaco2.srdata.atomic import atomic_writer

    keep = (lambda: _keep_as_previous(path) if path.exists() else None) if keep_previous else None
    with atomic_writer(path, "wb", before_replace=keep) as fh:
        torch.save(payload, fh)
    return path


def previous_path(path: str | os.PathLike) -> Path:
    """Where `save_checkpoint(keep_previous=True)` keeps the replaced file: last.pt -> last.prev.pt."""
    path = Path(path)
    return path.with_name(f"{path.stem}.prev{path.suffix}")


def _keep_as_previous(path: Path) -> None:
    prev = previous_path(path)
    staging = prev.with_name(f".{prev.name}.link")
    staging.unlink(missing_ok=True)
    try:
        os.link(path, staging)
        os.replace(staging, prev)
    except OSError:  # no hard links here: a rename (path is briefly absent; resume then uses prev)
        staging.unlink(missing_ok=True)
        os.replace(path, prev)


def nonfinite_keys(state: Mapping[str, Any]) -> list[str]:
    """Names of the floating-point tensors of `state` that hold a NaN or an infinity.

    Parameters
    ----------
    state : mapping str -> tensor
        A ``state_dict`` (any device; one host read for the whole mapping, a second one only
        when something is non-finite, to name the keys).

    Returns
    -------
    list of str
        Empty when every floating-point tensor is finite.
    """
    import torch

    keys = [k for k, v in state.items() if isinstance(v, torch.Tensor) and v.is_floating_point()]
    if not keys:
        return []
    dev = state[keys[0]].device
    flags = torch.stack([torch.isfinite(state[k]).all().to(dev) for k in keys])
    if bool(flags.all()):
        return []
    return [k for k, ok in zip(keys, flags.tolist(), strict=True) if not ok]


# ------------------------------------------------------------------------------------------ loading
def _torch_load(path: Path, map_location: Any) -> Any:
    """``torch.load(weights_only=True)`` with errors turned into one clear `CheckpointError`."""
    import torch

    if not path.exists():
        raise FileNotFoundError(f"checkpoint {path} does not exist")
    if path.is_dir():
        raise CheckpointError(f"{path} is a directory, not a checkpoint file")
    with path.open("rb") as fh:
        head = fh.read(4)
    if not (head.startswith(b"PK") or head[:1] == b"\x80"):  # torch.save: a zip, or (legacy) a pickle
        raise CheckpointError(
            f"{path} is not a checkpoint: not a PyTorch file (it starts with {head!r}, neither a zip "
            "archive nor a pickle); an empty, overwritten or foreign file"
        )
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
            "srcaco2.trainers.checkpoints.load_pretrained(path, method=..., scale=...)"
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
        state_dict; the yml is looked for beside it and one level up); a ``.safetensors`` file or a
        bioimage.io package (``.zip``) written by ``srtrain export`` (`srcaco2.trainers.export`).
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
        (``"srcaco2"``, ``"original"``, ``"safetensors"`` or ``"bioimageio"``; the last two add
        ``facts``), ``overrides``, and ``meta`` / ``config`` for ours,
        ``missing_keys`` / ``unexpected_keys`` when not strict.

    Raises
    ------
    FileNotFoundError
        No such file / no weights in the directory.
    CheckpointError (a ValueError)
        Unreadable, truncated or not weights-only file; non-finite weights; method / scale / marker
        unknown or in conflict with the file; keys or shapes that do not fit the network (one message listing
        missing, unexpected and reshaped keys, and which registered network they do fit).
    """
    from srcaco2.trainers._pretrained import explain_mismatch
    from srcaco2.trainers.models import build_model

    state, info = read_weights(path, method=method, scale=scale, marker=marker, map_location=map_location)
    bad = nonfinite_keys(state)
    if bad:  # NaN weights would become all-zero (or all-255) pixels downstream
        raise CheckpointError(
            f"{info['source']} holds non-finite weights ({len(bad)} tensor(s), e.g. {', '.join(bad[:3])}); "
            "use another checkpoint (best.pt, last.prev.pt) or retrain"
        )
    method, scale, marker = info["method"], info["scale"], info["marker"]
    overrides, yml_overrides = info.pop("overrides"), info.pop("yml_overrides")
    in_channels, weights_path = info.pop("in_channels"), Path(info["source"])
    attempts = [{**overrides, **yml_overrides}, overrides] if yml_overrides else [overrides]
    model, problem = None, None
    for attempt in attempts:
        candidate = build_model(method, scale, in_channels=in_channels, **attempt)
        problem = explain_mismatch(candidate.state_dict(), state, method, scale, weights_path, strict=strict)
        if problem is None:
            model, overrides = candidate, attempt
            break
        if len(attempts) > 1 and attempt is attempts[0]:
            log.warning(
                "%s: hyperparameters %s read from the yml do not fit the weights; trying the "
                "benchmark defaults",
                weights_path,
                yml_overrides,
            )
    if model is None:
        raise CheckpointError(problem)
    result = model.load_state_dict(state, strict=strict)
    if not strict:
        info.update(missing_keys=list(result.missing_keys), unexpected_keys=list(result.unexpected_keys))
    model.eval()
    info.update(overrides=overrides)
    return model, info


def read_weights(
    path: str | os.PathLike,
    *,
    method: str | None = None,
    scale: int | None = None,
    marker: str | None = None,
    map_location: Any = "cpu",
) -> tuple[dict[str, Any], dict[str, Any]]:
    """The state_dict of a checkpoint (ours or the original's) and what the file says about it.

    Parameters are those of `load_pretrained`; nothing is built.

    Returns
    -------
    state : dict str -> tensor
        The network's weights (an original's ``module.`` prefix removed).
    info : dict
        ``source`` (the weights file), ``format`` (``"srcaco2"`` / ``"original"``), ``method``,
        ``scale``, ``marker``, ``in_channels``, ``overrides`` (ours: the run's architecture
        overrides), ``yml_overrides`` (original: hyperparameters of its yml that differ from the
        benchmark's), and ``meta`` / ``config`` (ours) or ``original``.

    Raises
    ------
    FileNotFoundError, CheckpointError
        As `load_pretrained` (except the fit to a network, which this does not check).
    """
    from srcaco2.trainers._pretrained import (
        infer_original,
        method_from,
        resolve_weights_path,
        unwrap_state_dict,
    )
    from srcaco2.trainers.models.registry import MODEL_NAMES

    weights_path, run_dir = resolve_weights_path(Path(path))
    if method is not None:
        method = method_from(method) or str(method).lower()
    if marker is not None:  # SR-CACO-2's markers in any case (original run names: cell2); others as given
        marker = str(marker).upper() if re.fullmatch(r"cell[0-2]", str(marker), re.I) else str(marker)
    from srcaco2.trainers.export.readback import read_exported

    exported = read_exported(weights_path, map_location)  # `srtrain export`'s .safetensors / .zip
    obj = _torch_load(weights_path, map_location) if exported is None else exported[0]
    info: dict[str, Any] = {"source": str(weights_path)}
    overrides: dict[str, Any] = {}
    yml_overrides: dict[str, Any] = {}
    in_channels = 1
    if exported is not None and exported[1] is not None:
        state, facts, kind = exported
        src = f"its {kind} facts"
        method = _agree("method", method, facts.get("method"), src, weights_path)
        scale = _agree("scale", scale, facts.get("scale"), src, weights_path)
        marker = _agree("marker", marker, facts.get("marker"), src, weights_path)
        overrides = dict(facts.get("overrides") or {})
        in_channels = int(facts.get("in_channels") or 1)
        info.update(format=kind, facts=facts, intensity=facts.get("intensity"))
    elif isinstance(obj, dict) and obj.get("format") == CHECKPOINT_FORMAT:
        ckpt = _validated(obj, weights_path)
        meta = ckpt["meta"]
        src = "its meta"
        method = _agree("method", method, meta.get("method"), src, weights_path)
        scale = _agree("scale", scale, meta.get("scale"), src, weights_path)
        marker = _agree("marker", marker, meta.get("marker"), src, weights_path)
        overrides = dict(meta.get("overrides") or {})
        in_channels = int(meta.get("in_channels") or 1)
        state = ckpt["model"]
        info.update(format="srcaco2", meta=meta, config=ckpt["config"], intensity=meta.get("intensity"))
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
    if marker is not None and info["format"] == "original" and not re.fullmatch(r"CELL[0-2]", str(marker)):
        raise CheckpointError(f"marker must be CELL0, CELL1 or CELL2, got {marker!r} for {weights_path}")
    info.update(
        method=method, scale=scale, marker=marker, in_channels=in_channels, overrides=overrides,
        yml_overrides=yml_overrides,
    )  # fmt: skip
    return state, info


# ------------------------------------------------------------------------------ resume / fine-tune
def load_resume_checkpoint(
    run_dir: str | os.PathLike, *, map_location: Any = "cpu"
) -> tuple[dict[str, Any], Path, list[str]]:
    """The checkpoint a resumed run continues from: ``last.pt``, else its kept predecessor.

    ``last.pt`` is used when it reads back, holds a training state and only finite weights;
    otherwise ``last.prev.pt`` (kept by `save_checkpoint(keep_previous=True)`) under the same rules.

    Parameters
    ----------
    run_dir : path
        A run directory of ``srtrain fit``.
    map_location : str or torch.device

    Returns
    -------
    checkpoint : dict
        As `load_checkpoint`.
    path : Path
        The file used.
    problems : list of str
        Why each file tried before it was refused (empty when ``last.pt`` was used).

    Raises
    ------
    CheckpointError
        Neither file is usable (the message lists why for each).
    """
    run = Path(run_dir)
    problems: list[str] = []
    for name in ("last.pt", previous_path("last.pt").name):
        path = run / name
        if not path.exists():
            problems.append(f"{name} does not exist")
            continue
        try:
            ckpt = load_checkpoint(path, map_location=map_location)
        except (CheckpointError, FileNotFoundError) as exc:
            problems.append(str(exc))
            continue
        if not isinstance(ckpt.get("training_state"), Mapping):
            problems.append(f"{path} holds no training state (weights only); it cannot be resumed")
            continue
        bad = nonfinite_keys(ckpt["model"])
        if bad:
            problems.append(
                f"{path} holds non-finite weights ({len(bad)} tensor(s), e.g. {', '.join(bad[:3])})"
            )
            continue
        return ckpt, path, problems
    raise CheckpointError(
        f"cannot resume {run}: " + "; ".join(problems) + ". Start a new run there with --force (or "
        "choose another --out); best.pt, if present, still holds the best weights"
    )


def load_init_weights(model: Any, path: str | os.PathLike, *, method: str, scale: int) -> dict[str, Any]:
    """Load the weights of `path` into `model` strictly (fine-tuning's starting point).

    Parameters
    ----------
    model : torch.nn.Module
        The freshly built network (its keys and shapes are the reference).
    path : path-like
        A checkpoint of ours (``best.pt``/``last.pt``) or its run directory, an original run
        directory, or a bare ``G-model.pth`` (read by `load_pretrained`).
    method, scale : the network `model` is; the file must hold the same (marker may differ).

    Returns
    -------
    dict
        `load_pretrained`'s info (``source``, ``format``, ``method``, ``scale``, ``marker``,
        ``overrides``).

    Raises
    ------
    FileNotFoundError
        No such file, or a directory without weights.
    CheckpointError
        Unreadable file, another method or scale, or keys / shapes that do not fit `model` (the
        message names the path and the overrides the weights were made with).
    """
    from srcaco2.trainers._pretrained import explain_mismatch

    state, info = read_weights(path, method=method, scale=scale)
    problem = explain_mismatch(model.state_dict(), state, method, scale, Path(info["source"]), strict=True)
    if problem is not None:
        made_with = {**info["overrides"], **info["yml_overrides"]}
        hint = ""
        if made_with:
            sets = " ".join(f"--set model.overrides.{k}={v}" for k, v in made_with.items())
            hint = f"; the file's network was built with {made_with} ({sets})"
        raise CheckpointError(f"init weights {path}: {problem}{hint}")
    bad = nonfinite_keys(state)
    if bad:
        raise CheckpointError(
            f"init weights {path} hold non-finite values ({len(bad)} tensor(s), e.g. {', '.join(bad[:3])})"
        )
    model.load_state_dict(state, strict=True)
    return info
