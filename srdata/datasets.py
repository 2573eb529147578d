"""Map-style datasets over a store's split: whole registered windows and ROI-biased crops.

Both read a store (docs/store.md) through a per-process
`srcaco2.srdata.cache.ChunkReader`: `WindowDataset` gives whole registered 512² windows (evaluation),
`CropDataset` gives ROI-biased random crops (training, docs/protocol.md#training-crops). Both index the
accepted rows of one split in index order, and both are small and picklable: the constructor reads the index
(numpy columns) and closes nothing it keeps; the store is opened lazily in whichever process reads
pixels, and reopened after a fork (``_open`` remembers the pid). `srcaco2.srdata.loader.make_loader` wraps
them in a torch DataLoader.

Output: float32 tensors in [0, 1] by default. With ``raw = True`` (set by
`srcaco2.srdata.loader.PatchLoader`) a batch holds numpy uint8 ``lr``/``hr``, bool ``roi`` and int64
provenance, 4× fewer bytes to send from a worker; `srcaco2.srdata.transforms.to_float` converts it in the
receiving process to exactly the same float32 values.
"""

from __future__ import annotations

import logging
import os
from collections.abc import Sequence
from typing import Any, Literal

import numpy as np

from srcaco2.srdata import samplers, transforms
from srcaco2.srdata.cache import DEFAULT_CACHE_BYTES, ArrayLRU, ChunkReader
from srcaco2.srdata.schema import (
    SPLITS,
    lr_patch_origin,
    split_code,
)
from srcaco2.srdata.split import fold_order
from srcaco2.srdata.store import Store, image_path, roi_path
from srcaco2.srdata.transforms import to_float

__all__ = ["WindowDataset", "CropDataset", "to_float"]

log = logging.getLogger(__name__)


class _StoreDataset:
    """Shared part: validation, the split's window table, lazy store opening, patch reads."""

    def __init__(
        self,
        store: str | os.PathLike,
        split: str,
        scale: int,
        marker: str | None = "CELL2",
        *,
        markers: list[str] | None = None,
        max_windows: int | None = None,
        cache_bytes: int = DEFAULT_CACHE_BYTES,
        preload: bool | Literal["auto"] = False,
        tiles: Sequence[int] | None = None,
    ) -> None:
        if preload not in (True, False, "auto"):
            raise ValueError(f"preload must be True, False or 'auto', got {preload!r}")
        self.path = os.fspath(store)
        where = self.path
        st = Store.open(self.path)
        attrs = st.attrs
        index = st.index()
        self.geometry = st.geometry  # window, margin, patch sides (HR px) of this store
        self.dtype = st.dtype
        self.format_version = int(attrs.format_version)  # where the ROI lives (`roi_path`)
        self.scale = int(scale)
        if self.scale not in attrs.scales:
            raise ValueError(
                f"{where}: scale {scale!r} is not in the store (scales {attrs.scales}); "
                "choose one of them or rebuild the store with that scale"
            )
        names = list(markers) if markers else [marker]
        bad = [m for m in names if m not in attrs.markers]
        if bad or not names:
            raise ValueError(f"{where}: marker(s) {bad or names} not in the store (markers {attrs.markers})")
        self.markers = names
        self.channels = tuple(attrs.markers.index(m) for m in names)
        self.intensity = st.intensity.select(self.channels)
        code = split_code(split)
        keep = index["accepted"] & (index["split"] == code)
        if tiles:
            keep &= np.isin(index["tile"].astype(str), [str(t) for t in tiles])
            if not keep.any():
                raise ValueError(
                    f"{where}: split {split!r} has no accepted window on tile(s) {sorted(set(tiles))}; "
                    "choose another split or tile"
                )
        rows = np.flatnonzero(keep)
        if len(rows) == 0:
            counts = {s: int((index["accepted"] & (index["split"] == i)).sum()) for i, s in enumerate(SPLITS)}
            raise ValueError(
                f"{where}: split {split!r} has no accepted window (accepted windows per split: "
                f"{counts}); choose another split or rebuild the index"
            )
        self.missing_fold_lines: list[int] = []
        """Official fold lines among the first `max_windows` of the split that this store lacks (a
        window the build rejected): the first N windows are then not the benchmark's first N."""
        if max_windows is not None:
            if int(max_windows) < 1:
                raise ValueError(f"max_windows must be >= 1 or None, got {max_windows}")
            if "fold_line" in index and not tiles:
                lines = index["fold_line"][rows].astype(np.int64)
                if lines.size and (lines >= 0).all():  # an official order: is its head complete?
                    have = set(lines.tolist())
                    self.missing_fold_lines = [k for k in range(int(max_windows)) if k not in have]
            if int(max_windows) < len(rows):
                # the benchmark validates on the first lines of its (shuffled) val fold list
                rows, official = fold_order(index, rows)
                if not official:
                    log.info(
                        "%s: split %r has no complete official fold order (index fold_line); "
                        "using the first %d windows in (tile, y0, x0) order", where, split, int(max_windows),
                    )  # fmt: skip
                rows = rows[: int(max_windows)]
        self.split = split
        self.rows = rows.astype(np.int64)
        self.tile_ids = list(index["tile"][rows])  # tile ids (the group keys): int, or names
        named = bool(self.tile_ids) and isinstance(self.tile_ids[0], str)
        ordinal = {t: i for i, t in enumerate(st.tiles)}
        # provenance columns are int64: a named tile is given as its position in the store's tiles
        self.tile = np.asarray([ordinal[t] if named else int(t) for t in self.tile_ids], np.int64)
        self.y0 = index["y0"][rows].astype(np.int64)
        self.x0 = index["x0"][rows].astype(np.int64)
        slots = [st.shift_slot(m, self.scale) for m in names]
        self.shift = np.stack([index["shift"][rows, i, k, :] for i, k in slots], 1).astype(np.int64)
        self.cache_bytes = int(cache_bytes)
        self.preload = preload
        self._report_stats = False
        self.raw = False
        self._reader: ChunkReader | None = None
        self._pid: int | None = None
        self._stats_seen = 0

    # -- process-local state --------------------------------------------------------------------
    def __getstate__(self) -> dict[str, Any]:
        state = dict(self.__dict__)
        state["_reader"], state["_pid"], state["_stats_seen"] = None, None, 0
        return state

    def _open(self) -> ChunkReader:
        if self._reader is None or self._pid != os.getpid():
            import torch.utils.data

            if torch.utils.data.get_worker_info() is not None:
                import cv2

                cv2.setNumThreads(1)
            root = Store.open(self.path).root
            self._reader = ChunkReader(root, ArrayLRU(self.cache_bytes), where=self.path)
            self._pid, self._stats_seen = os.getpid(), 0
            if self.preload is True or (
                self.preload == "auto" and self.split_bytes() <= self.cache_bytes // 2
            ):
                self.warm()
        return self._reader

    def _boxes(self) -> list[tuple[int, int, int, int, int]]:
        """Per tile of the split: ``(tile, y0, y1, x0, x1)`` HR bounding box of its windows."""
        out, size = [], self.geometry.size
        for t in np.unique(self.tile):
            sel = self.tile == t
            y0, x0 = int(self.y0[sel].min()), int(self.x0[sel].min())
            tid = self.tile_ids[int(np.flatnonzero(sel)[0])]
            out.append((tid, y0, int(self.y0[sel].max()) + size, x0, int(self.x0[sel].max()) + size))
        return out

    def split_bytes(self) -> int:
        """Bytes `warm` would cache: HR (C channels) + ROI + LR over each tile's window bounding box."""
        c, s = len(self.channels), self.scale
        return int(sum((y1 - y0) * (x1 - x0) * (c + 1 + c / s**2) for _, y0, y1, x0, x1 in self._boxes()))

    def warm(self) -> int:
        """Decode every block under the split's windows into this process's cache, before any batch.

        One chunk-aligned zarr call per tile and array (HR, ROI, LR) instead of one per window on
        first visit. Called by `_open` when ``preload`` is True, or ``"auto"`` and `split_bytes`
        fits half the cache budget. Returns the blocks decoded (cached ones are not decoded again).
        """
        reader, s, n, m = self._open(), self.scale, 0, self.geometry.margin
        for t, y0, y1, x0, x1 in self._boxes():
            n += reader.prefetch(image_path(t, 1), self.channels, y0 + m, y1 - m, x0 + m, x1 - m)
            n += reader.prefetch(self._roi_array(t), None, y0 + m, y1 - m, x0 + m, x1 - m)
            for c in self.channels:
                n += reader.prefetch(image_path(t, s), (c,), y0 // s, y1 // s, x0 // s, x1 // s)
        log.debug("%s: preloaded %d blocks of split %r (pid %d)", self.path, n, self.split, os.getpid())
        return n

    def close(self) -> None:
        """Drop the store handle and the cache of this process."""
        self._reader, self._pid = None, None

    @property
    def cache(self) -> ArrayLRU | None:
        """This process's cache (None before the first read)."""
        return None if self._reader is None else self._reader.cache

    def __len__(self) -> int:
        return len(self.rows)

    # -- patch reads (HR pixels inside the 512² patch unless named) ----------------------------
    def _hr(self, k: int, y: int, x: int, h: int) -> np.ndarray:
        m = self.geometry.margin
        ty, tx = self.y0[k] + m + y, self.x0[k] + m + x
        return self._open().region(image_path(self.tile_ids[k], 1), self.channels, ty, ty + h, tx, tx + h)

    def _roi_array(self, tile: int) -> str:
        """Path of a tile's ROI mask level 0 in this store's format version."""
        return roi_path(tile, format_version=self.format_version)

    def _roi(self, k: int, y: int, x: int, h: int) -> np.ndarray:
        m = self.geometry.margin
        ty, tx = self.y0[k] + m + y, self.x0[k] + m + x
        return self._open().region(self._roi_array(self.tile_ids[k]), None, ty, ty + h, tx, tx + h)

    def _lr_patch(self, k: int) -> np.ndarray:
        """(C, 512/s, 512/s) uint8 registered LR patch (rule of `srcaco2.srdata.schema.read_lr_patch`),
        cached."""
        reader = self._open()
        key = ("lrp", k)
        got = reader.cache.get(key)
        if got is not None:
            return got
        geo = self.geometry
        s, n, win = self.scale, geo.patch // self.scale, geo.size // self.scale
        wy, wx = self.y0[k] // s, self.x0[k] // s
        out = np.zeros((len(self.channels), n, n), dtype=self.dtype)
        path = image_path(self.tile_ids[k], s)
        for i, c in enumerate(self.channels):
            dy, dx = self.shift[k, i, 0], self.shift[k, i, 1]
            oy, ox = lr_patch_origin(self.y0[k], self.x0[k], dy, dx, s, margin=geo.margin)
            ys, ye = max(oy, wy), min(oy + n, wy + win)  # reads outside the 640/s window are 0
            xs, xe = max(ox, wx), min(ox + n, wx + win)
            if ye > ys and xe > xs:
                out[i, ys - oy : ye - oy, xs - ox : xe - ox] = reader.region(path, (c,), ys, ye, xs, xe)[0]
        return reader.cache.put(key, out)

    def _stats_delta(self) -> int:
        cache = self._open().cache
        delta = cache.bytes_decoded - self._stats_seen
        self._stats_seen = cache.bytes_decoded
        return delta

    def _finish(self, hr: np.ndarray, lr: np.ndarray, roi: np.ndarray, prov: np.ndarray) -> dict[str, Any]:
        out: dict[str, Any] = {
            "lr": lr,
            "hr": hr,
            "roi": roi != 0,
            "tile": prov[:, 0].copy(),
            "y0": prov[:, 1].copy(),
            "x0": prov[:, 2].copy(),
            "window": prov[:, 3].copy(),
        }
        if self._report_stats:
            out["_bytes_decoded"] = self._stats_delta()
        return out if self.raw else to_float(out, self.intensity)

    def __repr__(self) -> str:
        return (
            f"{type(self).__name__}({self.path!r}, split={self.split!r}, scale={self.scale}, "
            f"markers={self.markers}, windows={len(self)}, cache={self.cache!r})"
        )


class WindowDataset(_StoreDataset):
    """The split's windows as whole registered patches, in index order (evaluation).

    Parameters
    ----------
    store : path or URL of a store; split : ``"train" | "val" | "test"``; scale : 2, 4 or 8
    marker : str
        One marker (C = 1), ignored when `markers` is given (C = len(markers), in that order).
    max_windows : int, optional
        Keep only the first N windows of the split (the original validates on the first 128).
    cache_bytes : int
        Per-process cache budget.
    tiles : sequence of int, optional
        Keep only the windows of these tiles.
    preload : bool or ``"auto"``
        Fill the cache with the whole split (`warm`) when a process first opens the store; "auto"
        does it when `split_bytes` fits half of `cache_bytes`.

    ``ds[i]`` gives one sample: ``lr`` (C, 512/s, 512/s) and ``hr`` (C, 512, 512) float32 in [0, 1]
    (uint8 ÷ 255), ``roi`` (1, 512, 512) bool (the store ROI mask, 1 = cell), and ints ``tile``,
    ``y0``, ``x0`` (HR top-left of the patch in tile pixels) and ``window`` (index row).
    ``ds[[i, j, ...]]`` gives the same stacked as a batch, with (B,) int64 tensors.
    """

    def __getitem__(self, index: int | list[int] | tuple[int, ...]) -> dict[str, Any]:
        if isinstance(index, (list, tuple, np.ndarray)):
            return self._batch([int(i) for i in index])
        i = int(index)
        if not -len(self) <= i < len(self):
            raise IndexError(f"window {index} out of range for {len(self)} windows")
        b = self._batch([i % len(self)])
        b.pop("_bytes_decoded", None)
        return {k: (v[0] if v.ndim > 1 else int(v[0])) for k, v in b.items()}

    def _batch(self, ks: list[int]) -> dict[str, Any]:
        s, c, p, m = self.scale, len(self.channels), self.geometry.patch, self.geometry.margin
        hr = np.empty((len(ks), c, p, p), self.dtype)
        lr = np.empty((len(ks), c, p // s, p // s), self.dtype)
        roi = np.empty((len(ks), 1, p, p), np.uint8)
        prov = np.empty((len(ks), 4), np.int64)
        for b, k in enumerate(ks):
            hr[b] = self._hr(k, 0, 0, p)
            lr[b] = self._lr_patch(k)
            roi[b] = self._roi(k, 0, 0, p)
            prov[b] = (self.tile[k], self.y0[k] + m, self.x0[k] + m, self.rows[k])
        return self._finish(hr, lr, roi, prov)


class CropDataset(_StoreDataset):
    """ROI-biased random crops (docs/protocol.md#training-crops), addressed by ``(epoch, [global
    positions])``.

    Parameters
    ----------
    store, split, scale, marker, markers, max_windows, cache_bytes
        As `WindowDataset`.
    h_size : int
        HR crop side, a multiple of `scale`, below 512.
    n_total : int
        Positions per epoch over all ranks (the plan length).
    seed : int
    aligned : bool
        True: top-left a multiple of s, LR crop at (y0/s, x0/s). False: the original's any
        y0, x0 with LR at (⌊y0/s⌋, ⌊x0/s⌋) (LR/HR misaligned by y0 mod s, x0 mod s).
    roi_bias : bool
        Weights ``exp(5·ROI)+1`` at the crop centre (ROI = bicubic-upsampled LR ≥ `roi_threshold`,
        union over markers); False = uniform.
    augment : bool
        Same random dihedral transform (8 modes) on LR, HR and ROI.
    use_interpolated_low : bool
        LR synthesised from the HR patch (`srcaco2.srdata.transforms.interpolated_low`) with noise in its
        ROI from a per-sample generator (seed, epoch, position); the original reseeded with the
        window index instead. The ROI-threshold check of `make_loader` is skipped then.
    roi_threshold : int
        Raw uint8 level of the sampling ROI (docs/protocol.md#training-crops: 4).

    Notes
    -----
    ``ds[(epoch, [p, ...])]`` gives a batch (see `make_loader`); `sample` one crop as uint8. Each
    window's first visit decodes its whole 512² HR and ROI patch (one zarr call each) and builds
    its crop CDF; later crops of it are slices of cached blocks. Sample ``p`` of ``epoch`` is a pure
    function of (seed, epoch, p) and the store: worker count and rank do not change it.
    """

    def __init__(
        self,
        store: str | os.PathLike,
        split: str,
        scale: int,
        marker: str | None = "CELL2",
        *,
        h_size: int,
        n_total: int | None = None,
        seed: int = 0,
        aligned: bool = True,
        roi_bias: bool = True,
        augment: bool = True,
        use_interpolated_low: bool = False,
        roi_threshold: int = 4,
        **kwargs: Any,
    ) -> None:
        h = int(h_size)
        super().__init__(store, split, scale, marker, **kwargs)
        P = self.geometry.patch
        if h <= 0 or h % int(scale) or h > P:
            raise ValueError(
                f"h_size={h_size} must be a positive multiple of scale={scale} and at most "
                f"{P}; e.g. h_size={max(int(scale), min(P, h) // int(scale) * int(scale))}"
            )
        if h >= P:
            raise ValueError(
                f"h_size={h} leaves no crop position in a {P}² patch (top-left range "
                f"[0, {P} - h_size - 1]); use h_size < {P} or mode='eval'"
            )
        self.h_size, self.seed, self.aligned = h, int(seed), bool(aligned)
        self.roi_bias, self.augment, self.interp = bool(roi_bias), bool(augment), bool(use_interpolated_low)
        self.roi_threshold = int(roi_threshold)
        self.n_total = len(self) if n_total is None else int(n_total)
        self.positions = samplers.crop_positions(h, self.scale, aligned=self.aligned, patch_size=P)
        self._plans: dict[int, samplers.EpochPlan] = {}

    def __getstate__(self) -> dict[str, Any]:
        state = super().__getstate__()
        state["_plans"] = {}
        return state

    def plan(self, epoch: int) -> samplers.EpochPlan:
        """The epoch's plan (`srcaco2.srdata.samplers.epoch_plan`), cached for the last two epochs."""
        got = self._plans.get(epoch)
        if got is None:
            got = samplers.epoch_plan(len(self), self.n_total, self.seed, epoch)
            self._plans = {e: p for e, p in self._plans.items() if e >= epoch - 1}
            self._plans[epoch] = got
        return got

    def _lr_source(self, k: int) -> np.ndarray:
        if not self.interp:
            return self._lr_patch(k)
        cache = self._open().cache
        got = cache.get(("syn", k))
        if got is None:
            got = cache.put(
                ("syn", k), transforms.interpolated_low(self._hr(k, 0, 0, self.geometry.patch), self.scale)
            )
        return got

    def _cdf(self, k: int, lr: np.ndarray) -> np.ndarray:
        cache = self._open().cache
        got = cache.get(("cdf", k))
        if got is None:  # first visit of the window: decode its whole 512² HR and ROI patch once
            m, P = self.geometry.margin, self.geometry.patch
            reader, ty, tx = self._open(), int(self.y0[k]) + m, int(self.x0[k]) + m
            reader.prefetch(image_path(self.tile_ids[k], 1), self.channels, ty, ty + P, tx, tx + P)
            reader.prefetch(self._roi_array(self.tile_ids[k]), None, ty, ty + P, tx, tx + P)
            lr8 = self.intensity.to_uint8(lr, axis=0)  # the paper's threshold is in 8-bit grey levels
            roi_up = (
                samplers.upsampled_roi(lr8, threshold=self.roi_threshold, patch_size=P)
                if self.roi_bias
                else None
            )
            if roi_up is None:
                n = len(self.positions)
                w = np.ones((n, n))
            else:
                w = samplers.crop_weights(roi_up, self.h_size, self.scale, aligned=self.aligned)
            got = cache.put(("cdf", k), samplers.crop_cdf(w))
        return got

    def sample(self, epoch: int, position: int) -> tuple[np.ndarray, np.ndarray, np.ndarray, tuple[int, ...]]:
        """One crop as uint8 ``(hr (C,h,h), lr (C,h/s,h/s), roi (1,h,h), (tile, y0, x0, row))``.

        The arrays may be views (of a cached LR patch, or transformed): copy before writing.
        """
        plan = self.plan(epoch)
        if not 0 <= position < len(plan):
            raise IndexError(f"position {position} outside the epoch's {len(plan)} positions")
        k, s, h = int(plan.window[position]), self.scale, self.h_size
        lrp = self._lr_source(k)
        y, x = samplers.sample_crop(self._cdf(k, lrp), float(plan.u[position]), self.positions)
        hr, roi = self._hr(k, y, x, h), self._roi(k, y, x, h)
        lr = lrp[:, y // s : y // s + h // s, x // s : x // s + h // s]
        if self.interp:
            lr = transforms.add_roi_noise(lr, samplers.sample_rng(self.seed, epoch, position))
        if self.augment:
            mode = int(plan.mode[position])
            hr, lr, roi = (transforms.dihedral(a, mode, copy=False) for a in (hr, lr, roi))
        m = self.geometry.margin
        tile_y0, tile_x0 = int(self.y0[k]) + m + y, int(self.x0[k]) + m + x
        return hr, lr, roi, (int(self.tile[k]), tile_y0, tile_x0, int(self.rows[k]))

    def __getitem__(self, key: tuple[int, list[int]]) -> dict[str, Any]:
        epoch, positions = key
        s, c, h = self.scale, len(self.channels), self.h_size
        n = len(positions)
        hr = np.empty((n, c, h, h), self.dtype)
        lr = np.empty((n, c, h // s, h // s), self.dtype)
        roi = np.empty((n, 1, h, h), np.uint8)
        prov = np.empty((n, 4), np.int64)
        for b, p in enumerate(positions):
            hr[b], lr[b], roi[b], prov[b] = self.sample(int(epoch), int(p))
        return self._finish(hr, lr, roi, prov)
