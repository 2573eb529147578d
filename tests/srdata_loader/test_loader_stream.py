"""The stream: determinism, resume, DDP sharding, workers (fork/spawn), bad input, statistics."""

from __future__ import annotations

import itertools
import json
import os
import shutil
import subprocess
import sys

import numpy as np
import pytest
import torch

from srcaco2.srdata.loader import make_loader
from srcaco2.srdata.schema import StoreFormatError
from srcaco2.srdata.store import open_root

HERE = os.path.dirname(__file__)
ROOT = os.path.dirname(os.path.dirname(HERE))


def _key(batch) -> tuple:
    return (
        batch["window"].tolist(),
        batch["y0"].tolist(),
        batch["x0"].tolist(),
        float(batch["hr"].sum()),
        float(batch["lr"].sum()),
    )


def _stream(loader, n=None) -> list:
    return [_key(b) for b in itertools.islice(loader, n)]


def test_deterministic_seed_and_epoch(store):
    kw = dict(samples_per_epoch=40, seed=5)
    a = _stream(make_loader(store, "train", 4, "CELL2", 4, 32, **kw))
    b = _stream(make_loader(store, "train", 4, "CELL2", 4, 32, **kw))
    c = _stream(make_loader(store, "train", 4, "CELL2", 4, 32, samples_per_epoch=40, seed=6))
    ld = make_loader(store, "train", 4, "CELL2", 4, 32, **kw)
    ld.set_epoch(1)
    d = _stream(ld)
    assert a == b and len(a) == 10
    assert a != c and a != d
    again = _stream(ld)  # iterating again without set_epoch replays the epoch
    assert again == d


def test_resume_mid_epoch(store):
    kw = dict(samples_per_epoch=48, seed=1)
    full = make_loader(store, "train", 2, "CELL2", 4, 32, **kw)
    full.set_epoch(3)
    ref = _stream(full)
    part = make_loader(store, "train", 2, "CELL2", 4, 32, **kw)
    part.set_epoch(3)
    first = _stream(part, 5)
    state = json.loads(json.dumps(part.state_dict()))  # plain python types
    assert state["epoch"] == 3 and state["batches_done"] == 5
    new = make_loader(store, "train", 2, "CELL2", 4, 32, **kw)
    new.load_state_dict(state)
    new.set_epoch(3)  # a trainer re-announcing the same epoch keeps the position
    rest = _stream(new)
    assert first + rest == ref and len(rest) == len(ref) - 5
    other = make_loader(store, "train", 2, "CELL2", 4, 32, samples_per_epoch=48, seed=2)
    with pytest.raises(ValueError, match="seed"):
        other.load_state_dict(state)


def test_two_rank_sharding(store):
    def samples(ld):
        return [(w, y, x) for b in _stream(ld) for w, y, x in zip(*b[:3])]

    kw = dict(samples_per_epoch=30, seed=2, augment=False)
    single = samples(make_loader(store, "train", 4, "CELL2", 1, 32, **kw, drop_last=False))
    r = [
        samples(make_loader(store, "train", 4, "CELL2", 1, 32, **kw, rank=k, world_size=2)) for k in range(2)
    ]
    assert len(r[0]) == len(r[1]) == 15
    merged = [r[p % 2][p // 2] for p in range(30)]
    assert merged == single  # disjoint positions, together the whole epoch
    ev = [make_loader(store, "train", 4, "CELL2", 2, mode="eval", rank=k, world_size=2) for k in range(2)]
    rows = [int(w) for ld in ev for b in ld for w in b["window"]]
    assert len(rows) == len(set(rows)) == 7  # complete, no duplicates (odd count, no padding)


_WORKER_SCRIPT = r"""
import sys, hashlib
from srcaco2.srdata.loader import make_loader
import json
store, ctx, workers, n, bs, epochs = sys.argv[1], sys.argv[2], *map(int, sys.argv[3:7])
extra = json.loads(sys.argv[7])  # options of the worker loader; the reference is the old path
def digest(ld):
    h = hashlib.sha256(); k = 0
    for b in ld:
        for key in ("hr", "lr", "roi", "window", "y0", "x0"):
            h.update(str(b[key].dtype).encode() + b[key].numpy().tobytes())
        k += 1
    return h.hexdigest(), k
kw = dict(samples_per_epoch=n, seed=9, multiprocessing_context=ctx)
ld = make_loader(store, "train", 4, "CELL2", bs, 16, num_workers=workers, **kw, **extra)
ref = make_loader(store, "train", 4, "CELL2", bs, 16, num_workers=0, worker_transfer="float32", **kw)
for e in range(epochs):
    ld.set_epoch(e); ref.set_epoch(e)
    a, ra = digest(ld), digest(ref)
    assert a == ra, (e, a, ra)
    print("OK", e, a[1])
assert ld.bytes_decoded_per_sample > 0
"""


def _run(store, ctx, workers, n, bs, epochs, timeout=240, **extra):
    env = dict(os.environ, PYTHONPATH=ROOT)
    args = [store, ctx, str(workers), str(n), str(bs), str(epochs), json.dumps(extra)]
    p = subprocess.run(
        [sys.executable, "-c", _WORKER_SCRIPT, *args],
        capture_output=True,
        text=True,
        timeout=timeout,
        cwd=ROOT,
        env=env,
    )
    assert p.returncode == 0, p.stderr[-3000:]
    return p.stdout


def test_fork_four_workers_many_batches(store):
    out = _run(store, "fork", 4, 4000, 2, 1)  # 2000 batches; the timeout guards against a hang
    assert "OK 0 2000" in out


def test_spawn_two_workers(store):
    # persistent workers across two epochs; preloaded caches; float32 reference built in-process
    out = _run(store, "spawn", 2, 80, 4, 2, preload=True, prefetch_factor=4)
    assert "OK 0 20" in out and "OK 1 20" in out


def test_damaged_chunk_raises_in_worker(store, tmp_path):
    bad = str(tmp_path / "bad.zarr")
    shutil.copytree(store, bad)
    chunk_dir = os.path.join(bad, "tiles", "1", "hr", "0", "c", "2")
    for dirpath, _, files in os.walk(chunk_dir):
        for f in files:
            with open(os.path.join(dirpath, f), "wb") as fh:
                fh.write(b"not a blosc chunk" * 10)
    script = (
        "import sys\nfrom srcaco2.srdata.loader import make_loader\n"
        "from srcaco2.srdata.schema import StoreFormatError\n"
        "ld = make_loader(sys.argv[1], 'train', 4, 'CELL2', 2, 32, samples_per_epoch=16, num_workers=2,"
        " multiprocessing_context='fork')\n"
        "try:\n    list(ld)\nexcept StoreFormatError as e:\n    print('RAISED', e)\n"
    )
    p = subprocess.run(
        [sys.executable, "-c", script, bad],
        capture_output=True,
        text=True,
        timeout=120,
        cwd=ROOT,
        env=dict(os.environ, PYTHONPATH=ROOT),
    )
    assert "RAISED" in p.stdout, p.stderr[-2000:]
    assert "tiles/1/hr/0" in p.stdout and "tile 1" in p.stdout and "chunks" in p.stdout


def test_bad_inputs(store, tmp_path):
    with pytest.raises(StoreFormatError, match="no such store"):
        make_loader(str(tmp_path / "nothing.zarr"))
    with pytest.raises(ValueError, match="split 'test'"):
        make_loader(store, "test", 4)
    with pytest.raises(ValueError, match="scale"):
        make_loader(store, "train", 3)
    with pytest.raises(ValueError, match="CELL9"):
        make_loader(store, "train", 4, "CELL9")
    with pytest.raises(ValueError, match="multiple of scale"):
        make_loader(store, "train", 4, "CELL2", 2, 30)
    with pytest.raises(ValueError, match="h_size"):
        make_loader(store, "train", 4, "CELL2", 2, 1024)
    with pytest.raises(ValueError, match=r"windows kept per threshold: \{1: 7") as info:
        make_loader(store, "train", 4, "CELL2", 2, 32, roi_threshold=256)
    assert "roi_bias=False" in str(info.value)
    make_loader(store, "train", 4, "CELL2", 2, 32, roi_threshold=256, roi_bias=False)  # fine without bias
    with pytest.raises(ValueError, match="roi_threshold=-1 must be >= 0"):
        make_loader(store, "train", 4, "CELL2", 2, 32, roi_threshold=-1)
    # no index / other format version
    copy = str(tmp_path / "copy.zarr")
    shutil.copytree(store, copy)
    root = open_root(copy, "r+")
    attrs = dict(root.attrs["srcaco2"])
    root.attrs["srcaco2"] = {**attrs, "index_complete": False}
    with pytest.raises(StoreFormatError, match="index is missing or incomplete"):
        make_loader(copy)
    root.attrs["srcaco2"] = {**attrs, "format_version": 99}
    with pytest.raises(StoreFormatError, match="format_version 99"):
        make_loader(copy)


def test_cache_statistics_and_bound(store):
    ld = make_loader(store, "train", 4, "CELL2", 4, 32, samples_per_epoch=40, cache_bytes=300_000)
    _stream(ld)
    assert ld.bytes_decoded_per_sample > 0
    cache = ld.dataset.cache
    assert cache.nbytes <= cache.max_memory_bytes() == 300_000 and cache.evictions > 0
    big = make_loader(store, "train", 4, "CELL2", 4, 32, samples_per_epoch=40)
    _stream(big)
    first = big.bytes_decoded
    big.set_epoch(1)
    _stream(big)
    assert big.bytes_decoded == first  # the split stays resident: the second epoch decodes nothing
    assert isinstance(torch.tensor(0), torch.Tensor) and np.isfinite(big.bytes_decoded_per_sample)


def test_datasets_pickle_small_without_store_handles(store):
    import pickle

    ld = make_loader(store, "train", 4, "CELL2", 4, 32, samples_per_epoch=8)
    _stream(ld)  # opens the store and fills the cache in this process
    assert ld.dataset.cache is not None and ld.dataset.cache.nbytes > 0
    blob = pickle.dumps(ld.dataset)
    assert len(blob) < 20_000
    clone = pickle.loads(blob)
    assert clone.cache is None and clone._pid is None and clone._plans == {}
    # a plain torch DataLoader over WindowDataset with default collation
    from srcaco2.srdata.loader import WindowDataset

    dl = torch.utils.data.DataLoader(WindowDataset(store, "val", 8, "CELL2"), batch_size=3)
    b = next(iter(dl))
    assert (
        b["lr"].shape == (3, 1, 64, 64) and b["roi"].dtype == torch.bool and b["window"].dtype == torch.int64
    )
