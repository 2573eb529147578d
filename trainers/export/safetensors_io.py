"""safetensors files: a network's weights plus the run's facts in the header, written atomically.

safetensors (https://huggingface.co/docs/safetensors) stores tensors with a JSON header and no
pickled code, so a file read from anywhere can never run code; it is what community SR trainers
(traiNNer-redux, chaiNNer, spandrel) exchange. Our file holds the network's state_dict (float32,
contiguous) and, in the header's ``__metadata__`` (str -> str), the facts of
`srcaco2.trainers.export.facts` (method, scale, marker, overrides, training provenance), so
`srcaco2.trainers.checkpoints.load_pretrained`, ``srtrain predict --checkpoint`` and ``srtrain fit
--init-from`` rebuild the network from the file alone. Training checkpoints stay ``.pt`` (they also
hold the optimiser, RNG and loader position).
"""

from __future__ import annotations

import os
from collections.abc import Mapping
from pathlib import Path
from typing import Any

__all__ = ["save_safetensors", "load_safetensors", "looks_like_safetensors"]


def looks_like_safetensors(path: Path) -> bool:
    """True when `path` starts like a safetensors file (8-byte little-endian header size, then ``{``)."""
    try:
        with path.open("rb") as fh:
            head = fh.read(9)
    except OSError:
        return False
    if len(head) < 9 or head[8:9] != b"{":
        return False
    return 2 <= int.from_bytes(head[:8], "little") <= min(100_000_000, path.stat().st_size - 8)


def save_safetensors(state: Mapping[str, Any], metadata: Mapping[str, str], path: str | os.PathLike) -> Path:
    """Write `state` and `metadata` to `path` atomically (a crash leaves no partial file there).

    Parameters
    ----------
    state : mapping str -> tensor
        The network's state_dict (copied to CPU, contiguous; shared storage is cloned, as
        safetensors requires one owner per buffer).
    metadata : mapping str -> str
        The header's ``__metadata__``.
    path : path-like
        The file; its folder must exist.

    Returns
    -------
    Path
    """
    from safetensors.torch import save

    from srcaco2.srdata.atomic import write_bytes_atomic

    tensors = {k: v.detach().cpu().contiguous().clone() for k, v in state.items()}
    return write_bytes_atomic(path, save(tensors, metadata=dict(metadata)))


def load_safetensors(path: str | os.PathLike) -> tuple[dict[str, Any], dict[str, str]]:
    """``(state_dict on CPU, header metadata)`` of a safetensors file.

    Raises
    ------
    ValueError
        The file is truncated or not a safetensors file (the library's message, one line).
    """
    from safetensors import safe_open

    try:
        with safe_open(str(path), framework="pt") as fh:
            metadata = dict(fh.metadata() or {})
            state = {k: fh.get_tensor(k) for k in fh.keys()}  # noqa: SIM118 - safe_open has no __iter__
    except Exception as exc:  # SafetensorError, OSError, ...: truncated header or payload
        raise ValueError(
            f"{path} could not be read as safetensors ({type(exc).__name__}: {str(exc)[:120]}); it is "
            "truncated or corrupt (e.g. an interrupted copy) or not a safetensors file"
        ) from None
    return state, metadata
