"""srcaco2.srdata.writer: store creation rules, OME-NGFF images, ROI, index, finished markers."""

from __future__ import annotations

import os

import numpy as np
import pytest
import zarr

from srcaco2.srdata.array_store import write_store_from_arrays
from srcaco2.srdata.schema import FORMAT_VERSION, INDEX_COLUMNS, StoreAttrs, StoreFormatError
from srcaco2.srdata.store import create_store, roi_group_path, roi_path
from srcaco2.srdata.writer import (
    mark_tile_finished,
    write_image,
    write_index,
    write_roi,
)


def _attrs(**kw) -> StoreAttrs:
    base = dict(
        format_version=FORMAT_VERSION, markers=["CELL0", "CELL1", "CELL2"], scales=[2, 4, 8],
        pixel_size_um={"hr": 0.1, "x2": 0.2, "x4": 0.4, "x8": 0.8},
        chunks={"hr": 64, "x2": 32, "x4": 16, "x8": 8},
        tiles=[1], finished_tiles=[], roi={"threshold": 4}, source={"kind": "test"},
    )  # fmt: skip
    base.update(kw)
    return StoreAttrs(**base)


def test_create_store_rules(tmp_path):
    p = str(tmp_path / "s.zarr")
    st = create_store(p, _attrs())
    assert st.attrs.tiles == [1]
    with pytest.raises(StoreFormatError, match="already exists"):
        create_store(p, _attrs(), mode="w-")
    st = create_store(p, _attrs(), mode="a")  # resume: same parameters
    with pytest.raises(StoreFormatError, match="chunks"):
        create_store(p, _attrs(chunks={"hr": 128, "x2": 64, "x4": 32, "x8": 16}), mode="a")
    # another format version
    other = str(tmp_path / "v9.zarr")
    g = zarr.open_group(other, mode="w", zarr_format=3)
    g.attrs["srcaco2"] = {"format_version": 9}
    with pytest.raises(StoreFormatError, match="format_version 9"):
        create_store(other, _attrs(), mode="a")
    # a directory that is not a store
    junk = tmp_path / "junk"
    junk.mkdir()
    (junk / "notes.txt").write_text("mine")
    with pytest.raises(StoreFormatError, match="not a srcaco2 store"):
        create_store(str(junk), _attrs(), mode="a")
    assert (junk / "notes.txt").read_text() == "mine"
    # an empty directory is fine
    empty = tmp_path / "empty"
    empty.mkdir()
    create_store(str(empty), _attrs())


def test_write_image_ngff_levels(tmp_path):
    p = str(tmp_path / "s.zarr")
    st = create_store(p, _attrs())
    rng = np.random.default_rng(0)
    img = rng.integers(0, 256, (3, 150, 134), dtype=np.uint8)
    write_image(st, 1, 1, img, chunk=64, pixel_size_um=0.1, n_levels=3)
    g = zarr.open_group(p, mode="r")
    ome = g["tiles/1/hr"].attrs["ome"]
    assert ome["version"] == "0.5"
    ms = ome["multiscales"][0]
    assert [a["name"] for a in ms["axes"]] == ["c", "y", "x"]
    assert [d["path"] for d in ms["datasets"]] == ["0", "1", "2"]
    assert ms["datasets"][2]["coordinateTransformations"][0]["scale"] == pytest.approx([1.0, 0.4, 0.4])
    a0, a1, a2 = (g[f"tiles/1/hr/{k}"] for k in range(3))
    np.testing.assert_array_equal(a0[...], img)
    assert a0.chunks == (1, 64, 64)
    # level 1 = rounded 2x2 mean of level 0, level 2 = of level 1
    l1 = np.round(img[:, :150, :134].reshape(3, 75, 2, 67, 2).astype(np.float64).mean(axis=(2, 4)))
    np.testing.assert_array_equal(a1[...], l1.astype(np.uint8))
    assert a2.shape == (3, 37, 33)
    assert "zstd" in str(a0.compressors[0])
    # ome_zarr reads it as a 3-level image
    from ome_zarr.io import parse_url
    from ome_zarr.reader import Reader

    node = list(Reader(parse_url(os.path.join(p, "tiles/1/hr")))())[0]
    assert len(node.data) == 3 and tuple(node.data[0].shape) == (3, 150, 134)
    import xarray as xr

    ds = xr.open_zarr(os.path.join(p, "tiles/1/hr"), consolidated=False, drop_variables=["1", "2"])
    assert ds["0"].dims == ("c", "y", "x")


def test_write_roi_and_dask_input(tmp_path):
    import dask.array as da

    st = create_store(str(tmp_path / "s.zarr"), _attrs())
    mask = np.zeros((130, 128), np.uint8)
    mask[10:20, 5:9] = 1
    with pytest.raises(StoreFormatError, match="before its ROI label"):  # the label needs its image
        write_roi(st, 1, mask, chunk=32)
    write_image(st, 1, 1, np.zeros((3, 130, 128), np.uint8), chunk=32)
    with pytest.raises(ValueError, match="as many levels"):
        write_roi(st, 1, mask, chunk=32, n_levels=1)
    with pytest.raises(ValueError, match="HR extent"):
        write_roi(st, 1, mask[:-1], chunk=32)
    write_roi(st, 1, da.from_array(mask, chunks=(50, 50)), chunk=32)
    assert roi_path(1, 1) == "tiles/1/hr/labels/roi/1"
    np.testing.assert_array_equal(st.root[roi_path(1)][...], mask)
    assert st.root[roi_path(1, 1)][...].sum() > 0  # max-pooled display level keeps the object
    ome = st.root[roi_group_path(1)].attrs["ome"]
    assert ome["multiscales"][0]["axes"][0]["name"] == "y"
    assert ome["image-label"]["source"]["image"] == "../../"
    assert st.root["tiles/1/hr/labels"].attrs["ome"] == {"version": "0.5", "labels": ["roi"]}


def test_index_and_finished(tmp_path):
    st = create_store(str(tmp_path / "s.zarr"), _attrs(tiles=[1, 2]))
    cols = {k: np.zeros((4, *t), dtype=d) for k, (d, t) in INDEX_COLUMNS.items()}
    cols["y0"] = np.arange(4) * 256
    with pytest.raises(StoreFormatError):
        st.index()
    bad = dict(cols)
    bad.pop("split")
    with pytest.raises(KeyError, match="split"):
        write_index(st, bad)
    assert st.attrs.index_complete is False
    write_index(st, cols)
    assert st.attrs.index_complete
    np.testing.assert_array_equal(st.index()["y0"], cols["y0"])
    with pytest.raises(StoreFormatError, match="tiles/2 vanished after writing"):
        mark_tile_finished(st, 2)  # nothing written for tile 2: never recorded as finished
    img = np.zeros((3, 16, 16), np.uint8)
    for t in (1, 2):
        write_image(st, t, 1, img, chunk=8, pixel_size_um=1.0)
    mark_tile_finished(st, 2)
    mark_tile_finished(st, 1)
    mark_tile_finished(st, 2)
    assert st.attrs.finished_tiles == [1, 2]
    assert st.update_attrs(source={"kind": "x"}).source == {"kind": "x"}


@pytest.mark.parametrize("shape", [(3, 150, 134), (3, 131, 97), (77, 61)])
def test_numpy_and_dask_inputs_write_the_same_levels(tmp_path, shape):
    """In-memory input takes the NumPy pyramid (uint16 pair sums, strips); Dask input takes
    `pyramid_levels`; both equal np.round(float mean) (half to even) / the 2x2 max, byte for byte."""
    import dask.array as da

    rng = np.random.default_rng(len(shape))
    img = rng.integers(0, 256, shape, dtype=np.uint8)
    img[..., :8, :8] = np.array([[1, 2], [2, 1]] * 4, np.uint8).repeat(4, axis=1)[:8, :8]  # .5 means
    st = create_store(str(tmp_path / "s.zarr"), _attrs())
    write = write_image if len(shape) == 3 else write_roi
    lazy = da.from_array(img, chunks=(*shape[:-2], 48, 40))
    if len(shape) == 2:  # a ROI label needs its HR image (same extent, same level count)
        for t in (1, 2):
            write_image(st, t, 1, np.zeros((3, *shape), np.uint8), chunk=16, n_levels=4)
    write(st, 1, *(1,) * (len(shape) == 3), img, chunk=16, pixel_size_um=0.1, n_levels=4)
    write(st, 2, *(1,) * (len(shape) == 3), lazy, chunk=16, pixel_size_um=0.1, n_levels=4)
    acq = "hr" if len(shape) == 3 else "roi"

    def path(t: int, lv: int) -> str:
        return f"tiles/{t}/hr/{lv}" if acq == "hr" else roi_path(t, lv)

    prev = img
    for lv in range(4):
        a, b = st.root[path(1, lv)][...], st.root[path(2, lv)][...]
        np.testing.assert_array_equal(a, b)
        if lv:
            h, w = prev.shape[-2] // 2 * 2, prev.shape[-1] // 2 * 2
            blocks = prev[..., :h, :w].reshape(*prev.shape[:-2], h // 2, 2, w // 2, 2)
            ref = blocks.max(axis=(-3, -1)) if acq == "roi" else np.round(blocks.mean(axis=(-3, -1)))
            np.testing.assert_array_equal(a, ref.astype(np.uint8))
        prev = a


def _tile(rng: np.random.Generator, size: int, scales=(2, 4, 8)) -> dict[int, np.ndarray]:
    hr = rng.integers(0, 256, (3, size, size), dtype=np.uint8)
    return {1: hr} | {s: rng.integers(0, 256, (3, size // s, size // s), dtype=np.uint8) for s in scales}


def test_write_store_from_arrays(tmp_path):
    from srcaco2.srdata.roi import window_roi_fraction
    from srcaco2.srdata.store import image_path, roi_path

    rng = np.random.default_rng(5)
    tiles = {7: _tile(rng, 1024), 3: _tile(rng, 768)}
    # default windows: each tile's full stride-256 grid (4 + 1 windows), contract defaults
    p = str(tmp_path / "a.zarr")
    st = write_store_from_arrays(p, tiles, chunk=128, n_levels={"hr": 2, "x2": 1}, source={"kind": "test"})
    attrs = st.attrs
    assert attrs.tiles == [7, 3] and sorted(attrs.finished_tiles) == [3, 7] and attrs.index_complete
    assert attrs.chunks == {"hr": 128, "x2": 64, "x4": 32, "x8": 16}
    assert attrs.pixel_size_um == pytest.approx({"hr": 0.1, "x2": 0.2, "x4": 0.4, "x8": 0.8})
    assert attrs.roi["threshold"] == 4 and attrs.source == {"kind": "test"}
    for t, imgs in tiles.items():
        for s, img in imgs.items():
            np.testing.assert_array_equal(st.root[image_path(t, s)][...], img)
        mask = (imgs[1][2] >= 4).astype(np.uint8)
        np.testing.assert_array_equal(st.root[roi_path(t)][...], mask)
    assert "1" in st.root["tiles/7/hr"] and "1" not in st.root["tiles/7/x2"]  # per-name n_levels
    idx = st.index()
    np.testing.assert_array_equal(idx["tile"], [7, 7, 7, 7, 3])
    np.testing.assert_array_equal(idx["y0"], [0, 0, 256, 256, 0])
    np.testing.assert_array_equal(idx["x0"], [0, 256, 0, 256, 0])
    assert (idx["size"] == 640).all() and idx["accepted"].all()
    assert (idx["split"] == -1).all() and (idx["official_patch_id"] == -1).all() and not idx["shift"].any()
    ref = window_roi_fraction((tiles[7][1][2] >= 4).astype(np.uint8), idx["y0"][:4], idx["x0"][:4])
    np.testing.assert_allclose(idx["roi_fraction"][:4], ref.astype(np.float32))
    assert 0 < idx["roi_fraction"][0] < 1

    # given columns are kept as given (order, values); a higher threshold makes a smaller ROI
    shift = rng.integers(-9, 10, (2, 3, 3, 2))
    windows = {"tile": [3, 7], "y0": [0, 256], "x0": [0, 0], "split": [2, 0], "shift": shift}
    q = str(tmp_path / "b.zarr")
    st = write_store_from_arrays(q, tiles, chunk=128, windows=windows, roi_threshold=200, n_levels=1)
    idx = st.index()
    np.testing.assert_array_equal(idx["tile"], [3, 7])
    np.testing.assert_array_equal(idx["split"], [2, 0])
    np.testing.assert_array_equal(idx["shift"], shift)
    assert idx["accepted"].all() and (idx["size"] == 640).all()
    np.testing.assert_array_equal(st.root[roi_path(3)][...], (tiles[3][1][2] >= 200).astype(np.uint8))
    assert st.attrs.roi["threshold"] == 200

    with pytest.raises(StoreFormatError, match="already exists"):
        write_store_from_arrays(q, tiles, chunk=128)
    with pytest.raises(ValueError, match="not in tiles"):
        write_store_from_arrays(
            str(tmp_path / "c.zarr"), tiles, chunk=128, windows={"tile": [9], "y0": [0], "x0": [0]}
        )
    with pytest.raises(KeyError, match="x0"):
        write_store_from_arrays(str(tmp_path / "d.zarr"), tiles, chunk=128, windows={"tile": [3], "y0": [0]})
    with pytest.raises(ValueError, match="same LR scales"):
        write_store_from_arrays(
            str(tmp_path / "e.zarr"), {1: _tile(rng, 768), 2: _tile(rng, 768, (2,))}, chunk=128
        )
    with pytest.raises(ValueError, match="roi_threshold"):
        write_store_from_arrays(str(tmp_path / "f.zarr"), tiles, chunk=128, roi={"threshold": 5})


def test_tile_with_a_missing_level_or_chunk_is_not_marked_finished(tmp_path):
    import os

    st = create_store(str(tmp_path / "s.zarr"), _attrs(tiles=[1]))
    write_image(st, 1, 1, np.ones((3, 32, 32), np.uint8), chunk=8, pixel_size_um=1.0)
    del st.root["tiles/1/hr/1"]  # as another writer's overwrite would
    with pytest.raises(StoreFormatError, match="tiles/1/hr/1 is missing after writing"):
        mark_tile_finished(st, 1)
    os.remove(tmp_path / "s.zarr/tiles/1/hr/0/c/1/2/3")
    with pytest.raises(StoreFormatError, match=r"tiles/1/hr/0: 1 chunk\(s\) missing after writing"):
        mark_tile_finished(st, 1)
    assert st.attrs.finished_tiles == []
