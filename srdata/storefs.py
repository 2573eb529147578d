"""Small file operations on a store path or fsspec URL: exclusive create, read, replace, remove, and a
writability probe (used by the store lease, `srcaco2.srdata.lease`, and by commands that write outputs)."""

from __future__ import annotations

import contextlib
import os
import threading
import time
import uuid

from srcaco2.srdata.schema import StoreFormatError

__all__ = ["StoreFiles", "StoreNotWritableError", "ensure_writable", "is_url"]

_SETTLE_S = 0.3  # pause before the read-back check of a file created through fsspec


class StoreNotWritableError(StoreFormatError):
    """The store (or the folder that would hold it) cannot be written; the message says why."""


def is_url(path: str) -> bool:
    """True for an fsspec URL (``scheme://...``), False for a local path."""
    return "://" in path


class StoreFiles:
    """The few file operations a lease needs, on a local path (os) or an fsspec URL."""

    def __init__(self, url: str) -> None:
        self.url = url
        self.local = not is_url(url)
        if self.local:
            self.fs, self.path = None, url
        else:
            import fsspec

            fs, _, paths = fsspec.get_fs_token_paths(url)
            self.fs, self.path = fs, paths[0]

    def create_exclusive(self, path: str, data: bytes) -> bool:
        """Create `path` holding `data` if nothing is there; False if something is.

        Local: the record is written to a temporary file and hard-linked to `path` (atomic, and the
        file never appears half-written), or ``O_EXCL`` where links are not supported. fsspec: mode
        ``"xb"`` and a read-back after a pause (some filesystems check existence at open but store
        the content at close), or write-then-read-back where there is no exclusive mode.
        """
        if self.fs is None:
            parent = os.path.dirname(os.path.abspath(path))
            os.makedirs(parent, exist_ok=True)
            tmp = f"{path}.{os.getpid()}.{uuid.uuid4().hex[:8]}.new"
            with open(tmp, "wb") as f:
                f.write(data)
                f.flush()
                os.fsync(f.fileno())
            try:
                os.link(tmp, path)
                return True
            except FileExistsError:
                return False
            except OSError:  # no hard links here (some network/FUSE filesystems)
                pass
            finally:
                os.remove(tmp)
            try:
                fd = os.open(path, os.O_WRONLY | os.O_CREAT | os.O_EXCL, 0o644)
            except FileExistsError:
                return False
            with os.fdopen(fd, "wb") as f:
                f.write(data)
                f.flush()
                os.fsync(f.fileno())
            return True
        self.fs.makedirs(self.fs._parent(path), exist_ok=True)
        try:
            with self.fs.open(path, "xb") as f:
                f.write(data)
        except FileExistsError:
            return False
        except (ValueError, NotImplementedError, TypeError):  # no exclusive mode on this filesystem
            if self.fs.exists(path):
                return False
            with self.fs.open(path, "wb") as f:
                f.write(data)
        time.sleep(_SETTLE_S)  # let a concurrent writer's record land, then see whose record stands
        return self.read(path) == data

    def read(self, path: str) -> bytes | None:
        """Content of `path`, or None if it does not exist."""
        try:
            if self.fs is None:
                with open(path, "rb") as f:
                    return f.read()
            return bytes(self.fs.cat_file(path))
        except FileNotFoundError:
            return None

    def replace(self, path: str, data: bytes) -> None:
        """Overwrite `path` with `data` (atomically on a local path: temp file + rename)."""
        if self.fs is None:
            tmp = f"{path}.{os.getpid()}.{threading.get_ident()}.tmp"
            with open(tmp, "wb") as f:
                f.write(data)
            os.replace(tmp, path)
            return
        with self.fs.open(path, "wb") as f:
            f.write(data)

    def remove(self, path: str) -> None:
        with contextlib.suppress(FileNotFoundError):
            if self.fs is None:
                os.remove(path)
            else:
                self.fs.rm_file(path)


def ensure_writable(path: str | os.PathLike, *, fix: str = "give a writable STORE path") -> None:
    """Check that `path` (a store or an output folder) can be written, by creating and deleting a
    probe file in it; for a path that does not exist yet, the nearest existing folder above it.

    Parameters
    ----------
    path : str or path-like
        Local path or fsspec URL.
    fix : str
        How to fix it, the end of the message.

    Raises
    ------
    StoreNotWritableError
        One line: the path, the cause (permission denied, read-only filesystem, not a directory...),
        and `fix`.
    """
    s = os.fspath(path).rstrip("/")
    name = f".srcaco2-write-probe-{os.getpid()}-{uuid.uuid4().hex[:8]}"
    if is_url(s):
        files = StoreFiles(s)
        fs, base = files.fs, files.path
        assert fs is not None
        while not fs.exists(base) and fs._parent(base) not in ("", base):
            base = fs._parent(base)  # a store not created yet: probe the nearest existing folder
        probe = f"{base.rstrip('/')}/{name}"
        try:
            with fs.open(probe, "wb") as f:
                f.write(b"")
            fs.rm_file(probe)
        except OSError as exc:
            raise StoreNotWritableError(
                f"{s}: cannot be written ({type(exc).__name__}: {exc.strerror or exc}); {fix}"
            ) from None
        return
    folder = s or "."
    while not os.path.exists(folder):
        parent = os.path.dirname(os.path.abspath(folder))
        if parent == os.path.abspath(folder):
            break
        folder = parent
    probe = os.path.join(folder, name)
    try:
        fd = os.open(probe, os.O_WRONLY | os.O_CREAT | os.O_EXCL, 0o644)
        os.close(fd)
        os.remove(probe)
    except OSError as exc:
        where = (
            ""
            if os.path.abspath(folder) == os.path.abspath(s)
            else f" (its nearest existing folder {folder})"
        )
        raise StoreNotWritableError(
            f"{s}: cannot be written{where}: {exc.strerror or type(exc).__name__}; {fix}"
        ) from None
