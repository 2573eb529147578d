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
    use_cuda = torch.cuda.is_available() if device is None else str(device).startswith("cuda")
    if use_cuda:
        dev = torch.device("cuda", local if world > 1 else torch.cuda.current_device())
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
