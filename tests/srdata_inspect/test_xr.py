"""`srdata.open_store`: the lazy xarray view."""

from __future__ import annotations

import dask.array as da
import numpy as np
import pytest
import xarray as xr
import zarr

from srcaco2 import srdata
from srcaco2.srdata.schema import MARKERS, SCALES, StoreFormatError
from srcaco2.srdata.store import roi_path


def _check_tree(tree: xr.DataTree, path: str, synth) -> None:
    root = zarr.open_group(path, mode="r")
    for t in synth.TILES:
        for scale in (1, *SCALES):
            acq = "hr" if scale == 1 else f"x{scale}"
            node = tree[f"tiles/{t}/{acq}"]
            img = node["image"]
            assert img.dims == ("c", "y", "x")
            assert isinstance(img.data, da.Array)  # lazy
            assert list(img["c"].values) == list(MARKERS)
            assert img.attrs["pixel_size_um"] == synth.PIXEL_SIZE_UM[acq] and img.attrs["scale"] == scale
            # pixel centres in the tile's common frame: ((i + 0.5) * s - 0.5) HR px
            assert img["x"].values[3] == pytest.approx((3.5 * scale - 0.5) * synth.PIXEL_SIZE_UM["hr"])
            # an LR pixel's centre is the mean of the centres of the s x s HR pixels it covers
            hr_x = tree[f"tiles/{t}/hr"]["image"]["x"].values
            np.testing.assert_allclose(img["x"].values[:5], hr_x[: 5 * scale].reshape(5, scale).mean(1))
            want = root[f"tiles/{t}/{acq}/0"]
            assert img.shape == want.shape
            np.testing.assert_array_equal(img.sel(c="CELL1")[5:37, 11:50].values, want[1, 5:37, 11:50])
        roi = tree[f"tiles/{t}/roi"]["roi"]
        assert roi.dims == ("y", "x")
        np.testing.assert_array_equal(roi.values, root[roi_path(t)][...])
        np.testing.assert_array_equal(roi["y"].values, tree[f"tiles/{t}/hr"]["image"]["y"].values)
    index = tree["index"].to_dataset()
    assert index.sizes["window"] == 2 * 9
    assert index["shift"].dims == ("window", "marker", "scale", "yx")
    np.testing.assert_array_equal(index["y0"].values, root["index/y0"][...])
    np.testing.assert_array_equal(index["shift"].values, root["index/shift"][...])
    assert tree.attrs["srcaco2"]["tiles"] == list(synth.TILES)


def test_open_store_local(shared_store, synth):
    _check_tree(srdata.open_store(shared_store), shared_store, synth)


def test_open_store_fsspec_memory(shared_store, synth):
    import fsspec

    fs = fsspec.filesystem("memory")
    fs.put(shared_store, "/xr-test/s.zarr", recursive=True)
    try:
        tree = srdata.open_store("memory://xr-test/s.zarr")
        _check_tree(tree, "memory://xr-test/s.zarr", synth)
    finally:
        fs.rm("/xr-test", recursive=True)


def test_open_store_refuses_non_store(tmp_path):
    with pytest.raises(StoreFormatError, match="no such file"):
        srdata.open_store(str(tmp_path / "missing.zarr"))
    zarr.open_group(str(tmp_path / "plain.zarr"), mode="w")
    with pytest.raises(StoreFormatError, match="not a srcaco2 store"):
        srdata.open_store(str(tmp_path / "plain.zarr"))
