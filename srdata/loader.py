"""Streaming loader: aligned LR/HR (and ROI) crops of a store's windows as torch batches.

`make_loader` wraps a dataset of `srcaco2.srdata.datasets` (`WindowDataset` for evaluation, `CropDataset`
for training) in a torch DataLoader whose sampler emits whole-batch keys ``(epoch, global
positions)``, so every sample is a pure function of ``(seed, epoch, global position)``: batches do
not depend on the number of workers, and resume is "skip the batches already done".

What crosses the worker -> main process boundary is kept small: a worker returns one batch per
key as numpy uint8 ``lr``/``hr``, bool ``roi`` and int64 provenance (pickled by value through the
worker's pipe, no shared-memory segment per tensor); `PatchLoader` converts to float32 ÷ 255 in
the main process (bit-identical to converting in the worker).

Example
-------
>>> loader = make_loader("caco2.zarr", "train", 4, "CELL2", 8, 128)      # doctest: +SKIP
>>> for epoch in range(3):                                               # doctest: +SKIP
...     loader.set_epoch(epoch)
...     for batch in loader:
...         lr, hr = batch["lr"], batch["hr"]     # (8, 1, 32, 32), (8, 1, 128, 128) float32 in [0, 1]
"""

from __future__ import annotations

import dataclasses
import logging
import math
import os
from typing import Any, Literal

import numpy as np

from srcaco2.srdata import samplers
from srcaco2.srdata.cache import DEFAULT_CACHE_BYTES
from srcaco2.srdata.datasets import CropDataset, WindowDataset
from srcaco2.srdata.schema import SCALE_RANGE
from srcaco2.srdata.store import image_path
from srcaco2.srdata.transforms import to_float

__all__ = ["WindowDataset", "CropDataset", "PatchLoader", "LoaderSettings", "make_loader"]

log = logging.getLogger(__name__)


@dataclasses.dataclass(frozen=True)
class LoaderSettings:
    """How `make_loader` reads and samples a split: everything but the data's identity and the run's seed.

    One object, embedded as is in ``srcaco2.trainers.config.DataConfig.loader`` (so ``srtrain fit --set
    data.loader.num_workers=4`` reaches the loader without a re-declared copy); `make_loader`
    also takes each field as a keyword.

    Attributes
    ----------
    num_workers : int
        DataLoader worker processes (0 = in the main process); workers are persistent.
    pin_memory : bool
        Page-locked batches when CUDA is available, so that ``.to(cuda, non_blocking=True)`` copies
        overlap with compute (ignored without CUDA).
    prefetch_factor : int or None
        Batches loaded in advance by each worker (torch's default 2 when None).
    cache_bytes : int
        Decoded-chunk cache budget per worker process, bytes.
    preload : bool or ``"auto"``
        Each worker decodes the whole split into its cache (one chunk-aligned read per tile and
        array) before its first batch, instead of window by window during the first epoch;
        ``"auto"`` when the split fits half of `cache_bytes` (`WindowDataset.split_bytes`). Batches
        are identical either way.
    worker_transfer : ``"uint8"`` | ``"float32"``
        What a batch is while it crosses from a worker to the main process: numpy uint8 pixels
        converted to float32 in the main process (4× fewer bytes), or float32 tensors made in the
        worker (the previous transport, kept for comparison). The batches are identical.
    samples_per_epoch : int or None
        Train crops per epoch over all ranks; None = one per training window (the original's epoch).
    roi_bias : bool
        ROI-biased crop sampling (weights from the bicubic-upsampled LR >= `roi_threshold`).
    roi_threshold : int
        Intensity threshold (uint8 LR levels) of the sampling ROI (4 in the paper).
    aligned : bool
        Pixel-aligned LR/HR crops (True); False reproduces the original's ``x0 mod s`` offset.
    augment : bool
        Random paired dihedral transforms (train).
    use_interpolated_low : bool
        Synthesise LR from HR (off in the benchmark).

    Examples
    --------
    >>> s = LoaderSettings(num_workers=4, preload="auto")
    >>> s.num_workers, s.roi_threshold, s.pin_memory
    (4, 4, True)
    >>> LoaderSettings(num_workers=-1)
    Traceback (most recent call last):
    ...
    ValueError: num_workers=-1 must be >= 0 (0 = load in the main process)
    """

    num_workers: int = 0
    pin_memory: bool = True
    prefetch_factor: int | None = None
    cache_bytes: int = DEFAULT_CACHE_BYTES
    preload: bool | Literal["auto"] = False
    worker_transfer: Literal["uint8", "float32"] = "uint8"
    samples_per_epoch: int | None = None
    roi_bias: bool = True
    roi_threshold: int = 4
    aligned: bool = True
    augment: bool = True
    use_interpolated_low: bool = False

    def __post_init__(self) -> None:
        if self.num_workers < 0:
            raise ValueError(f"num_workers={self.num_workers} must be >= 0 (0 = load in the main process)")
        if self.prefetch_factor is not None and self.prefetch_factor < 1:
            raise ValueError(f"prefetch_factor={self.prefetch_factor} must be >= 1 or None (torch's default)")
        if self.cache_bytes < 0:
            raise ValueError(f"cache_bytes={self.cache_bytes} must be >= 0")
        if self.preload not in (True, False, "auto"):
            raise ValueError(f"preload must be True, False or 'auto', got {self.preload!r}")
        if self.worker_transfer not in ("uint8", "float32"):
            raise ValueError(f"worker_transfer must be 'uint8' or 'float32', got {self.worker_transfer!r}")
        if self.samples_per_epoch is not None and self.samples_per_epoch < 1:
            raise ValueError(f"samples_per_epoch must be >= 1, got {self.samples_per_epoch}")
        if int(self.roi_threshold) < 0:
            raise ValueError(
                f"roi_threshold={self.roi_threshold} must be >= 0 (8-bit LR levels; benchmark: 4)"
            )

    @classmethod
    def field_names(cls) -> tuple[str, ...]:
        """The settings' names (also `make_loader`'s keywords for them)."""
        return tuple(f.name for f in dataclasses.fields(cls))


def _roi_window_counts(ds: CropDataset, thresholds: range = range(1, 11)) -> dict[int, int]:
    """Windows of the split having at least one ROI crop centre, per threshold (reads all LR).

    The ROI of a window is its bicubic-upsampled registered LR patch (all markers) read at the
    allowed crop centres; a threshold keeps the window when that maximum reaches it.
    """
    import cv2

    reader, s = ds._open(), ds.scale
    for t, y0, y1, x0, x1 in ds._boxes():  # one zarr call per tile and marker
        for c in ds.channels:
            reader.prefetch(image_path(t, s), (c,), y0 // s, y1 // s, x0 // s, x1 // s)
    centres = ds.positions + ds.h_size // 2
    maxima = np.zeros(len(ds), dtype=np.int64)
    P = ds.geometry.patch
    for k in range(len(ds)):
        for plane in ds.intensity.to_uint8(ds._lr_patch(k), axis=0):
            up = cv2.resize(plane, (P, P), interpolation=cv2.INTER_CUBIC)
            maxima[k] = max(maxima[k], int(up[np.ix_(centres, centres)].max()))
    return {int(t): int((maxima >= t).sum()) for t in thresholds}


def _can_pin() -> bool:
    import torch

    return bool(torch.cuda.is_available())


def _identity(batch: Any) -> Any:
    """collate_fn of the DataLoader: batches are already whole; keep numpy arrays as they are."""
    return batch


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
        prefetch_factor: int | None = None,
        worker_transfer: Literal["uint8", "float32"] = "uint8",
    ) -> None:
        if worker_transfer not in ("uint8", "float32"):
            raise ValueError(f"worker_transfer must be 'uint8' or 'float32', got {worker_transfer!r}")
        self.dataset = dataset
        self.train = isinstance(dataset, CropDataset)
        self.batch_size, self.seed, self.rank, self.world_size = int(batch_size), int(seed), rank, world_size
        self.num_workers = int(num_workers)
        self.pin_memory = bool(pin_memory)
        self.worker_transfer = worker_transfer
        self._sampler = _KeySampler(positions, batch_size, drop_last, self.train)
        self._dl_kwargs: dict[str, Any] = dict(
            num_workers=self.num_workers,
            multiprocessing_context=multiprocessing_context if self.num_workers else None,
            persistent_workers=self.num_workers > 0,
        )
        if self.num_workers and prefetch_factor is not None:
            self._dl_kwargs["prefetch_factor"] = int(prefetch_factor)
        if worker_transfer == "float32":  # the previous transport: float tensors from the worker
            self._dl_kwargs["pin_memory"] = self.pin_memory and _can_pin()
        else:
            self._dl_kwargs["collate_fn"] = _identity
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
            self.dataset.raw = self.worker_transfer == "uint8"
            kwargs = dict(self._dl_kwargs)
            if self.num_workers:  # workers exit when this process dies, however it dies
                from srcaco2.srdata._lifeline import worker_init_fn

                kwargs["worker_init_fn"] = worker_init_fn(kwargs.get("worker_init_fn"))
            self._dl = torch.utils.data.DataLoader(
                self.dataset, batch_size=None, sampler=self._sampler, **kwargs
            )
        if not 0 < self.batches_done < len(self):
            self.batches_done = 0
        self._sampler.epoch, self._sampler.start = self.epoch, self.batches_done
        pin = self.pin_memory and self.worker_transfer == "uint8" and _can_pin()
        for batch in self._dl:
            if self.dataset.raw:
                batch = to_float(batch, self.dataset.intensity)
                if pin:
                    batch = {k: v.pin_memory() if torch.is_tensor(v) else v for k, v in batch.items()}
            self.bytes_decoded += int(batch.pop("_bytes_decoded", 0))
            self.samples_seen += int(batch["hr"].shape[0])
            self.batches_done += 1
            yield batch

    def close(self) -> None:
        """Stop the persistent workers and drop the caches; iterating again starts afresh (cold)."""
        self._dl = None
        self.dataset.close()

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
    settings: LoaderSettings | None = None,
    seed: int = 0,
    rank: int = 0,
    world_size: int = 1,
    max_windows: int | None = None,
    markers: list[str] | None = None,
    tiles: list[int] | None = None,
    multiprocessing_context: Any = None,
    drop_last: bool | None = None,
    **options: Any,
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
    settings : LoaderSettings, optional
        Workers, pinning, cache, prefetch, preload, transport and the crop sampling (defaults:
        ``LoaderSettings()``); see its attributes. The sampling settings only matter in train mode.
    seed, rank, world_size : every sample depends on (seed, epoch, global position) only. Train:
        ``T = ceil(samples_per_epoch / world_size)·world_size`` positions (≤ world_size − 1 extra,
        fresh samples), rank r takes ``r, r + W, ...``: equal shards, disjoint, together all T.
        Eval: rank r takes windows ``r, r + W, ...`` (no padding, no duplicates; shards differ by ≤ 1).
    tiles : list of int, optional
        Only the windows of these tiles.
    max_windows : int, optional
        Keep the first N windows of the split.
    multiprocessing_context : as torch's DataLoader (e.g. ``"spawn"``).
    drop_last : bool, optional
        Default ``mode == "train"``.
    **options
        Any `LoaderSettings` field as a keyword (``num_workers=4, roi_bias=False``), applied over
        `settings`.

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
    TypeError
        A keyword that is neither a parameter nor a `LoaderSettings` field.
    ValueError
        Unknown split/scale/marker, bad h_size, a setting out of range, a `roi_threshold` under
        which no window of the split has an ROI crop centre (the message lists how many windows
        thresholds 1..10 would keep).
    """
    unknown = sorted(set(options) - set(LoaderSettings.field_names()))
    if unknown:
        raise TypeError(
            f"make_loader() got unexpected keyword argument(s) {unknown}; loader settings are "
            f"{', '.join(LoaderSettings.field_names())}"
        )
    opt = dataclasses.replace(settings or LoaderSettings(), **options)  # validates every setting
    if mode not in ("train", "eval"):
        raise ValueError(f"mode must be 'train' or 'eval', got {mode!r}")
    if batch_size < 1:
        raise ValueError(f"batch_size must be >= 1, got {batch_size}")
    if int(scale) not in SCALE_RANGE:
        raise ValueError(f"scale must be an integer from 2 to 8, got {scale!r}")
    common = dict(markers=markers, max_windows=max_windows, cache_bytes=opt.cache_bytes, tiles=tiles)
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
            aligned=opt.aligned,
            roi_bias=opt.roi_bias,
            augment=opt.augment,
            use_interpolated_low=opt.use_interpolated_low,
            roi_threshold=opt.roi_threshold,
            **common,
        )
        n = len(ds) if opt.samples_per_epoch is None else int(opt.samples_per_epoch)
        positions = samplers.shard_positions(n, rank, world_size, pad=True)
        ds.n_total = len(positions) * world_size
        if opt.roi_bias and not opt.use_interpolated_low:
            counts = _roi_window_counts(ds)
            keep = counts.get(opt.roi_threshold)
            if keep is None:
                t = opt.roi_threshold
                keep = _roi_window_counts(ds, range(t, t + 1))[t]
            if keep == 0:
                raise ValueError(
                    f"{ds.path}: roi_threshold={opt.roi_threshold} leaves no window of split={split!r} "
                    f"(scale={scale}, markers={ds.markers}, h_size={h_size}) with an ROI crop centre "
                    f"(bicubic-upsampled LR >= threshold); windows kept per threshold: {counts}. "
                    "Lower roi_threshold or pass roi_bias=False "
                    "(srtrain fit: --set data.loader.roi_bias=false)"
                )
        ds.close()  # nothing opened in this process travels to the workers
    ds.preload = opt.preload  # after the checks above: the workers (or the first batch) preload
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
        num_workers=opt.num_workers,
        multiprocessing_context=multiprocessing_context,
        pin_memory=opt.pin_memory,
        prefetch_factor=opt.prefetch_factor,
        worker_transfer=opt.worker_transfer,
    )
    if len(loader) == 0:
        raise ValueError(
            f"{ds.path}: {len(positions)} samples per rank give no full batch of {batch_size} "
            "with drop_last; lower batch_size, raise samples_per_epoch or pass drop_last=False"
        )
    return loader
