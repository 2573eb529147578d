"""Chunk integrity: which chunks of an array are missing or damaged, and the one-line error that says so.

Stores of format version 2 (`srcaco2.srdata.schema.FORMAT_VERSION`) carry a crc32c checksum in every chunk
(zarr's ``crc32c`` codec, checked by zarr on every read) and have every chunk written, empty ones
included (`srcaco2.srdata.writer.ARRAY_CONFIG`). So:

- a flipped bit makes zarr raise on read; `find_bad_chunk` then decodes chunk by chunk to name the
  damaged one (only on that error path);
- a deleted chunk file, which zarr would silently read as the fill value, is found by listing the
  array's stored keys once (`missing_chunks`).

Version 1 stores have neither guarantee (`has_checksums` is False): a missing chunk reads as zeros
and some corruptions decode to other pixels; `srdata info` / `srdata verify` say so.
"""

from __future__ import annotations

import logging
from collections.abc import Sequence
from typing import Any

import numpy as np

from srcaco2.srdata.schema import StoreFormatError

__all__ = [
    "ChunkError",
    "chunk_error",
    "chunk_grid",
    "CheckedReader",
    "chunks_in_box",
    "chunk_key",
    "find_bad_chunk",
    "has_checksums",
    "missing_chunks",
    "stored_chunk_keys",
]

log = logging.getLogger(__name__)


_MISSING = "is missing (its file was deleted or never written)"


class ChunkError(StoreFormatError):
    """A chunk of a store array is missing or damaged (the message names array, chunk and the fix).

    Raised in a torch DataLoader worker, it is re-raised in the main process with the worker's
    traceback as its message (``"Caught ChunkError in DataLoader worker process 0.\nOriginal
    Traceback ..."``); the constructor keeps only the original one-line message then, so that every
    reader stops with one line whether it reads in workers or not.
    """

    def __init__(self, message: str = "", *args: object) -> None:
        text = str(message)
        if "\nOriginal Traceback" in text:  # torch's ExceptionWrapper.reraise
            marker = f"{type(self).__name__}: "
            last = [ln for ln in text.splitlines() if marker in ln]
            if last:
                text = last[-1].split(marker, 1)[1].strip()
        super().__init__(text, *args)


def has_checksums(arr: Any) -> bool:
    """True if `arr` (a zarr v3 array) checks a crc32c checksum on every chunk it reads."""
    from zarr.codecs import Crc32cCodec

    def walk(codecs: Sequence[Any]) -> bool:
        for c in codecs:
            if isinstance(c, Crc32cCodec):
                return True
            inner = getattr(c, "codecs", None)  # sharding: the inner pipeline
            if inner and walk(inner):
                return True
        return False

    return walk(getattr(arr.metadata, "codecs", ()))


def chunk_grid(arr: Any) -> tuple[int, ...]:
    """Stored objects per dimension (chunks, or shards when the array is sharded)."""
    grid = getattr(arr, "shards", None) or arr.chunks
    return tuple(-(-int(n) // int(g)) for n, g in zip(arr.shape, grid, strict=True))


def chunk_key(arr: Any, idx: tuple[int, ...]) -> str:
    """Key of chunk `idx` relative to the store root, e.g. ``tiles/0/hr/0/c/1/0/2``."""
    key = arr.metadata.encode_chunk_key(tuple(int(i) for i in idx))
    return f"{arr.path}/{key}" if arr.path else key


def stored_chunk_keys(arr: Any) -> set[str]:
    """Keys (relative to the store root) of the chunk objects that exist for `arr` (one listing)."""
    from zarr.core.sync import sync

    async def collect() -> set[str]:
        prefix = f"{arr.path}/" if arr.path else ""
        return {k async for k in arr.store.list_prefix(prefix)}

    return sync(collect())


def missing_chunks(arr: Any, stored: set[str] | None = None) -> list[tuple[int, ...]]:
    """Chunk indices of `arr` with no stored object (all of them are written in a format-2 store).

    Parameters
    ----------
    arr : zarr.Array
    stored : set of str, optional
        `stored_chunk_keys` of `arr` (or a superset), when already listed.
    """
    keys = stored_chunk_keys(arr) if stored is None else stored
    return [idx for idx in np.ndindex(*chunk_grid(arr)) if chunk_key(arr, idx) not in keys]


def chunks_in_box(arr: Any, box: Sequence[tuple[int, int]]) -> list[tuple[int, ...]]:
    """Chunk indices that intersect `box` (one ``(start, stop)`` per dimension, clipped to the array)."""
    grid = getattr(arr, "shards", None) or arr.chunks
    ranges = []
    for (a, b), g, n in zip(box, grid, arr.shape, strict=True):
        a, b = max(int(a), 0), min(int(b), int(n))
        if b <= a:
            return []
        ranges.append(list(range(a // g, (b - 1) // g + 1)))
    out: list[tuple[int, ...]] = [()]
    for r in ranges:
        out = [(*p, i) for p in out for i in r]
    return out


def _chunk_slices(arr: Any, idx: tuple[int, ...]) -> tuple[slice, ...]:
    grid = getattr(arr, "shards", None) or arr.chunks
    return tuple(slice(i * g, min((i + 1) * g, n)) for i, g, n in zip(idx, grid, arr.shape, strict=True))


def find_bad_chunk(
    arr: Any, box: Sequence[tuple[int, int]] | None = None
) -> tuple[tuple[int, ...], str] | None:
    """The first chunk of `arr` inside `box` that is missing (checksummed arrays) or fails to decode.

    Parameters
    ----------
    arr : zarr.Array
    box : sequence of (start, stop), optional
        Region to search, one pair per dimension in array coordinates (default: the whole array).

    Returns
    -------
    (chunk index, reason) or None
        ``reason`` completes "chunk ... <reason>": ``"is missing ..."``, ``"fails its crc32c checksum ..."``
        or ``"cannot be decoded (<error>)"``.
    """
    if box is None:
        box = [(0, int(n)) for n in arr.shape]
    check_missing = has_checksums(arr)
    stored = stored_chunk_keys(arr) if check_missing else set()
    for idx in chunks_in_box(arr, box):
        if check_missing and chunk_key(arr, idx) not in stored:
            return idx, _MISSING
        try:
            arr[_chunk_slices(arr, idx)]
        except Exception as exc:  # noqa: BLE001 - every decode failure is the finding
            return idx, _reason(exc)
    return None


def _reason(exc: BaseException) -> str:
    text = " ".join(str(exc).split())
    if "checksum" in text.lower():
        return "fails its crc32c checksum (the stored bytes changed after writing)"
    return f"cannot be decoded ({type(exc).__name__}: {text[:200]})"


def chunk_error(where: str, arr: Any, idx: tuple[int, ...], reason: str) -> ChunkError:
    """The one-line error of a damaged chunk: store, array, chunk index and key, cause, fix."""
    key = chunk_key(arr, idx)
    parts = str(arr.path).split("/")
    tile = f" (tile {parts[1]})" if len(parts) > 2 and parts[0] == "tiles" else ""
    return ChunkError(
        f"{where}: array {arr.path}{tile}, chunk {'/'.join(map(str, idx))} ({key}) {reason}; the store is "
        f"damaged: run `srdata verify {where}` to list all damaged chunks, then rebuild the store "
        "(`srdata build` / `srdata import-patches` with --overwrite or into a new path) or restore the file"
    )


def _box(arr: Any, selection: tuple[Any, ...]) -> list[tuple[int, int]]:
    box = []
    for sel, n in zip(selection, arr.shape, strict=False):
        if isinstance(sel, slice):
            a, b, _ = sel.indices(int(n))
            box.append((a, b))
        else:
            i = int(sel) % int(n)
            box.append((i, i + 1))
    return box + [(0, int(n)) for n in arr.shape[len(box) :]]


class CheckedReader:
    """Reads of store arrays that stop with one `ChunkError` line on a missing or damaged chunk.

    The stored chunk keys of each checksummed array are listed once (on its first read) and kept,
    so a missing chunk costs no extra I/O per read; a decode failure is located chunk by chunk.

    Parameters
    ----------
    where : str
        The store's name in messages (path or URL).
    """

    def __init__(self, where: str) -> None:
        self.where = where
        self._missing: dict[str, set[tuple[int, ...]]] = {}

    def missing(self, arr: Any) -> set[tuple[int, ...]]:
        """Missing chunk indices of `arr` (empty for arrays without checksums: not knowable)."""
        got = self._missing.get(arr.path)
        if got is None:
            got = set(missing_chunks(arr)) if has_checksums(arr) else set()
            self._missing[arr.path] = got
        return got

    def check_box(self, arr: Any, box: Sequence[tuple[int, int]]) -> None:
        """Raise `ChunkError` if a chunk intersecting `box` is missing."""
        gone = self.missing(arr)
        if gone:
            for idx in chunks_in_box(arr, box):
                if idx in gone:
                    raise chunk_error(self.where, arr, idx, _MISSING)

    def read(self, arr: Any, selection: tuple[Any, ...]) -> np.ndarray:
        """``arr[selection]`` (ints and unit-step slices) as numpy, or `ChunkError`."""
        box = _box(arr, selection)
        self.check_box(arr, box)
        try:
            return np.asarray(arr[selection])
        except Exception as exc:  # noqa: BLE001 - name the chunk, whatever the codec raised
            raise self.explain(arr, box, exc) from exc

    def explain(self, arr: Any, box: Sequence[tuple[int, int]], exc: BaseException) -> BaseException:
        """The `ChunkError` naming the chunk of `box` behind `exc` (or `exc` if none is found bad)."""
        found = find_bad_chunk(arr, box)
        return exc if found is None else chunk_error(self.where, arr, *found)
