"""Distributed data parallel set-up from the ``torchrun`` environment (NCCL on GPUs, gloo on CPU)."""

from __future__ import annotations

import dataclasses
import logging
import os
from typing import Any

__all__ = ["DistInfo", "init_distributed", "all_mean", "barrier", "cleanup"]

log = logging.getLogger(__name__)


@dataclasses.dataclass(frozen=True)
class DistInfo:
    """Where this process stands: rank, world size, device; ``is_main`` for rank 0."""

    rank: int
    world_size: int
    local_rank: int
    device: Any
    initialized_here: bool

    @property
    def is_main(self) -> bool:
        return self.rank == 0

    @property
    def distributed(self) -> bool:
        return self.world_size > 1


def resolve_device(device: str | None = None) -> Any:
    """``torch.device`` for ``None``/``"auto"`` (CUDA when available), ``"cpu"``, ``"cuda"`` or ``"cuda:N"``.

    Raises
    ------
    ValueError
        Another name, or CUDA asked for where there is none (the message names the option to change).
    """
    import torch

    name = "auto" if device is None else str(device).strip().lower()
    if name == "auto":
        return torch.device("cuda" if torch.cuda.is_available() else "cpu")
    kind, _, index = name.partition(":")
    if kind not in ("cpu", "cuda") or (index and not (kind == "cuda" and index.isdigit())):
        raise ValueError(f"device={device!r} is not one of cpu, cuda, cuda:N (or leave --device out: auto)")
    if kind == "cuda":
        if not torch.cuda.is_available():
            raise ValueError(
                f"device={device!r} asked for, but this torch sees no CUDA GPU "
                f"(torch {torch.__version__}, CUDA build: {torch.version.cuda or 'no'}); use --device cpu"
            )
        if index and int(index) >= torch.cuda.device_count():
            raise ValueError(
                f"device={device!r}: only {torch.cuda.device_count()} CUDA device(s) visible; use cuda:0.."
                f"{torch.cuda.device_count() - 1}"
            )
    return torch.device(name)


def init_distributed(device: str | None = None) -> DistInfo:
    """Read RANK / WORLD_SIZE / LOCAL_RANK (set by ``torchrun``) and join the process group.

    Without those variables (or WORLD_SIZE=1) this is a single process. The backend is NCCL when
    CUDA is available, gloo otherwise. `device` forces a device (``"cpu"``, ``"cuda"``).
    """
    import torch
    import torch.distributed as dist

    world = int(os.environ.get("WORLD_SIZE", "1"))
    rank = int(os.environ.get("RANK", "0"))
    local = int(os.environ.get("LOCAL_RANK", "0"))
    wanted = resolve_device(device)
    use_cuda = wanted.type == "cuda"
    if use_cuda:
        index = (
            local
            if world > 1
            else (wanted.index if wanted.index is not None else torch.cuda.current_device())
        )
        dev = torch.device("cuda", index)
        torch.cuda.set_device(dev)
    else:
        dev = torch.device("cpu")
    here = False
    if world > 1 and not dist.is_initialized():
        dist.init_process_group(backend="nccl" if use_cuda else "gloo", rank=rank, world_size=world)
        here = True
        log.info("joined process group: rank %d of %d on %s", rank, world, dev)
    return DistInfo(rank, world, local, dev, here)


def all_mean(value: Any, info: DistInfo) -> Any:
    """Mean of a tensor over ranks (the tensor itself on one process)."""
    if not info.distributed:
        return value
    import torch.distributed as dist

    out = value.detach().clone()
    dist.all_reduce(out, op=dist.ReduceOp.SUM)
    return out / info.world_size


def barrier(info: DistInfo) -> None:
    """Wait for every rank (no-op on one process)."""
    if info.distributed:
        import torch.distributed as dist

        dist.barrier()


def cleanup(info: DistInfo) -> None:
    """Leave the process group if this module joined it."""
    if info.initialized_here:
        import torch.distributed as dist

        dist.destroy_process_group()
