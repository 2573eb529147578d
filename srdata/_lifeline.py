"""Child processes die with the toolkit process that started them, however it dies.

Why: after ``kill -9`` of ``srtrain fit`` its DataLoader workers lived on for minutes (holding RAM and
the terminal's stdout pipe), and every killed ``srdata build`` left its registration pool running.
A child cannot rely on the parent to clean up (``kill -9`` runs no handler), so each child watches
its parent itself, by two independent means:

1. ``prctl(PR_SET_PDEATHSIG, SIGKILL)`` (Linux): the kernel kills the child when the thread that
   created it exits. Because that is a *thread*, it is only armed when the child was started from
   the parent's main thread (`initializer` records that in the parent), or when the child's parent
   is a single-threaded server (multiprocessing's forkserver).
2. A daemon thread in the child polls every `POLL_S` seconds: if the child's parent process changed
   (``os.getppid()``: the child was re-parented because its parent died) or the *anchor* (the
   toolkit process, which may be the grandparent under forkserver) is gone, it calls ``os._exit``.
   ``os._exit`` from another thread ends the process even when its main thread is blocked writing
   to a full pipe. This works on every POSIX system and needs no signal.

Usage (the three kinds of children the toolkit starts)::

    ProcessPoolExecutor(n, mp_context=ctx, initializer=initializer())   # registration pool
    DataLoader(..., worker_init_fn=worker_init_fn())        # torch worker_init_fn(worker_id)
    client.register_plugin(LifelinePlugin(anchor_args()))    # LocalCluster workers (srdata.cluster)
"""

from __future__ import annotations

import functools
import logging
import os
import signal
import sys
import threading
from collections.abc import Callable
from typing import Any

__all__ = [
    "POLL_S", "anchor_args", "armed", "child_init", "initializer", "process_alive", "process_start_time",
    "worker_init_fn",
]  # fmt: skip

log = logging.getLogger(__name__)

POLL_S: float = 0.5
"""Seconds between two checks of the parent-watch thread (a child outlives its parent by at most this)."""

_PR_SET_PDEATHSIG = 1
_EXIT_CODE = 128 + signal.SIGKILL  # what a shell shows for a killed process
_armed = False  # once per process (torch calls worker_init_fn once, pools once per worker)


def process_start_time(pid: int) -> int | None:
    """Start time of `pid` in clock ticks since boot (Linux); None where unknown."""
    try:
        with open(f"/proc/{pid}/stat", "rb") as f:
            stat = f.read().decode(errors="replace")
        return int(stat[stat.rindex(")") + 2 :].split()[19])
    except (OSError, ValueError, IndexError):
        return None


def process_alive(pid: int, start: int | None = None) -> bool:
    """Whether `pid` runs on this host (and, where `start` is known, is the process started then)."""
    try:
        os.kill(pid, 0)
    except ProcessLookupError:
        return False
    except PermissionError:
        return True
    now = process_start_time(pid)
    return start is None or now is None or now == start  # a reused pid is another process


def anchor_args() -> tuple[int, int | None, bool]:
    """``(pid, start time, from main thread)`` of the calling process: the arguments of `child_init`.

    Call it in the parent, in the thread that starts the children.
    """
    pid = os.getpid()
    return pid, process_start_time(pid), threading.current_thread() is threading.main_thread()


def armed() -> bool:
    """Whether this process runs with a lifeline (`child_init` was called in it)."""
    return _armed


def _pdeathsig() -> bool:
    if not sys.platform.startswith("linux"):
        return False
    try:
        import ctypes

        libc = ctypes.CDLL(None, use_errno=True)
        return libc.prctl(_PR_SET_PDEATHSIG, int(signal.SIGKILL), 0, 0, 0) == 0
    except (OSError, AttributeError):
        return False


def _parent_is_single_threaded_server(ppid: int) -> bool:
    """True if our parent is multiprocessing's forkserver (one thread, started for us)."""
    try:
        with open(f"/proc/{ppid}/cmdline", "rb") as f:
            cmd = f.read()
        with open(f"/proc/{ppid}/status", "rb") as f:
            threads = [ln for ln in f.read().splitlines() if ln.startswith(b"Threads:")]
    except OSError:
        return False
    return b"forkserver" in cmd and threads == [b"Threads:\t1"]


def child_init(anchor_pid: int, anchor_start: int | None = None, from_main_thread: bool = False) -> None:
    """Arm this (child) process to exit when its parent or the anchor process dies.

    Parameters
    ----------
    anchor_pid : int
        The toolkit process that owns this child (see `anchor_args`).
    anchor_start : int, optional
        Its start time (``/proc/<pid>/stat``), to tell it from a later process with the same pid.
    from_main_thread : bool
        The anchor started this child from its main thread (so ``PR_SET_PDEATHSIG``, which follows
        the creating thread, may be armed without killing the child when a helper thread ends).
    """
    global _armed
    if _armed:
        return
    _armed = True
    ppid = os.getppid()
    direct = ppid == anchor_pid
    if (direct and from_main_thread) or (not direct and _parent_is_single_threaded_server(ppid)):
        _pdeathsig()
    if not process_alive(anchor_pid, anchor_start) or os.getppid() != ppid:
        os._exit(_EXIT_CODE)  # the parent died before we were armed

    def watch() -> None:
        stop = threading.Event()
        while not stop.wait(POLL_S):
            if os.getppid() != ppid or not process_alive(anchor_pid, anchor_start):
                os._exit(_EXIT_CODE)

    threading.Thread(target=watch, name="srcaco2-lifeline", daemon=True).start()


def _worker_init(
    anchor: tuple[int, int | None, bool], user: Callable[[int], Any] | None, worker_id: int
) -> None:
    child_init(*anchor)
    if user is not None:
        user(worker_id)


def worker_init_fn(user: Callable[[int], Any] | None = None) -> Callable[[int], None]:
    """A torch ``worker_init_fn`` arming the lifeline (then calling `user`, if given).

    Build it in the thread that iterates the DataLoader (that thread starts the workers).
    """
    return functools.partial(_worker_init, anchor_args(), user)


def _pool_init(anchor: tuple[int, int | None, bool], user: Callable[[], Any] | None) -> None:
    child_init(*anchor)
    if user is not None:
        user()


def initializer(user: Callable[[], Any] | None = None) -> Callable[[], None]:
    """A picklable process-pool ``initializer`` arming the lifeline (then calling `user`)."""
    return functools.partial(_pool_init, anchor_args(), user)
