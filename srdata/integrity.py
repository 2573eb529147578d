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

A crc32c checksum travels with its chunk, so a chunk file copied over another (the same key of
another tile or pyramid level, or two chunks of one array swapped) still passes it. So every array
also records, when its writer finishes it, a **chunk manifest** in its attributes
(`MANIFEST_ATTR`): ``{chunk key: the chunk's stored crc32c}`` (the last 4 bytes zarr wrote, the
checksum of the stored bytes), under the array's own path. A chunk whose stored checksum differs
from the one recorded for its (array, key) was moved, copied or rewritten: `CheckedReader` (every
reader of store pixels) and `srcaco2.srdata.inspect.verify_store` compare them, reading only those
4 bytes per chunk, once per array. In a format-2 store an array without the crc32c codec is damage
(its ``zarr.json`` was edited), for readers as for ``verify``.
"""

from __future__ import annotations

import logging
from collections.abc import Sequence
from typing import Any

import numpy as np

from srcaco2.srdata.schema import StoreFormatError

__all__ = [
    "MANIFEST_ATTR",
    "record_manifest",
    "record_manifests",
    "has_manifest",
    "chunk_faults",
    "MISSING",
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


MISSING = "is missing (its file was deleted or never written)"
"""The reason `chunk_faults` gives for a chunk with no stored object."""
_MISPLACED = (
    "is not the chunk written there (its stored checksum differs from the array's chunk manifest: "
    "the file was moved, copied from another array or key, or rewritten)"
)

MANIFEST_ATTR = "srcaco2_chunks"
"""Array attribute holding the chunk manifest: ``{"checksum": ..., "chunks": {key: crc32c hex}}``
(keys relative to the array, e.g. ``c/0/1/2``)."""


def _tails(arr: Any, keys: Sequence[str]) -> dict[str, str | None]:
    """The last 4 stored bytes (the crc32c codec's checksum) of each chunk key (relative to the
    store root), hex; None for a key with no object. Concurrent reads of 4 bytes each."""
    import asyncio

    from zarr.abc.store import SuffixByteRequest
    from zarr.core.buffer import default_buffer_prototype
    from zarr.core.sync import sync

    proto = default_buffer_prototype()

    async def one(key: str) -> tuple[str, str | None]:
        buf = await arr.store.get(key, proto, byte_range=SuffixByteRequest(4))
        return key, None if buf is None else buf.to_bytes().hex()

    async def collect() -> dict[str, str | None]:
        return dict(await asyncio.gather(*(one(k) for k in keys)))

    return sync(collect())


def _relative(arr: Any, key: str) -> str:
    prefix = f"{arr.path}/" if arr.path else ""
    return key[len(prefix) :] if key.startswith(prefix) else key


def record_manifest(arr: Any) -> None:
    """Write `arr`'s chunk manifest (`MANIFEST_ATTR`) from its stored chunks; call once the array is
    completely written. No-op for an array without the crc32c codec (format 1)."""
    if not has_checksums(arr):
        return
    keys = [chunk_key(arr, idx) for idx in np.ndindex(*chunk_grid(arr))]
    tails = _tails(arr, keys)
    arr.attrs[MANIFEST_ATTR] = {
        "checksum": "crc32c of the stored chunk (its last 4 bytes), per chunk key of this array",
        "chunks": {_relative(arr, k): v for k, v in tails.items() if v is not None},
    }


def record_manifests(group: Any) -> None:
    """`record_manifest` for every array under `group` (recursively)."""
    for _, arr in group.arrays():
        record_manifest(arr)
    for _, sub in group.groups():
        record_manifests(sub)


def has_manifest(arr: Any) -> bool:
    """True if `arr` carries a chunk manifest (`MANIFEST_ATTR`)."""
    manifest = arr.attrs.get(MANIFEST_ATTR)
    return isinstance(manifest, dict) and isinstance(manifest.get("chunks"), dict)


def chunk_faults(arr: Any) -> dict[tuple[int, ...], str]:
    """Missing and misplaced chunks of a checksummed array: chunk index -> reason.

    With a manifest, one pass of 4-byte reads finds both (no object: missing; a stored checksum other
    than the one recorded for the key: misplaced); without one, one listing finds the missing ones.
    """
    if not has_manifest(arr):
        return {idx: MISSING for idx in missing_chunks(arr)}
    recorded = arr.attrs[MANIFEST_ATTR]["chunks"]
    idxs = list(np.ndindex(*chunk_grid(arr)))
    keys = [chunk_key(arr, idx) for idx in idxs]
    tails = _tails(arr, keys)
    faults: dict[tuple[int, ...], str] = {}
    for idx, key in zip(idxs, keys, strict=True):
        if tails[key] is None:
            faults[idx] = MISSING
        elif tails[key] != recorded.get(_relative(arr, key)):
            faults[idx] = _MISPLACED
    return faults


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
            return idx, MISSING
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
    format_version : int, optional
        The store's format version; from version 2 on, an array without the crc32c codec is damage.
        Default: read from the store's root attributes on the first array.
    """

    def __init__(self, where: str, format_version: int | None = None) -> None:
        self.where = where
        self.format_version = format_version
        self._bad: dict[str, dict[tuple[int, ...], str]] = {}

    def _format(self, arr: Any) -> int:
        if self.format_version is None:
            import zarr

            from srcaco2.srdata.store import Store

            try:
                self.format_version = Store.of_root(zarr.open_group(store=arr.store, mode="r")).format_version
            except Exception:  # noqa: BLE001 - not a srcaco2 store (a bare array): no format rule
                self.format_version = 0
        return self.format_version

    def bad(self, arr: Any) -> dict[tuple[int, ...], str]:
        """Missing and misplaced chunks of `arr` (index -> reason), found once per array: one listing
        of its keys and 4 bytes per chunk. Empty for a format-1 array (not knowable).

        Raises
        ------
        ChunkError
            A format-2 store's array without the crc32c codec.
        """
        got = self._bad.get(arr.path)
        if got is None:
            if not has_checksums(arr):
                if self._format(arr) >= 2:
                    raise ChunkError(
                        f"{self.where}: array {arr.path} has no crc32c checksum codec although the store "
                        "is of format 2 (its zarr.json was edited); the store is damaged: rebuild it "
                        f"(`srdata verify {self.where}` lists the rest)"
                    )
                got = {}
            else:
                got = chunk_faults(arr)
            self._bad[arr.path] = got
        return got

    def missing(self, arr: Any) -> set[tuple[int, ...]]:
        """Missing or misplaced chunk indices of `arr` (see `bad`)."""
        return set(self.bad(arr))

    def check_box(self, arr: Any, box: Sequence[tuple[int, int]]) -> None:
        """Raise `ChunkError` if a chunk intersecting `box` is missing or misplaced."""
        bad = self.bad(arr)
        if bad:
            for idx in chunks_in_box(arr, box):
                if idx in bad:
                    raise chunk_error(self.where, arr, idx, bad[idx])

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
