"""Streaming loader: aligned LR/HR (and ROI) crops of a store's windows as torch batches.

Two map-style datasets read a store (DESIGN.md, "The store contract") through a per-worker
`srdata.cache.ChunkReader`: `WindowDataset` gives whole registered 512² windows (evaluation),
`CropDataset` gives ROI-biased random crops (training, SPEC.md §3.3). Both index the accepted rows
of one split in index order, and both are small and picklable: the constructor reads the index
(numpy columns) and closes nothing it keeps; the store is opened lazily in whichever process reads
pixels, and reopened after a fork (``_open`` remembers the pid). `make_loader` wraps them in a
torch DataLoader whose sampler emits whole-batch keys ``(epoch, global positions)``, so every
sample is a pure function of ``(seed, epoch, global position)``: batches do not depend on the
number of workers, and resume is "skip the batches already done".

Example
-------
>>> loader = make_loader("caco2.zarr", "train", 4, "CELL2", 8, 128)      # doctest: +SKIP
>>> for epoch in range(3):                                               # doctest: +SKIP
...     loader.set_epoch(epoch)
...     for batch in loader:
...         lr, hr = batch["lr"], batch["hr"]     # (8, 1, 32, 32), (8, 1, 128, 128) float32 in [0, 1]
"""

from __future__ import annotations

import logging
import math
import os
from typing import Any, Literal

import numpy as np

from srdata import samplers, transforms
from srdata.cache import DEFAULT_CACHE_BYTES, ArrayLRU, ChunkReader
from srdata.schema import (
    MARGIN,
    MARKERS,
    PATCH_SIZE,
    SCALES,
    SPLITS,
    WINDOW_SIZE,
    StoreFormatError,
    image_path,
    lr_patch_origin,
    open_root,
    read_attrs,
    read_index,
    roi_path,
    split_code,
)

__all__ = ["WindowDataset", "CropDataset", "PatchLoader", "make_loader"]

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
    ) -> None:
        self.path = os.fspath(store)
        where = self.path
        root = open_root(self.path, "r") if os.path.exists(self.path) or "://" in self.path else None
        if root is None:
            raise StoreFormatError(f"{where}: no store at this path; build one with `srdata build RAW STORE`")
        attrs = read_attrs(root, where=where)
        index = read_index(root, where=where)
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
        code = split_code(split)
        keep = index["accepted"] & (index["split"] == code)
        rows = np.flatnonzero(keep)
        if len(rows) == 0:
            counts = {s: int((index["accepted"] & (index["split"] == i)).sum()) for i, s in enumerate(SPLITS)}
            raise ValueError(
                f"{where}: split {split!r} has no accepted window (accepted windows per split: "
                f"{counts}); choose another split or rebuild the index"
            )
        if max_windows is not None:
            if int(max_windows) < 1:
                raise ValueError(f"max_windows must be >= 1 or None, got {max_windows}")
            rows = rows[: int(max_windows)]
        self.split = split
        self.rows = rows.astype(np.int64)
        self.tile = index["tile"][rows].astype(np.int64)
        self.y0 = index["y0"][rows].astype(np.int64)
        self.x0 = index["x0"][rows].astype(np.int64)
        si = SCALES.index(self.scale)
        self.shift = np.stack([index["shift"][rows, MARKERS.index(m), si, :] for m in names], 1).astype(
            np.int64
        )
        self.cache_bytes = int(cache_bytes)
        self._report_stats = False
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
            root = open_root(self.path, "r")
            self._reader = ChunkReader(root, ArrayLRU(self.cache_bytes), where=self.path)
            self._pid, self._stats_seen = os.getpid(), 0
        return self._reader

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
        ty, tx = self.y0[k] + MARGIN + y, self.x0[k] + MARGIN + x
        return self._open().region(image_path(self.tile[k], 1), self.channels, ty, ty + h, tx, tx + h)

    def _roi(self, k: int, y: int, x: int, h: int) -> np.ndarray:
        ty, tx = self.y0[k] + MARGIN + y, self.x0[k] + MARGIN + x
        return self._open().region(roi_path(self.tile[k]), None, ty, ty + h, tx, tx + h)

    def _lr_patch(self, k: int) -> np.ndarray:
        """(C, 512/s, 512/s) uint8 registered LR patch (rule of `srdata.schema.read_lr_patch`), cached."""
        reader = self._open()
        key = ("lrp", k)
        got = reader.cache.get(key)
        if got is not None:
            return got
        s, n, win = self.scale, PATCH_SIZE // self.scale, WINDOW_SIZE // self.scale
        wy, wx = self.y0[k] // s, self.x0[k] // s
        out = np.zeros((len(self.channels), n, n), dtype=np.uint8)
        path = image_path(self.tile[k], s)
        for i, c in enumerate(self.channels):
            oy, ox = lr_patch_origin(self.y0[k], self.x0[k], self.shift[k, i, 0], self.shift[k, i, 1], s)
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
        import torch

        # numpy, single-threaded: torch's intra-op pool is slow for these small ops on busy CPUs;
        # float32 division by 255 is correctly rounded in both, so values equal torch's.
        out = {
            "lr": torch.from_numpy(np.divide(lr, np.float32(255), dtype=np.float32)),
            "hr": torch.from_numpy(np.divide(hr, np.float32(255), dtype=np.float32)),
            "roi": torch.from_numpy(roi != 0),
            "tile": torch.from_numpy(prov[:, 0].copy()),
            "y0": torch.from_numpy(prov[:, 1].copy()),
            "x0": torch.from_numpy(prov[:, 2].copy()),
            "window": torch.from_numpy(prov[:, 3].copy()),
        }
        if self._report_stats:
            out["_bytes_decoded"] = self._stats_delta()
        return out

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
        s, c = self.scale, len(self.channels)
        hr = np.empty((len(ks), c, PATCH_SIZE, PATCH_SIZE), np.uint8)
        lr = np.empty((len(ks), c, PATCH_SIZE // s, PATCH_SIZE // s), np.uint8)
        roi = np.empty((len(ks), 1, PATCH_SIZE, PATCH_SIZE), np.uint8)
        prov = np.empty((len(ks), 4), np.int64)
        for b, k in enumerate(ks):
            hr[b] = self._hr(k, 0, 0, PATCH_SIZE)
            lr[b] = self._lr_patch(k)
            roi[b] = self._roi(k, 0, 0, PATCH_SIZE)
            prov[b] = (self.tile[k], self.y0[k] + MARGIN, self.x0[k] + MARGIN, self.rows[k])
        return self._finish(hr, lr, roi, prov)


class CropDataset(_StoreDataset):
    """ROI-biased random crops (SPEC.md §3.3), addressed by ``(epoch, [global positions])``.

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
        LR synthesised from the HR patch (`srdata.transforms.interpolated_low`) with noise in its
        ROI from a per-sample generator (seed, epoch, position); the original reseeded with the
        window index instead. The ROI-threshold check of `make_loader` is skipped then.
    roi_threshold : int
        Raw uint8 level of the sampling ROI (SPEC: 4).

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
        if h <= 0 or h % int(scale) or h > PATCH_SIZE:
            raise ValueError(
                f"h_size={h_size} must be a positive multiple of scale={scale} and at most "
                f"{PATCH_SIZE}; e.g. h_size={max(int(scale), min(PATCH_SIZE, h) // int(scale) * int(scale))}"
            )
        if h >= PATCH_SIZE:
            raise ValueError(
                f"h_size={h} leaves no crop position in a {PATCH_SIZE}² patch (top-left range "
                f"[0, {PATCH_SIZE} - h_size - 1]); use h_size < {PATCH_SIZE} or mode='eval'"
            )
        super().__init__(store, split, scale, marker, **kwargs)
        self.h_size, self.seed, self.aligned = h, int(seed), bool(aligned)
        self.roi_bias, self.augment, self.interp = bool(roi_bias), bool(augment), bool(use_interpolated_low)
        self.roi_threshold = int(roi_threshold)
        self.n_total = len(self) if n_total is None else int(n_total)
        self.positions = samplers.crop_positions(h, self.scale, aligned=self.aligned)
        self._plans: dict[int, samplers.EpochPlan] = {}

    def __getstate__(self) -> dict[str, Any]:
        state = super().__getstate__()
        state["_plans"] = {}
        return state

    def plan(self, epoch: int) -> samplers.EpochPlan:
        """The epoch's plan (`srdata.samplers.epoch_plan`), cached for the last two epochs."""
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
                ("syn", k), transforms.interpolated_low(self._hr(k, 0, 0, PATCH_SIZE), self.scale)
            )
        return got

    def _cdf(self, k: int, lr: np.ndarray) -> np.ndarray:
        cache = self._open().cache
        got = cache.get(("cdf", k))
        if got is None:  # first visit of the window: decode its whole 512² HR and ROI patch once
            reader, ty, tx = self._open(), int(self.y0[k]) + MARGIN, int(self.x0[k]) + MARGIN
            reader.prefetch(
                image_path(self.tile[k], 1), self.channels, ty, ty + PATCH_SIZE, tx, tx + PATCH_SIZE
            )
            reader.prefetch(roi_path(self.tile[k]), None, ty, ty + PATCH_SIZE, tx, tx + PATCH_SIZE)
            roi_up = samplers.upsampled_roi(lr, threshold=self.roi_threshold) if self.roi_bias else None
            if roi_up is None:
                n = len(self.positions)
                w = np.ones((n, n))
            else:
                w = samplers.crop_weights(roi_up, self.h_size, self.scale, aligned=self.aligned)
            got = cache.put(("cdf", k), samplers.crop_cdf(w))
        return got

    def centre_max(self, k: int) -> int:
        """Max of the bicubic-upsampled LR (all markers) over the allowed crop centres of window k."""
        import cv2

        c = self.positions + self.h_size // 2
        m = 0
        for plane in self._lr_patch(k):
            up = cv2.resize(plane, (PATCH_SIZE, PATCH_SIZE), interpolation=cv2.INTER_CUBIC)
            m = max(m, int(up[np.ix_(c, c)].max()))
        return m

    def roi_window_counts(self, thresholds: range = range(1, 11)) -> dict[int, int]:
        """Windows of the split having at least one ROI crop centre, per threshold (reads all LR)."""
        reader = self._open()
        s, win = self.scale, WINDOW_SIZE // self.scale
        for t in np.unique(self.tile):  # one zarr call per tile and marker
            sel = self.tile == t
            ys, xs = self.y0[sel] // s, self.x0[sel] // s
            path = image_path(int(t), s)
            for c in self.channels:
                reader.prefetch(
                    path, (c,), int(ys.min()), int(ys.max()) + win, int(xs.min()), int(xs.max()) + win
                )
        maxima = np.array([self.centre_max(k) for k in range(len(self))])
        return {int(t): int((maxima >= t).sum()) for t in thresholds}

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
        tile_y0, tile_x0 = int(self.y0[k]) + MARGIN + y, int(self.x0[k]) + MARGIN + x
        return hr, lr, roi, (int(self.tile[k]), tile_y0, tile_x0, int(self.rows[k]))

    def __getitem__(self, key: tuple[int, list[int]]) -> dict[str, Any]:
        epoch, positions = key
        s, c, h = self.scale, len(self.channels), self.h_size
        n = len(positions)
        hr = np.empty((n, c, h, h), np.uint8)
        lr = np.empty((n, c, h // s, h // s), np.uint8)
        roi = np.empty((n, 1, h, h), np.uint8)
        prov = np.empty((n, 4), np.int64)
        for b, p in enumerate(positions):
            hr[b], lr[b], roi[b], prov[b] = self.sample(int(epoch), int(p))
        return self._finish(hr, lr, roi, prov)


class _KeySampler:
    """Yields one key per batch: ``(epoch, [positions])`` (train) or ``[positions]`` (eval)."""

    def __init__(self, positions: np.ndarray, batch_size: int, drop_last: bool, train: bool) -> None:
        self.positions, self.batch_size, self.train = positions, int(batch_size), train
        n = len(positions)
        self.n_batches = n // self.batch_size if drop_last else math.ceil(n / self.batch_size)
        self.epoch = 0
        self.start = 0

    def __len__(self) -> int:
        return self.n_batches - self.start

    def __iter__(self):  # noqa: ANN204 - torch Sampler protocol
        epoch, bs = self.epoch, self.batch_size
        for b in range(self.start, self.n_batches):
            pos = [int(p) for p in self.positions[b * bs : (b + 1) * bs]]
            yield (epoch, pos) if self.train else pos


class PatchLoader:
    """A torch DataLoader over whole-batch keys, with epochs, resume and decode statistics.

    Iterate it for batch dicts (see `make_loader`). The stream changes only through `set_epoch`;
    iterating again without it replays the same epoch (or finishes it after `load_state_dict`).
    Workers are persistent, so each keeps its cache across epochs.
    """

    def __init__(
        self,
        dataset: WindowDataset | CropDataset,
        positions: np.ndarray,
        *,
        batch_size: int,
        drop_last: bool,
        seed: int,
        rank: int,
        world_size: int,
        num_workers: int = 0,
        multiprocessing_context: Any = None,
        pin_memory: bool = False,
    ) -> None:
        self.dataset = dataset
        self.train = isinstance(dataset, CropDataset)
        self.batch_size, self.seed, self.rank, self.world_size = int(batch_size), int(seed), rank, world_size
        self.num_workers = int(num_workers)
        self._sampler = _KeySampler(positions, batch_size, drop_last, self.train)
        self._dl_kwargs = dict(
            num_workers=self.num_workers,
            pin_memory=pin_memory,
            multiprocessing_context=multiprocessing_context if self.num_workers else None,
            persistent_workers=self.num_workers > 0,
        )
        self._dl: Any = None
        self.epoch = 0
        self.batches_done = 0
        self.samples_seen = 0
        self.bytes_decoded = 0

    def __len__(self) -> int:
        return self._sampler.n_batches

    def set_epoch(self, epoch: int) -> None:
        """Select the epoch's stream; a different epoch restarts at its first batch."""
        if int(epoch) != self.epoch:
            self.epoch, self.batches_done = int(epoch), 0

    def __iter__(self):  # noqa: ANN204
        import torch.utils.data

        if self._dl is None:
            self.dataset._report_stats = True
            self._dl = torch.utils.data.DataLoader(
                self.dataset, batch_size=None, sampler=self._sampler, **self._dl_kwargs
            )
        if not 0 < self.batches_done < len(self):
            self.batches_done = 0
        self._sampler.epoch, self._sampler.start = self.epoch, self.batches_done
        for batch in self._dl:
            self.bytes_decoded += int(batch.pop("_bytes_decoded", 0))
            self.samples_seen += int(batch["hr"].shape[0])
            self.batches_done += 1
            yield batch

    @property
    def bytes_decoded_per_sample(self) -> float:
        """Bytes decoded from the store per sample delivered so far (all workers; 0 before any)."""
        return self.bytes_decoded / self.samples_seen if self.samples_seen else 0.0

    def state_dict(self) -> dict[str, Any]:
        """Plain-python resume state: the next batches after `load_state_dict` equal the remaining ones."""
        return {
            "epoch": self.epoch,
            "batches_done": self.batches_done,
            "seed": self.seed,
            "n_batches": len(self),
            "batch_size": self.batch_size,
            "rank": self.rank,
            "world_size": self.world_size,
            "train": self.train,
            "n_total": getattr(self.dataset, "n_total", len(self.dataset)),
        }

    def load_state_dict(self, state: dict[str, Any]) -> None:
        """Restore epoch and position; refuses a state from a loader with other settings."""
        mine = self.state_dict()
        for key in ("seed", "n_batches", "batch_size", "rank", "world_size", "train", "n_total"):
            if key in state and state[key] != mine[key]:
                raise ValueError(
                    f"loader state has {key}={state[key]!r} but this loader has {mine[key]!r}; "
                    "rebuild the loader with the settings of the saved run before resuming"
                )
        self.epoch, self.batches_done = int(state["epoch"]), int(state["batches_done"])

    def __repr__(self) -> str:
        return (
            f"PatchLoader({self.dataset!r}, batches={len(self)}, batch_size={self.batch_size}, "
            f"workers={self.num_workers}, rank={self.rank}/{self.world_size}, epoch={self.epoch}, "
            f"batches_done={self.batches_done})"
        )


def make_loader(
    store: str | os.PathLike,
    split: str = "train",
    scale: int = 4,
    marker: str = "CELL2",
    batch_size: int = 8,
    h_size: int = 128,
    *,
    mode: Literal["train", "eval"] = "train",
    num_workers: int = 0,
    seed: int = 0,
    rank: int = 0,
    world_size: int = 1,
    samples_per_epoch: int | None = None,
    roi_bias: bool = True,
    aligned: bool = True,
    augment: bool = True,
    use_interpolated_low: bool = False,
    max_windows: int | None = None,
    markers: list[str] | None = None,
    multiprocessing_context: Any = None,
    pin_memory: bool = False,
    drop_last: bool | None = None,
    roi_threshold: int = 4,
    cache_bytes: int = DEFAULT_CACHE_BYTES,
) -> PatchLoader:
    """Loader of LR/HR/ROI batches from a store's split.

    Parameters
    ----------
    store : path or URL of a store built by `srdata build`
    split, scale, marker : the data (``markers=[...]`` instead of `marker` gives C channels)
    batch_size : int
        Samples per batch (per rank).
    h_size : int
        HR crop side (train), multiple of `scale`, < 512. Ignored in eval (whole 512² patches).
    mode : ``"train"`` random ROI-biased crops (`CropDataset`) | ``"eval"`` the split's windows in
        index order (`WindowDataset`), no augmentation.
    num_workers, multiprocessing_context, pin_memory : as torch's DataLoader (persistent workers).
    seed, rank, world_size : every sample depends on (seed, epoch, global position) only. Train:
        ``T = ceil(samples_per_epoch / world_size)·world_size`` positions (≤ world_size − 1 extra,
        fresh samples), rank r takes ``r, r + W, ...``: equal shards, disjoint, together all T.
        Eval: rank r takes windows ``r, r + W, ...`` (no padding, no duplicates; shards differ by ≤ 1).
    samples_per_epoch : int, optional
        Train positions per epoch over all ranks; default the number of windows of the split.
    roi_bias, aligned, augment, use_interpolated_low, roi_threshold : see `CropDataset`.
    max_windows : int, optional
        Keep the first N windows of the split.
    drop_last : bool, optional
        Default ``mode == "train"``.
    cache_bytes : int
        Decoded-chunk cache budget per worker process.

    Returns
    -------
    PatchLoader
        Batches: ``lr`` (B, C, h/s, h/s), ``hr`` (B, C, h, h) float32 in [0, 1]; ``roi`` (B, 1, h, h)
        bool; ``tile``, ``y0``, ``x0`` (HR top-left of the HR crop, tile pixels), ``window`` (index
        row), each (B,) int64. Eval: h = 512.

    Raises
    ------
    StoreFormatError
        No store, no complete index, other format version, a damaged chunk (raised by the worker).
    ValueError
        Unknown split/scale/marker, bad h_size, a `roi_threshold` under which no window of the split
        has an ROI crop centre (the message lists how many windows thresholds 1..10 would keep).
    """
    if mode not in ("train", "eval"):
        raise ValueError(f"mode must be 'train' or 'eval', got {mode!r}")
    if batch_size < 1:
        raise ValueError(f"batch_size must be >= 1, got {batch_size}")
    if int(scale) not in SCALES:
        raise ValueError(f"scale must be one of {list(SCALES)}, got {scale!r}")
    common = dict(markers=markers, max_windows=max_windows, cache_bytes=cache_bytes)
    if mode == "eval":
        ds: WindowDataset | CropDataset = WindowDataset(store, split, scale, marker, **common)
        positions = samplers.shard_positions(len(ds), rank, world_size, pad=False)
    else:
        ds = CropDataset(
            store,
            split,
            scale,
            marker,
            h_size=h_size,
            seed=seed,
            aligned=aligned,
            roi_bias=roi_bias,
            augment=augment,
            use_interpolated_low=use_interpolated_low,
            roi_threshold=roi_threshold,
            **common,
        )
        n = len(ds) if samples_per_epoch is None else int(samples_per_epoch)
        if n < 1:
            raise ValueError(f"samples_per_epoch must be >= 1, got {samples_per_epoch}")
        positions = samplers.shard_positions(n, rank, world_size, pad=True)
        ds.n_total = len(positions) * world_size
        if roi_bias and not use_interpolated_low:
            counts = ds.roi_window_counts()
            keep = counts.get(roi_threshold)
            if keep is None:
                keep = ds.roi_window_counts(range(roi_threshold, roi_threshold + 1))[roi_threshold]
            if keep == 0:
                raise ValueError(
                    f"{ds.path}: roi_threshold={roi_threshold} leaves no window of split={split!r} "
                    f"(scale={scale}, markers={ds.markers}, h_size={h_size}) with an ROI crop centre "
                    f"(bicubic-upsampled LR >= threshold); windows kept per threshold: {counts}. "
                    "Lower roi_threshold or pass roi_bias=False"
                )
        ds.close()  # nothing opened in this process travels to the workers
    if drop_last is None:
        drop_last = mode == "train"
    loader = PatchLoader(
        ds,
        positions,
        batch_size=batch_size,
        drop_last=drop_last,
        seed=seed,
        rank=rank,
        world_size=world_size,
        num_workers=num_workers,
        multiprocessing_context=multiprocessing_context,
        pin_memory=pin_memory,
    )
    if len(loader) == 0:
        raise ValueError(
            f"{ds.path}: {len(positions)} samples per rank give no full batch of {batch_size} "
            "with drop_last; lower batch_size, raise samples_per_epoch or pass drop_last=False"
        )
    return loader
