"""A build on a dask.distributed LocalCluster of 2 worker processes (given by its address, or
started by ``--scheduler processes``): the same store as a local build, and no pixel is read,
computed or held in the client process."""

from __future__ import annotations

import os
import tracemalloc

import numpy as np
import pytest

from srcaco2.srdata.build import BuildConfig, build_store
from srcaco2.srdata.layout import tile_path
from srcaco2.srdata.store import Store, open_root


def _files(store):
    out = {}
    for d, _, names in os.walk(store):
        for n in names:
            rel = os.path.relpath(os.path.join(d, n), store)
            if rel != "zarr.json":  # holds the build date
                out[rel] = open(os.path.join(d, n), "rb").read()
    return out


@pytest.fixture(scope="module")
def raw_two(tmp_path_factory) -> str:
    """2 tiles of 1,536² (9.4 MB of TIFFs each): a tile is well above the client's fixed overhead
    (~3.5 MB of distributed messages and Dask graphs), so "below one raw tile" has a margin."""
    from srcaco2.srdata.synth import SynthParams, write_synth

    out = str(tmp_path_factory.mktemp("raw") / "two")
    write_synth(out, n_tiles=2, params=SynthParams(hr_size=1536, seed=1))
    return out


@pytest.mark.slow
@pytest.mark.parametrize("how", ["address", "processes"])
def test_distributed_build_equals_local_and_client_holds_no_pixels(raw_two, tmp_path, monkeypatch, how):
    import contextlib

    from dask.distributed import LocalCluster

    import srcaco2.srdata.rawtiles
    import srcaco2.srdata.registration

    cfg = BuildConfig(chunk=256, register_markers=("CELL2",), register_scales=(8,))
    local = str(tmp_path / "local.zarr")
    build_store(raw_two, local, cfg, scheduler="threads", workers=2)

    # instrument the client: a raw-TIFF region read or a window registration here is a failure
    pid = os.getpid()
    calls = []
    real_get, real_task = (
        srcaco2.srdata.rawtiles.TiffRegion.__getitem__,
        srcaco2.srdata.registration._store_window_shift,
    )

    def spy_get(self, key):
        calls.append(("tiff", os.getpid()))
        return real_get(self, key)

    def spy_task(*args):
        calls.append(("register", os.getpid()))
        return real_task(*args)

    monkeypatch.setattr(srcaco2.srdata.rawtiles.TiffRegion, "__getitem__", spy_get)
    monkeypatch.setattr(srcaco2.srdata.registration, "_store_window_shift", spy_task)
    dist = str(tmp_path / "dist.zarr")
    cluster_ctx = (
        LocalCluster(
            n_workers=2, threads_per_worker=1, processes=True, dashboard_address=None, memory_limit="2GiB"
        )
        if how == "address"
        else contextlib.nullcontext()
    )
    with cluster_ctx as cluster:
        scheduler = cluster.scheduler_address if how == "address" else "processes"
        tracemalloc.start()
        try:
            summary = build_store(raw_two, dist, cfg, scheduler=scheduler, workers=2)
            _, peak = tracemalloc.get_traced_memory()
        finally:
            tracemalloc.stop()
    assert summary["built"] == [1, 2]
    assert [c for c in calls if c[1] == pid] == []  # the spies never ran in the client
    a, b = _files(local), _files(dist)
    assert sorted(a) == sorted(b) and [k for k in a if a[k] != b[k]] == []
    idx = Store.of_root(open_root(dist)).index()
    assert idx["accepted"].sum() > 0 and (idx["shift"][idx["accepted"], 2, 2] != 0).any()
    assert Store.of_root(open_root(dist)).attrs.source["registration"]["implementation"] == "numba"
    # Python-level allocations of the client (numpy arrays included) stay below one raw tile
    tile_bytes = sum(os.path.getsize(tile_path(raw_two, 1, s)) for s in (1, 2, 4, 8))
    assert peak < tile_bytes, (peak, tile_bytes)
    np.testing.assert_array_equal(
        open_root(dist)["tiles/2/hr/0"][2, :64, :64], open_root(local)["tiles/2/hr/0"][2, :64, :64]
    )
