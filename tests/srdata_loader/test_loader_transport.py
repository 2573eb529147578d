"""Worker transport (uint8 across, float32 in the main process), preload, no repeated decoding."""

from __future__ import annotations

import numpy as np
import pytest
import torch

from srcaco2.srdata import datasets, loader
from srcaco2.srdata.cache import ArrayLRU, ChunkReader
from srcaco2.srdata.store import image_path, open_root, roi_path

from .conftest import TILE_SIZE

KW = dict(samples_per_epoch=24, seed=3)


def _batches(ld) -> list[dict]:
    return list(ld)


def _same(a: list[dict], b: list[dict]) -> None:
    assert len(a) == len(b) > 0
    for x, y in zip(a, b):
        assert x.keys() == y.keys()
        for k in x:
            assert x[k].dtype == y[k].dtype and torch.equal(x[k], y[k]), k


def test_module_split_reexports():
    assert loader.WindowDataset is datasets.WindowDataset and loader.CropDataset is datasets.CropDataset
    assert {"WindowDataset", "CropDataset", "PatchLoader", "make_loader"} <= set(loader.__all__)


def test_uint8_transport_equals_float32(store):
    new = _batches(loader.make_loader(store, "train", 4, "CELL2", 4, 32, **KW))
    old = _batches(loader.make_loader(store, "train", 4, "CELL2", 4, 32, worker_transfer="float32", **KW))
    _same(new, old)
    b = new[0]
    assert b["hr"].dtype == torch.float32 and b["roi"].dtype == torch.bool and b["tile"].dtype == torch.int64
    assert float(b["hr"].max()) <= 1.0 and "_bytes_decoded" not in b
    # eval batches too, and pin_memory is accepted without an accelerator (no pinning then)
    ev = loader.make_loader(store, "val", 2, "CELL1", 2, mode="eval", pin_memory=True)
    ref = loader.make_loader(store, "val", 2, "CELL1", 2, mode="eval", worker_transfer="float32")
    _same(_batches(ev), _batches(ref))


def test_raw_dataset_and_to_float(store):
    ds = datasets.WindowDataset(store, "val", 4, "CELL2")
    f = ds[[0, 2]]
    ds.raw = True
    r = ds[[0, 2]]
    assert isinstance(r["hr"], np.ndarray) and r["hr"].dtype == np.uint8 and r["lr"].dtype == np.uint8
    assert np.array_equal(r["hr"].astype(np.float32) / np.float32(255), f["hr"].numpy())
    back = datasets.to_float(r)
    for k in f:
        assert torch.equal(back[k], f[k]), k
    single = ds[1]  # one window of a raw dataset: arrays without the batch axis, ints
    assert single["hr"].shape == (1, 512, 512) and isinstance(single["window"], int)


def test_preload_fills_cache_before_first_batch(store, monkeypatch):
    lazy = loader.make_loader(store, "train", 4, "CELL2", 4, 32, **KW)
    pre = loader.make_loader(store, "train", 4, "CELL2", 4, 32, preload=True, **KW)
    it = iter(pre)
    first = [next(it)]
    after_first = pre.bytes_decoded
    rest = list(it)
    assert after_first > 0 and pre.bytes_decoded == after_first  # nothing decoded after batch 1
    _same(first + rest, _batches(lazy))
    pre.close()  # drops the cache: the replayed epoch is cold again, and identical
    _same(first + rest, _batches(pre))
    assert pre.bytes_decoded == 2 * after_first
    assert lazy.bytes_decoded <= pre.bytes_decoded  # each block once; preload decodes every block
    # "auto": preloads when the split fits half the budget, streams otherwise
    auto = loader.make_loader(store, "train", 4, "CELL2", 4, 32, preload="auto", **KW)
    next(iter(auto))
    assert auto.bytes_decoded == after_first
    # the "auto" rule: the split's bytes within half the budget
    sb = pre.dataset.split_bytes()
    assert 0 < sb <= 2 * TILE_SIZE**2 * (1 + 1 + 1 / 16)
    calls = []
    monkeypatch.setattr(datasets.CropDataset, "warm", lambda self: calls.append(self.cache_bytes) or 0)
    for budget in (2 * sb, 2 * sb - 2):
        next(
            iter(
                loader.make_loader(
                    store, "train", 4, "CELL2", 4, 32, preload="auto", cache_bytes=budget, **KW
                )
            )
        )
    next(iter(loader.make_loader(store, "train", 4, "CELL2", 4, 32, cache_bytes=2 * sb, **KW)))
    assert calls == [2 * sb]
    with pytest.raises(ValueError, match="preload"):
        loader.make_loader(store, "train", 4, "CELL2", 4, 32, preload="yes")
    with pytest.raises(ValueError, match="worker_transfer"):
        loader.make_loader(store, "train", 4, "CELL2", 4, 32, worker_transfer="float16")


def test_each_chunk_decoded_once_per_epoch(store):
    ld = loader.make_loader(store, "train", 4, "CELL2", 4, 32, samples_per_epoch=200, seed=1)
    list(ld)
    tiles = len(np.unique(ld.dataset.tile))
    # HR (1 channel) + ROI + LR of every tile of the split, each chunk once at most
    bound = tiles * TILE_SIZE**2 * (1 + 1 + 1 / 16)
    assert 0 < ld.bytes_decoded <= bound
    reader = ChunkReader(open_root(store), ArrayLRU(), where=store)
    assert reader.prefetch(image_path(1, 1), (2,), 0, 600, 0, 600) > 0
    decoded = reader.cache.bytes_decoded
    assert reader.prefetch(image_path(1, 1), (2,), 100, 500, 0, 500) == 0  # all cached: no zarr call
    assert reader.cache.bytes_decoded == decoded
    assert reader.prefetch(roi_path(1), None, 0, 10, 0, 10) > 0
