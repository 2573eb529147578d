"""A ``dask.distributed`` cluster on this machine whose workers die with the process that made it.

`srcaco2.srdata.schedulers.dask_scheduler` uses it for ``--scheduler processes``: unlike Dask's local
multiprocessing scheduler (which routes every intermediate result through the calling process), a
``LocalCluster`` keeps the pixels in its worker processes and sends only results back, as a real
cluster does.
"""

from __future__ import annotations

import contextlib
import logging
from collections.abc import Iterator
from typing import Any

from distributed import Client, LocalCluster, WorkerPlugin

from srcaco2.srdata._lifeline import anchor_args, child_init

__all__ = ["LifelinePlugin", "local_cluster"]


class LifelinePlugin(WorkerPlugin):
    """Arms `srcaco2.srdata._lifeline` in each worker: it exits when the anchor process dies.

    Distributed's own parent watch is the first means; this is the second (and covers a worker
    blocked in a C call: the lifeline thread calls ``os._exit``).

    Parameters
    ----------
    anchor : tuple
        `srcaco2.srdata._lifeline.anchor_args` of the process that started the cluster.
    """

    def __init__(self, anchor: tuple[int, int | None, bool]) -> None:
        # workers are started from the cluster's event-loop thread, not the anchor's main thread
        self.anchor = (anchor[0], anchor[1], False)

    def setup(self, worker: Any) -> None:
        child_init(*self.anchor)


@contextlib.contextmanager
def local_cluster(workers: int) -> Iterator[Client]:
    """Start a ``LocalCluster`` of `workers` single-threaded worker processes and a client of it
    (the default client for the body); both are closed on exit.

    Parameters
    ----------
    workers : int
        Worker processes (one thread each); memory limit per worker: the machine's share.

    Yields
    ------
    distributed.Client
    """
    # distributed logs every start and stop at INFO through its own handler: keep that for callers
    # who asked for INFO (``-v``), otherwise only its warnings, for the life of this cluster
    dlog = logging.getLogger("distributed")
    before = dlog.level
    verbose = logging.getLogger().getEffectiveLevel() <= logging.INFO
    dlog.setLevel(logging.INFO if verbose else logging.WARNING)
    try:
        with LocalCluster(
            n_workers=max(1, int(workers)), threads_per_worker=1, processes=True, dashboard_address=None,
            memory_limit="auto", silence_logs=dlog.level,
        ) as cluster, Client(cluster) as client:  # fmt: skip
            client.register_plugin(LifelinePlugin(anchor_args()), name="srcaco2-lifeline")
            yield client
    finally:
        dlog.setLevel(before)
