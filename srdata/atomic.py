"""Atomic file writes: a reader never sees half a file, a failed write leaves nothing behind.

`atomic_writer(path)` yields a file object on a temporary file beside `path` (same folder, so the
final ``os.replace`` is a rename on one filesystem); on leaving the block the data are flushed and
fsynced, the file gets the permissions an ordinary ``open(path, "w")`` would give
(``0o666 & ~umask``; ``mkstemp`` alone makes it ``0o600``), and it replaces `path`; the folder's
entry is fsynced where the filesystem allows. On an exception the temporary file is removed and
`path` is left as it was.
"""

from __future__ import annotations

import contextlib
import os
import tempfile
from collections.abc import Iterator
from pathlib import Path
from typing import IO, Any

__all__ = ["atomic_writer", "write_bytes_atomic", "write_text_atomic"]


def _umask() -> int:
    mask = os.umask(0)
    os.umask(mask)
    return mask


@contextlib.contextmanager
def atomic_writer(
    path: str | os.PathLike, mode: str = "wb", *, before_replace: Any = None
) -> Iterator[IO[Any]]:
    """Write `path` atomically (see the module docstring).

    Parameters
    ----------
    path : path-like
        The final file; its folder must exist.
    mode : {"wb", "w"}
        Binary, or text (UTF-8, ``newline=""``: what is written is what lands).
    before_replace : callable, optional
        Called with no argument after the data are durable and before the rename (e.g. to keep the
        previous file under another name).
    """
    path = Path(path)
    fd, tmp_name = tempfile.mkstemp(prefix=f".{path.name}.", suffix=".tmp", dir=path.parent)
    tmp = Path(tmp_name)
    try:
        kwargs = {"encoding": "utf-8", "newline": ""} if "b" not in mode else {}
        with os.fdopen(fd, mode, **kwargs) as fh:
            yield fh
            fh.flush()
            os.fsync(fh.fileno())
        os.chmod(tmp, 0o666 & ~_umask())
        if before_replace is not None:
            before_replace()
        os.replace(tmp, path)
    except BaseException:
        tmp.unlink(missing_ok=True)
        raise
    with contextlib.suppress(OSError):  # make the rename durable (not every filesystem opens folders)
        dir_fd = os.open(path.parent, os.O_RDONLY)
        try:
            os.fsync(dir_fd)
        finally:
            os.close(dir_fd)


def write_bytes_atomic(path: str | os.PathLike, data: bytes) -> Path:
    """`atomic_writer` for a bytes payload; returns the path."""
    with atomic_writer(path, "wb") as fh:
        fh.write(data)
    return Path(path)


def write_text_atomic(path: str | os.PathLike, text: str) -> Path:
    """`atomic_writer` for a text payload (UTF-8); returns the path."""
    with atomic_writer(path, "w") as fh:
        fh.write(text)
    return Path(path)
