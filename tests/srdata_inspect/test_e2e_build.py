"""End to end: `srcaco2.srdata.synth` raw tiles -> `srcaco2.srdata.build` store -> info / verify / export /
import."""

from __future__ import annotations

import filecmp
from pathlib import Path

import numpy as np
import pytest
import zarr

synth_mod = pytest.importorskip("srcaco2.srdata.synth")
build_mod = pytest.importorskip("srcaco2.srdata.build")


def _files(root: Path) -> list[str]:
    return sorted(str(p.relative_to(root)) for p in root.rglob("*") if p.is_file())


def test_built_store_round_trip(tmp_path):
    from srcaco2.srdata.export_patches import export_patches
    from srcaco2.srdata.import_patches import import_patches
    from srcaco2.srdata.inspect import store_info
    from srcaco2.srdata.store import Store
    from srcaco2.srdata.verify import verify_store

    raw = tmp_path / "raw"
    synth_mod.write_synth(raw, n_tiles=1, params=synth_mod.SynthParams(hr_size=1280, seed=3))
    store = str(tmp_path / "built.zarr")
    # registration off: TV-L1 on every window takes minutes on 2 cores
    build_mod.build_store(raw, store, build_mod.BuildConfig(chunk=512, register=False))
    assert verify_store(store) == []
    info = store_info(store)
    index = Store.of_root(zarr.open_group(store, mode="r")).index()
    assert info["windows"]["all"] == {"accepted": int(index["accepted"].sum()), "total": len(index["tile"])}
    n_acc = int(index["accepted"].sum())
    if n_acc == 0:
        pytest.skip("the synthetic tile has no accepted window")
    first = tmp_path / "first"
    assert export_patches(store, first)["windows"] == n_acc
    imported = str(tmp_path / "imported.zarr")
    res = import_patches(first, imported, chunk=512)
    assert res["conflicts"] == [] and res["windows"] == n_acc
    assert verify_store(imported) == []
    second = tmp_path / "second"
    export_patches(imported, second)
    names = _files(first)
    assert names == _files(second)
    _, mismatch, errors = filecmp.cmpfiles(first, second, names, shallow=False)
    assert mismatch == [] and errors == []
    assert np.isin(Store.of_root(zarr.open_group(imported, mode="r")).index()["split"], [-1, 0, 1, 2]).all()
