"""Where a build's work runs: a local Dask scheduler (threads, processes, sync) or a cluster's.

`dask_scheduler` runs a block under the chosen scheduler (``processes`` is a local
``dask.distributed`` cluster, `srcaco2.srdata.cluster.local_cluster`); `registration_pool` says
where the TV-L1 window tasks go for it.
"""

from __future__ import annotations

import contextlib
import os
from collections.abc import Iterator
from typing import Any

from srcaco2.srdata.registration import DEFAULT_IMPLEMENTATION

__all__ = ["LOCAL_SCHEDULERS", "check_scheduler", "dask_scheduler", "registration_pool"]

LOCAL_SCHEDULERS = ("threads", "processes", "sync", "synchronous")


def check_scheduler(scheduler: str) -> None:
    """Refuse a scheduler that is neither a local one nor an address (``tcp://host:8786``).

    Raises
    ------
    ValueError
        Naming the accepted values.
    """
    if scheduler not in LOCAL_SCHEDULERS and ":" not in scheduler:
        raise ValueError(
            f"--scheduler {scheduler!r}: give threads, processes, sync, or the address of a "
            "dask.distributed scheduler (tcp://host:8786)"
        )


@contextlib.contextmanager
def dask_scheduler(scheduler: str = "threads", workers: int | None = None) -> Iterator[None]:
    """Run the body with a local Dask scheduler (threads, processes, sync) or a distributed one.

    Parameters
    ----------
    scheduler : str
        ``threads``, ``processes``, ``sync``, or the address of a ``dask.distributed`` scheduler
        (``tcp://host:8786``), used through a `dask.distributed.Client` for the duration.
    workers : int, optional
        Threads of the ``threads`` scheduler; worker processes (one thread each) of the
        ``processes`` one, a `srcaco2.srdata.cluster.local_cluster`.
    """
    import dask

    if scheduler == "processes":
        # A dask.distributed LocalCluster, not dask's local multiprocessing scheduler: that one routes
        # every intermediate result (pyramid levels, masks) through this process; on a LocalCluster
        # the pixels stay in the worker processes and only metadata comes back, as on a cluster.
        from srcaco2.srdata.cluster import local_cluster

        with local_cluster(int(workers or os.cpu_count() or 1)):
            yield
        return
    if scheduler in ("threads", "sync", "synchronous"):
        cfg: dict[str, Any] = {"scheduler": "synchronous" if scheduler.startswith("sync") else scheduler}
        if workers and scheduler == "threads":
            cfg["num_workers"] = int(workers)
        with dask.config.set(cfg):
            yield
        return
    check_scheduler(scheduler)
    from dask.distributed import Client

    with Client(scheduler):
        yield


def registration_pool(scheduler: str, implementation: str = DEFAULT_IMPLEMENTATION) -> str:
    """Where TV-L1 runs: local threads (numba releases the GIL) or processes (skimage holds it),
    in this process (``sync``), or on the ``dask.distributed`` cluster (``processes``: the local
    one `dask_scheduler` starts; an address: that cluster)."""
    if scheduler == "threads":
        return "threads" if implementation == "numba" else "processes"
    if scheduler in ("sync", "synchronous"):
        return "serial"
    return "dask"
