"""Bounded, per-worker cache of decoded chunk blocks (and small derived per-window arrays).

Why: one random region read through zarr costs ~1.5 ms (codec pipeline, metadata, event loop),
slicing a decoded in-memory array ~0.02 ms (docs/store.md#reading). So the loader
never calls zarr per crop: `ChunkReader` decodes whole chunk-aligned *blocks* once, keeps them in
an `ArrayLRU`, and assembles any requested rectangle by copying from the cached blocks. Windows
overlap (stride 256, patch 512), so a block serves up to ~4 windows per acquisition.

Memory: each DataLoader worker holds its own cache, so the peak is ``num_workers × max_bytes``.
A large budget keeps a whole split resident after the first epoch (one marker and scale of the
SR-CACO-2 train split is ~1.9 GB HR + ~1.9 GB ROI + LR); a small one streams (more decoding).
Nothing here opens a store: the reader receives an already opened root group from the dataset,
which opens it lazily inside its worker process.

Integrity: in a checksummed store (format 2) a damaged chunk fails zarr's crc32c check and a deleted
one is found in the array's key listing (taken once per array and process); either stops the read
with one `srcaco2.srdata.integrity.ChunkError` line naming array, chunk and the fix.
"""

from __future__ import annotations

import math
from collections import OrderedDict
from collections.abc import Hashable, Sequence
from typing import Any

import numpy as np

from srcaco2.srdata.integrity import CheckedReader, ChunkError
from srcaco2.srdata.schema import StoreFormatError

__all__ = ["DEFAULT_CACHE_BYTES", "ArrayLRU", "ChunkReader"]

DEFAULT_CACHE_BYTES: int = 512 * 2**20
"""Default budget of one worker's cache (512 MiB)."""


class ArrayLRU:
    """Least-recently-used map ``key -> ndarray`` bounded by the arrays' total ``nbytes``.

    Parameters
    ----------
    max_bytes : int
        Budget. Trade-off: larger keeps more of the split decoded (fewer zarr reads, the split
        stays resident when it fits), smaller bounds each worker's RAM.

    Attributes
    ----------
    hits, misses, evictions : int
        Lookup statistics.
    bytes_decoded : int
        Bytes produced by decoding store chunks (counted by `ChunkReader`), the cost of misses.
    """

    def __init__(self, max_bytes: int = DEFAULT_CACHE_BYTES) -> None:
        if max_bytes < 0:
            raise ValueError(f"max_bytes must be >= 0, got {max_bytes}")
        self._max = int(max_bytes)
        self._data: OrderedDict[Hashable, np.ndarray] = OrderedDict()
        self.nbytes = 0
        self.hits = self.misses = self.evictions = 0
        self.bytes_decoded = 0

    def max_memory_bytes(self) -> int:
        """Upper bound of the memory the cached arrays may hold (bytes)."""
        return self._max

    def __len__(self) -> int:
        return len(self._data)

    def __contains__(self, key: Hashable) -> bool:
        return key in self._data

    def get(self, key: Hashable) -> np.ndarray | None:
        """The cached array (marked most recently used) or None."""
        arr = self._data.get(key)
        if arr is None:
            self.misses += 1
            return None
        self._data.move_to_end(key)
        self.hits += 1
        return arr

    def put(self, key: Hashable, arr: np.ndarray) -> np.ndarray:
        """Insert (or replace) `arr`, evicting least recently used entries beyond the budget.

        An array larger than the whole budget is returned but not kept.
        """
        old = self._data.pop(key, None)
        if old is not None:
            self.nbytes -= old.nbytes
        if arr.nbytes <= self._max:
            self._data[key] = arr
            self.nbytes += arr.nbytes
            while self.nbytes > self._max:
                _, ev = self._data.popitem(last=False)
                self.nbytes -= ev.nbytes
                self.evictions += 1
        return arr

    def clear(self) -> None:
        self._data.clear()
        self.nbytes = 0

    def stats(self) -> dict[str, int]:
        """Plain-int statistics: entries, nbytes, max_bytes, hits, misses, evictions, bytes_decoded."""
        return {
            "entries": len(self._data),
            "nbytes": self.nbytes,
            "max_bytes": self._max,
            "hits": self.hits,
            "misses": self.misses,
            "evictions": self.evictions,
            "bytes_decoded": self.bytes_decoded,
        }

    def __repr__(self) -> str:
        return (
            f"ArrayLRU(entries={len(self._data)}, nbytes={self.nbytes / 2**20:.1f} MiB, "
            f"max_bytes={self._max / 2**20:.1f} MiB, hits={self.hits}, misses={self.misses}, "
            f"evictions={self.evictions}, decoded={self.bytes_decoded / 2**20:.1f} MiB)"
        )


class ChunkReader:
    """Rectangles of a store's image arrays, assembled from cached chunk-aligned blocks.

    Parameters
    ----------
    root : zarr.Group
        Open root group (opened in the current process).
    cache : ArrayLRU
        Where decoded blocks live, keyed ``("blk", path, channels, by, bx)``.
    min_block : int
        Blocks are whole chunks, grouped so that a block edge is at least this many pixels
        (fewer zarr calls for small chunks).
    where : str
        Store name used in error messages.
    """

    def __init__(self, root: Any, cache: ArrayLRU, *, min_block: int = 128, where: str = "<store>") -> None:
        self.root, self.cache, self.where = root, cache, where
        self._checked = CheckedReader(where)
        self._min_block = int(min_block)
        self._arrays: dict[str, tuple[Any, tuple[int, int], tuple[int, ...]]] = {}

    def _array(self, path: str) -> tuple[Any, tuple[int, int], tuple[int, ...]]:
        got = self._arrays.get(path)
        if got is None:
            try:
                arr = self.root[path]
            except KeyError:
                raise StoreFormatError(
                    f"{self.where}: array {path} is missing; the tile is incomplete - rerun `srdata build`"
                ) from None
            chunks = tuple(int(c) for c in arr.chunks)
            block = tuple(c * max(1, math.ceil(self._min_block / c)) for c in chunks[-2:])
            got = (arr, (int(block[0]), int(block[1])), chunks)
            self._arrays[path] = got
        return got

    def shape(self, path: str) -> tuple[int, ...]:
        """Shape of the array at `path`."""
        return tuple(self._array(path)[0].shape)

    def _decode(
        self, path: str, channels: tuple[int, ...] | None, ys: int, ye: int, xs: int, xe: int
    ) -> np.ndarray:
        arr, _, chunks = self._array(path)
        if channels is None:
            box = [(ys, ye), (xs, xe)]
        else:
            box = [(min(channels), max(channels) + 1), (ys, ye), (xs, xe)]
        self._checked.check_box(arr, box)  # a deleted chunk would read as zeros: refuse it
        try:
            if channels is None:
                data = np.asarray(arr[ys:ye, xs:xe])[None]
            elif channels == tuple(range(channels[0], channels[-1] + 1)):
                data = np.asarray(arr[channels[0] : channels[-1] + 1, ys:ye, xs:xe])
            else:
                data = np.asarray(
                    arr.get_orthogonal_selection((list(channels), slice(ys, ye), slice(xs, xe)))
                )
        except Exception as exc:  # zarr/numcodecs raise many types for a damaged chunk
            err = self._checked.explain(arr, box, exc)
            if isinstance(err, ChunkError):
                raise err from exc
            cy, cx = chunks[-2], chunks[-1]
            raise StoreFormatError(
                f"{self.where}: failed to decode {path} (tile {path.split('/')[1]}), chunks "
                f"y {ys // cy}..{(ye - 1) // cy}, x {xs // cx}..{(xe - 1) // cx} of {chunks} "
                f"[{type(exc).__name__}: {' '.join(str(exc).split())}]; the store is damaged: run "
                "`srdata verify STORE` and rebuild that tile with `srdata build`"
            ) from exc
        # decoded work = every inner chunk touched, whole (channel chunks included)
        n_chunks = math.ceil(ye / chunks[-2]) - ys // chunks[-2]
        n_chunks *= math.ceil(xe / chunks[-1]) - xs // chunks[-1]
        if channels is not None:
            cc = chunks[0]
            n_chunks *= len({c // cc for c in channels})
        self.cache.bytes_decoded += n_chunks * math.prod(chunks) * arr.dtype.itemsize
        return data

    def region(
        self, path: str, channels: Sequence[int] | None, y0: int, y1: int, x0: int, x1: int
    ) -> np.ndarray:
        """Pixels ``[y0:y1, x0:x1]`` of the array at `path`; zero outside the array.

        Parameters
        ----------
        path : str
            Array path (`srcaco2.srdata.schema.image_path` / `roi_path`).
        channels : sequence of int or None
            Channel indices of a (c, y, x) image; None for a (y, x) array (the ROI mask).
        y0, y1, x0, x1 : int
            Rectangle in that array's pixels (may exceed its bounds).

        Returns
        -------
        (C, y1 - y0, x1 - x0) uint8 (C = 1 for a (y, x) array)
            Possibly a read-only-by-convention view of a cached block: copy before writing to it.
        """
        ch = None if channels is None else tuple(int(c) for c in channels)
        arr, (by, bx), _ = self._array(path)
        h, w = arr.shape[-2:]
        if (
            0 <= y0
            and y1 <= h
            and 0 <= x0
            and x1 <= w
            and y0 // by == (y1 - 1) // by
            and x0 // bx == (x1 - 1) // bx
        ):
            blk = self.cache.get(("blk", path, ch, y0 // by, x0 // bx))  # fast path: a view of one block
            if blk is not None:
                ry, rx = y0 // by * by, x0 // bx * bx
                return blk[:, y0 - ry : y1 - ry, x0 - rx : x1 - rx]
        out = np.zeros((1 if ch is None else len(ch), y1 - y0, x1 - x0), dtype=arr.dtype)
        ys, ye, xs, xe = max(y0, 0), min(y1, h), max(x0, 0), min(x1, w)
        if ye <= ys or xe <= xs:
            return out
        rows = range(ys // by, (ye - 1) // by + 1)
        cols = range(xs // bx, (xe - 1) // bx + 1)
        blocks: dict[tuple[int, int], np.ndarray] = {}
        missing = []
        for r in rows:
            for c in cols:
                blk = self.cache.get(("blk", path, ch, r, c))
                if blk is None:
                    missing.append((r, c))
                else:
                    blocks[r, c] = blk
        if missing:
            blocks.update(self._fetch(path, ch, missing))
        for (r, c), blk in blocks.items():
            ry, rx = r * by, c * bx
            ya, yb = max(ys, ry), min(ye, ry + blk.shape[-2])
            xa, xb = max(xs, rx), min(xe, rx + blk.shape[-1])
            out[:, ya - y0 : yb - y0, xa - x0 : xb - x0] = blk[:, ya - ry : yb - ry, xa - rx : xb - rx]
        return out

    def _fetch(
        self, path: str, ch: tuple[int, ...] | None, keys: Sequence[tuple[int, int]]
    ) -> dict[tuple[int, int], np.ndarray]:
        """Decode the blocks `keys` and cache them: one zarr call for their bounding box when it holds
        only them, else one call per run of consecutive keys in a row (cached blocks are not decoded
        again)."""
        r0, r1 = min(k[0] for k in keys), max(k[0] for k in keys)
        c0, c1 = min(k[1] for k in keys), max(k[1] for k in keys)
        want = set(keys)
        if len(want) == (r1 - r0 + 1) * (c1 - c0 + 1):
            return self._fetch_box(path, ch, r0, r1, c0, c1)
        got: dict[tuple[int, int], np.ndarray] = {}
        for r, c in sorted(want):
            if (r, c - 1) in want:
                continue  # inside a run started earlier
            end = c
            while (r, end + 1) in want:
                end += 1
            got.update(self._fetch_box(path, ch, r, r, c, end))
        return got

    def _fetch_box(
        self, path: str, ch: tuple[int, ...] | None, r0: int, r1: int, c0: int, c1: int
    ) -> dict[tuple[int, int], np.ndarray]:
        """Decode block rows r0..r1, columns c0..c1 in one zarr call; cache every block."""
        arr, (by, bx), _ = self._array(path)
        h, w = arr.shape[-2:]
        ys, ye, xs, xe = r0 * by, min((r1 + 1) * by, h), c0 * bx, min((c1 + 1) * bx, w)
        data = self._decode(path, ch, ys, ye, xs, xe)
        got = {}
        for r in range(r0, r1 + 1):
            for c in range(c0, c1 + 1):
                blk = np.ascontiguousarray(
                    data[:, r * by - ys : (r + 1) * by - ys, c * bx - xs : (c + 1) * bx - xs]
                )
                blk.flags.writeable = False  # views of it are handed out
                got[r, c] = self.cache.put(("blk", path, ch, r, c), blk)
        return got

    def prefetch(self, path: str, channels: Sequence[int] | None, y0: int, y1: int, x0: int, x1: int) -> int:
        """Decode the blocks covering a rectangle that are not cached yet, in one zarr call.

        Returns
        -------
        int
            Blocks decoded (0 when all were cached: nothing is decoded twice while it stays cached).
        """
        ch = None if channels is None else tuple(int(c) for c in channels)
        arr, (by, bx), _ = self._array(path)
        h, w = arr.shape[-2:]
        ys, ye, xs, xe = max(y0, 0), min(y1, h), max(x0, 0), min(x1, w)
        if ye <= ys or xe <= xs:
            return 0
        keys = [
            (r, c)
            for r in range(ys // by, (ye - 1) // by + 1)
            for c in range(xs // bx, (xe - 1) // bx + 1)
            if ("blk", path, ch, r, c) not in self.cache
        ]
        return len(self._fetch(path, ch, keys)) if keys else 0

    def __repr__(self) -> str:
        return f"ChunkReader({self.where!r}, arrays={len(self._arrays)}, cache={self.cache!r})"
