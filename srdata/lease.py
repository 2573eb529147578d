"""One writer per store: a lease file beside the store, held while a build/import/predict writes.

Why: two builds on one store delete each other's half-written tiles (``create_group(...,
overwrite=True)``) and one of them may then mark a damaged tile finished. So every writer takes
the store's lease first, and a second writer is refused with one line naming the holder.

The lease is a small JSON record at ``<store>.lease`` (a sibling of the store, so that
``--overwrite`` can delete the store without deleting the lease, and the store itself holds nothing
but the contract)::

    {"token": "9f1c...", "host": "node7", "pid": 4242, "pid_start": 123456, "operation": "srdata build",
     "store": "out.zarr", "started": 1764400000.0, "heartbeat": 1764400042.5}

- **Acquire**: an exclusive create (on a local path a hard link of the fully written record, or
  ``O_CREAT | O_EXCL``; fsspec mode ``"xb"`` on a URL; where a filesystem has no exclusive create,
  write), then on a URL a read back after a pause: the lease is ours only if the record read is.
- **Heartbeat**: a daemon thread rewrites ``heartbeat`` every `heartbeat_s` while the writer runs,
  after checking that the record is still ours; if it is not (the writer was paused so long that
  another process judged the lease stale and took it), `Lease.check` raises `LeaseLostError` at the
  writer's next check point instead of letting two writers continue.
- **Stale lease**: held by a process that no longer exists on this host (pid gone, or reused by
  another process: its start time differs), or whose heartbeat is older than `timeout_s` (any
  host). A stale lease is taken over under a second exclusive file ``<store>.lease.takeover``, and
  deleted only if it still holds the very record judged stale, so two processes that find the same
  stale lease cannot both win.
- **Release**: on leaving the ``with`` block (normally or by an exception) the lease is deleted if it
  is still ours. A process killed with ``kill -9`` leaves its lease; the next writer on the same host
  takes it over at once (dead pid), one on another host after `timeout_s`.

Example
-------
>>> with store_lease("out.zarr", operation="srdata build") as lease:   # doctest: +SKIP
...     for tile in tiles:
...         lease.check()          # raises LeaseLostError if another writer took the store over
...         build(tile)
"""

from __future__ import annotations

import contextlib
import json
import logging
import math
import os
import socket
import threading
import time
import uuid
from collections.abc import Callable, Iterator
from typing import Any, TypeVar

from srcaco2.srdata._lifeline import process_alive, process_start_time
from srcaco2.srdata.schema import StoreFormatError
from srcaco2.srdata.storefs import StoreFiles, StoreNotWritableError, is_url

__all__ = [
    "LEASE_SUFFIX",
    "live_writer",
    "Lease",
    "check_held",
    "holds",
    "leased",
    "LeaseLostError",
    "StoreLockedError",
    "lease_path",
    "read_lease",
    "store_lease",
]

log = logging.getLogger(__name__)

LEASE_SUFFIX = ".lease"
"""The lease of store ``S`` is the file ``S + LEASE_SUFFIX``."""

DEFAULT_TIMEOUT_S = 120.0
"""A lease whose heartbeat is older than this (seconds) is stale, whatever host holds it."""

DEFAULT_HEARTBEAT_S = 10.0
"""Seconds between two heartbeats of a held lease."""

_UNREADABLE_GRACE_S = 2.0  # a record that stays unparsable this long is stale (its writer died mid-write)

_HELD: list[Lease] = []  # leases this process holds now (checked by `check_held`)
_HELD_LOCK = threading.Lock()
_F = TypeVar("_F", bound=Callable[..., Any])


class StoreLockedError(StoreFormatError):
    """Another live writer holds the store's lease (the message names it and says what to do)."""


class LeaseLostError(RuntimeError):
    """This writer's lease was taken over by another process; stop writing."""


def lease_path(store: str | os.PathLike) -> str:
    """Path or URL of the lease of `store`: ``<store>.lease`` (trailing ``/`` dropped).

    A local path is made absolute with symbolic links resolved, so that ``out.zarr``,
    ``./out.zarr`` and ``/abs/out.zarr`` share one lease.
    """
    s = os.fspath(store).rstrip("/") or "/"
    if not is_url(s):
        s = os.path.realpath(s)
    return s + LEASE_SUFFIX


# --------------------------------------------------------------------------------------- records


def read_lease(store: str | os.PathLike) -> dict[str, Any] | None:
    """The lease record of `store`, or None when nobody holds it (or it cannot be parsed)."""
    files = StoreFiles(lease_path(store))
    raw = files.read(files.path)
    if raw is None:
        return None
    try:
        rec = json.loads(raw.decode())
    except (UnicodeDecodeError, json.JSONDecodeError):
        return None
    return rec if isinstance(rec, dict) else None


MAX_CLOCK_SKEW_S = 60.0
"""A heartbeat further than this in the future is not believed (a damaged record or a wrong clock)."""


def _number(rec: dict[str, Any], key: str) -> float | None:
    """``rec[key]`` as a finite float, or None when missing or of the wrong type."""
    value = rec.get(key)
    if isinstance(value, bool) or not isinstance(value, (int, float)) or not math.isfinite(value):
        return None
    return float(value)


def _stale_reason(rec: dict[str, Any] | None, timeout_s: float) -> str | None:
    """Why a lease record no longer protects anything (None: it is live).

    A record with a field of the wrong type (``heartbeat: null``, ``pid: "abc"``) is unreadable, hence
    stale; a heartbeat up to `MAX_CLOCK_SKEW_S` in the future counts as now (clock skew between
    hosts), one further ahead as stale.
    """
    if rec is None:
        return "unreadable lease record"
    heartbeat, pid = _number(rec, "heartbeat"), _number(rec, "pid")
    if heartbeat is None or pid is None or pid != int(pid):
        return "unreadable lease record (a field of the wrong type)"
    age = time.time() - heartbeat
    if age < -MAX_CLOCK_SKEW_S:
        return f"its heartbeat lies {-age:.0f} s in the future"
    if age > timeout_s:
        return f"no heartbeat for {age:.0f} s"
    if rec.get("host") == socket.gethostname():
        if pid <= 0 or not process_alive(int(pid), rec.get("pid_start")):
            return f"process {int(pid)} on this host is gone"
    return None


def _default_timeout_s() -> float:
    """`DEFAULT_TIMEOUT_S`, or the environment variable ``SRCACO2_LEASE_TIMEOUT_S``."""
    return float(os.environ.get("SRCACO2_LEASE_TIMEOUT_S", DEFAULT_TIMEOUT_S))


def live_writer(store: str | os.PathLike, timeout_s: float | None = None) -> str | None:
    """One line naming the live writer that holds `store`'s lease (without advice), or None when
    nobody does (or the lease is stale). Readers that must not judge a store mid-write (`srdata
    verify`) ask first."""
    if timeout_s is None:
        timeout_s = _default_timeout_s()
    rec = read_lease(store)
    if rec is None or _stale_reason(rec, timeout_s) is not None:
        return None
    return _describe(rec, os.fspath(store), timeout_s, lease_path(store), "store", advice=False)


def _describe(
    rec: dict[str, Any], store: str, timeout_s: float, path: str, what: str, *, advice: bool = True
) -> str:
    """The holder of a live lease, in one line; with `advice`, what a refused writer can do."""
    started = time.strftime("%Y-%m-%d %H:%M:%S UTC", time.gmtime(_number(rec, "started") or 0.0))
    beat = max(0.0, time.time() - (_number(rec, "heartbeat") or 0.0))
    holder = (
        f"{store}: another writer holds this {what} ({rec.get('operation', '?')}, pid {rec.get('pid')} on "
        f"host {rec.get('host')}, started {started}, last heartbeat {beat:.0f} s ago; lease {path})"
    )
    if not advice:
        return holder
    return (
        f"{holder}; wait for it to finish or stop it, then rerun (a lease left by a killed process is "
        f"taken over automatically: at once on the same host, after {timeout_s:.0f} s without heartbeat "
        "elsewhere)"
    )


# ------------------------------------------------------------------------------------------ lease


class Lease:
    """A held store lease (see the module docstring); made by `store_lease`.

    Attributes
    ----------
    store : str
        The store written.
    path : str
        The lease file (``<store>.lease``).
    record : dict
        The record written (token, host, pid, operation, started, heartbeat).
    """

    def __init__(
        self, store: str, operation: str, timeout_s: float, heartbeat_s: float, what: str = "store"
    ) -> None:
        if timeout_s <= 0 or heartbeat_s <= 0 or heartbeat_s >= timeout_s:
            raise ValueError(
                f"need 0 < heartbeat_s < timeout_s, got heartbeat_s={heartbeat_s}, timeout_s={timeout_s}"
            )
        self.store, self.operation, self.what = store, operation, what
        self.timeout_s, self.heartbeat_s = float(timeout_s), float(heartbeat_s)
        self.path = lease_path(store)
        self._files = StoreFiles(self.path)
        self._fpath = self._files.path
        now = time.time()
        self.record: dict[str, Any] = {
            "token": uuid.uuid4().hex,
            "host": socket.gethostname(),
            "pid": os.getpid(),
            "pid_start": process_start_time(os.getpid()),
            "operation": operation,
            "store": store,
            "started": now,
            "heartbeat": now,
        }
        self._lost: str | None = None
        self._stop = threading.Event()
        self._thread: threading.Thread | None = None
        self._lock = threading.Lock()

    def _data(self) -> bytes:
        return json.dumps(self.record, sort_keys=True).encode()

    def _mine(self) -> bool:
        raw = self._files.read(self._fpath)
        if raw is None:
            return False
        try:
            return json.loads(raw.decode()).get("token") == self.record["token"]
        except (UnicodeDecodeError, json.JSONDecodeError, AttributeError):
            return False

    def acquire(self) -> None:
        """Take the lease (or a stale one over); raise `StoreLockedError` if a live writer holds it."""
        claim = self._fpath + ".takeover"
        if self._files.fs is None and os.path.isdir(self._fpath):
            raise StoreLockedError(
                f"{self.store}: its lease path {self.path} is a folder, not a lease file; remove that "
                "folder (nothing of the store is in it) and rerun"
            )
        deadline = time.monotonic() + max(10.0, self.timeout_s)
        while True:
            self.record["heartbeat"] = time.time()
            try:
                created = self._files.create_exclusive(self._fpath, self._data())
            except OSError as exc:
                raise StoreNotWritableError(
                    f"{self.store}: cannot create its lease {self.path} ({type(exc).__name__}: "
                    f"{exc.strerror or exc}); the folder that holds STORE must be writable"
                ) from None
            if created:
                log.debug("took lease %s", self.path)
                return
            raw, rec = self._read_record()
            if raw is None:
                continue  # released meanwhile: try again
            reason = _stale_reason(rec, self.timeout_s)
            if reason is None:
                raise StoreLockedError(
                    _describe(rec, self.store, self.timeout_s, self.path, self.what)  # type: ignore[arg-type]
                )
            if time.monotonic() > deadline:
                raise StoreLockedError(
                    f"{self.store}: its lease {self.path} is stale ({reason}) but could not be taken over "
                    f"within {max(10.0, self.timeout_s):.0f} s; delete {self.path} and rerun"
                )
            # Take over under a second exclusive file: only one process deletes the stale record,
            # and only if the lease still holds exactly that record.
            if self._files.create_exclusive(claim, self._data()):
                try:
                    if self._files.read(self._fpath) == raw:
                        log.warning("%s: taking over a stale lease (%s)", self.store, reason)
                        self._files.remove(self._fpath)
                finally:
                    self._files.remove(claim)
            else:
                claim_rec = self._files.read(claim)
                with contextlib.suppress(Exception):
                    if claim_rec is not None and _stale_reason(json.loads(claim_rec.decode()), 30.0):
                        self._files.remove(claim)  # a taker died mid-takeover
                time.sleep(0.05)

    def _read_record(self) -> tuple[bytes | None, dict[str, Any] | None]:
        """(raw bytes, parsed record) of the lease file; an unparsable record is re-read for
        `_UNREADABLE_GRACE_S` (it may be in the middle of being written) before it is returned."""
        deadline = time.monotonic() + _UNREADABLE_GRACE_S
        while True:
            raw = self._files.read(self._fpath)
            if raw is None:
                return None, None
            with contextlib.suppress(UnicodeDecodeError, json.JSONDecodeError):
                rec = json.loads(raw.decode())
                if isinstance(rec, dict):
                    return raw, rec
            if time.monotonic() > deadline:
                return raw, None
            time.sleep(0.1)

    def _beat(self) -> None:
        while not self._stop.wait(self.heartbeat_s):
            with self._lock:
                try:
                    if not self._mine():
                        self._lost = "the lease file no longer holds this writer's record"
                        log.error("%s: lease lost (%s)", self.store, self._lost)
                        return
                    self.record["heartbeat"] = time.time()
                    self._files.replace(self._fpath, self._data())
                except OSError as exc:  # transient: the next beat retries; staleness is judged by age
                    log.warning("%s: lease heartbeat failed (%s)", self.store, exc)

    def start_heartbeat(self) -> None:
        """Refresh the lease every `heartbeat_s` from a daemon thread until `release`."""
        self._thread = threading.Thread(target=self._beat, name="srdata-lease-heartbeat", daemon=True)
        self._thread.start()

    def check(self) -> None:
        """Raise `LeaseLostError` if another process took this lease over (call between units of work)."""
        if self._lost is not None:
            raise LeaseLostError(
                f"{self.store}: this writer lost its lease ({self._lost}): another process took the store "
                "over while this one was stalled; stop it or this one, then rerun one writer"
            )

    def release(self) -> None:
        """Stop the heartbeat and delete the lease if it is still this writer's."""
        self._stop.set()
        if self._thread is not None:
            self._thread.join(timeout=5)
        with self._lock:
            try:
                if self._mine():
                    self._files.remove(self._fpath)
            except OSError as exc:
                log.warning("%s: could not remove lease %s (%s)", self.store, self.path, exc)

    def __repr__(self) -> str:
        return (
            f"Lease({self.store!r}, operation={self.operation!r}, pid={self.record['pid']}, "
            f"host={self.record['host']!r}, lost={self._lost is not None})"
        )


@contextlib.contextmanager
def store_lease(
    store: str | os.PathLike,
    *,
    operation: str,
    timeout_s: float | None = None,
    heartbeat_s: float | None = None,
    what: str = "store",
) -> Iterator[Lease]:
    """Hold the single-writer lease of `store` for the duration of the block.

    Parameters
    ----------
    store : str or path-like
        Local path or fsspec URL of the store (it need not exist yet).
    operation : str
        What writes (``"srdata build"``), shown to a refused second writer.
    timeout_s : float, optional
        Heartbeat age after which the lease is stale (default `DEFAULT_TIMEOUT_S`, or the
        environment variable ``SRCACO2_LEASE_TIMEOUT_S``).
    heartbeat_s : float, optional
        Refresh period (default `DEFAULT_HEARTBEAT_S`, at most a third of `timeout_s`).
    what : str
        What is protected, in messages (``"store"``, ``"run folder"``).

    Yields
    ------
    Lease
        Call ``lease.check()`` between units of work.

    Raises
    ------
    StoreLockedError
        A live writer holds the store (one line naming it: operation, pid, host, start, heartbeat).
    StoreNotWritableError
        The lease cannot be created (the store's folder is not writable).
    """
    if timeout_s is None:
        timeout_s = _default_timeout_s()
    if heartbeat_s is None:
        heartbeat_s = min(DEFAULT_HEARTBEAT_S, timeout_s / 3)
    lease = Lease(os.fspath(store), operation, timeout_s, heartbeat_s, what)
    lease.acquire()
    with _HELD_LOCK:
        _HELD.append(lease)
    try:
        lease.start_heartbeat()
        yield lease
        lease.check()
    finally:
        with _HELD_LOCK:
            _HELD.remove(lease)
        lease.release()


def holds(store: str | os.PathLike) -> bool:
    """Whether this process holds the lease of `store` now (a writer that took it for a whole job)."""
    path = lease_path(os.fspath(store))
    with _HELD_LOCK:
        return any(lease.path == path for lease in _HELD)


def check_held() -> None:
    """Raise `LeaseLostError` if a lease this process holds was taken over (a no-op without leases).

    Writers call it right before recording progress (`srcaco2.srdata.writer.mark_tile_finished`), so a
    writer that lost its store never marks a tile finished.
    """
    with _HELD_LOCK:
        held = list(_HELD)
    for lease in held:
        lease.check()


def leased(operation: str, *, arg: str = "store") -> Callable[[_F], _F]:
    """Decorator: run the function while holding the lease of its argument `arg` (a store path/URL).

    Example
    -------
    >>> @leased("srdata build")                                   # doctest: +SKIP
    ... def build_store(raw, store, config): ...
    """
    import functools
    import inspect

    def wrap(fn: _F) -> _F:
        sig = inspect.signature(fn)

        @functools.wraps(fn)
        def inner(*args: Any, **kwargs: Any) -> Any:
            store = sig.bind(*args, **kwargs).arguments[arg]
            with store_lease(store, operation=operation):
                return fn(*args, **kwargs)

        return inner  # type: ignore[return-value]

    return wrap
