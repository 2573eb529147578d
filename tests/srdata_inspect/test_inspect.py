"""`store_info` and `verify_store`, on a good store and on deliberately broken copies."""

from __future__ import annotations

import os
import shutil
from pathlib import Path

import numpy as np
import pytest
import zarr

from srcaco2.srdata.inspect import store_info
from srcaco2.srdata.schema import FORMAT_VERSION, StoreFormatError
from srcaco2.srdata.store import Store, roi_group_path, roi_path
from srcaco2.srdata.verify import verify_store


def _edit_attrs(path: str, **changes) -> None:
    root = zarr.open_group(path, mode="r+")
    attrs = dict(root.attrs["srcaco2"])
    attrs.update(changes)
    root.attrs["srcaco2"] = attrs


def _set_index(path: str, column: str, row_of_first_window: int, value) -> None:
    arr = zarr.open_array(os.path.join(path, "index", column), mode="r+")
    data = arr[...]
    data[row_of_first_window] = value
    arr[...] = data


def test_info_reports_the_store(shared_store, synth):
    d = store_info(shared_store)
    assert d["format_version"] == FORMAT_VERSION and d["checksums"]
    assert d["markers"] == ["CELL0", "CELL1", "CELL2"] and d["scales"] == [2, 4, 8]
    assert [t["tile"] for t in d["tiles"]] == list(synth.TILES)
    root = zarr.open_group(shared_store, mode="r")
    for t in d["tiles"]:
        acq = t["acquisitions"]
        assert acq["hr"]["shape"] == [3, synth.HR_SIZE, synth.HR_SIZE] and acq["x8"]["shape"] == [
            3,
            synth.HR_SIZE // 8,
            synth.HR_SIZE // 8,
        ]
        assert acq["hr"]["chunks"] == [1, 512, 512] and acq["x4"]["chunks"] == [1, 128, 128]
        assert acq["hr"]["levels"] == 2
        roi = root[roi_path(t["tile"])][...]
        assert t["roi_fraction"] == pytest.approx(roi.mean())
        assert 0.2 < t["roi_fraction"] < 0.6
    assert d["windows"]["train"] == {"accepted": 7, "total": 9}
    assert d["windows"]["val"] == {"accepted": 3, "total": 4}
    assert d["windows"]["test"] == {"accepted": 4, "total": 5}
    assert d["windows"]["all"] == {"accepted": 14, "total": 18}
    on_disk = sum(p.stat().st_size for p in Path(shared_store).rglob("*") if p.is_file())
    assert d["store_bytes"] == on_disk


def test_info_refuses_non_store(tmp_path):
    with pytest.raises(StoreFormatError, match="no such file"):
        store_info(str(tmp_path / "nothing"))


def test_verify_clean_store(shared_store):
    assert verify_store(shared_store) == []


def _chunk_file(store: str, array: str, *idx: int) -> Path:
    p = Path(store, array, "c", *map(str, idx))
    assert p.is_file(), p
    return p


def test_verify_truncated_chunk(store):
    f = _chunk_file(store, "tiles/3/hr/0", 1, 2, 1)
    f.write_bytes(f.read_bytes()[: f.stat().st_size // 2])
    problems = verify_store(store)
    assert len(problems) == 1
    assert "tiles/3/hr/0" in problems[0] and "chunk 1/2/1" in problems[0]
    assert verify_store(store, read_chunks=False) == []  # metadata alone cannot see it


def test_verify_corrupted_chunk_header(store):
    f = _chunk_file(store, "tiles/7/x4/1", 0, 0, 0)
    data = bytearray(f.read_bytes())
    data[:16] = b"\xff" * 16
    f.write_bytes(bytes(data))
    problems = verify_store(store)
    assert len(problems) == 1 and "tiles/7/x4/1: chunk 0/0/0" in problems[0]


def test_verify_wrong_chunk_attr(store):
    _edit_attrs(store, chunks={"hr": 512, "x2": 256, "x4": 60, "x8": 64})
    problems = verify_store(store, read_chunks=False)
    assert any("hr=512 != 4 x x4=60" in p for p in problems), problems


def test_verify_wrong_markers_attr(store):
    _edit_attrs(store, markers=["CELL0", "CELL1", "CELLX"])
    problems = verify_store(store, read_chunks=False)
    assert any("attrs.markers" in p and "CELLX" in p for p in problems), problems


def test_verify_other_format_version(store):
    _edit_attrs(store, format_version=99)
    problems = verify_store(store)
    assert len(problems) == 1 and "format_version 99" in problems[0]


def test_verify_unfinished_build(store, synth):
    _edit_attrs(store, finished_tiles=[synth.TILES[0]], index_complete=False)
    problems = verify_store(store, read_chunks=False)
    assert any("finished_tiles" in p for p in problems) and any("index_complete" in p for p in problems)


def test_verify_window_out_of_bounds(store, synth):
    _set_index(store, "y0", 0, synth.HR_SIZE - 512)  # window end 1280 + 128 > HR extent
    problems = verify_store(store, read_chunks=False)
    assert any("outside the HR extent" in p and "row 0" in p for p in problems), problems


@pytest.mark.parametrize(
    ("column", "value", "needle"),
    [
        ("split", 5, "split code"),
        ("shift", np.full((3, 3, 2), 100), "registration shift"),
        ("x0", 3, "not multiples of scale"),
        ("size", 512, "size != 640"),
        ("tile", 99, "not listed in attrs.tiles"),
    ],
)
def test_verify_bad_index_values(store, column, value, needle):
    _set_index(store, column, 0, value)
    problems = verify_store(store, read_chunks=False)
    assert any(needle in p for p in problems), problems


def test_verify_missing_acquisition_and_metadata(store):
    shutil.rmtree(Path(store, "tiles", "7", "x8"))
    root = zarr.open_group(store, mode="r+")
    del root[roi_group_path(3)].attrs["ome"]
    problems = verify_store(store)
    assert any(p.startswith("tiles/7/x8: missing") for p in problems), problems
    assert any(f"{roi_group_path(3)}: no OME-NGFF multiscales" in p for p in problems), problems


def test_verify_lr_extent_and_chunks(store, synth):
    from srcaco2.srdata import writer

    root = zarr.open_group(store, mode="r+")
    writer.write_image(
        Store.of_root(root),
        3,
        2,
        np.zeros((3, synth.HR_SIZE // 2 - 8, synth.HR_SIZE // 2), np.uint8),
        chunk=64,
        pixel_size_um=0.2,
        n_levels=1,
    )
    problems = verify_store(store)
    assert any("tiles/3/x2/0: extent [632, 640] x 2" in p for p in problems), problems
    assert any("tiles/3/x2/0: chunks [64, 64] x 2 != HR chunks [512, 512]" in p for p in problems), problems


def test_verify_not_a_store(tmp_path):
    problems = verify_store(str(tmp_path))
    assert len(problems) == 1 and "not a Zarr v3 store" in problems[0]


def test_info_and_verify_fsspec_url(shared_store):
    import fsspec

    fs = fsspec.filesystem("memory")
    fs.put(shared_store, "/inspect-test/s.zarr", recursive=True)
    try:
        url = "memory://inspect-test/s.zarr"
        assert verify_store(url) == []
        d = store_info(url)
        assert d["store_bytes"] == store_info(shared_store)["store_bytes"]
        assert d["windows"]["all"] == {"accepted": 14, "total": 18}
        chunk = next(k for k in fs.find("/inspect-test/s.zarr/tiles/7/hr/0") if "/c/" in k)
        fs.pipe(chunk, fs.cat(chunk)[:20])
        problems = verify_store(url)
        assert len(problems) == 1 and "tiles/7/hr/0: chunk" in problems[0]
    finally:
        fs.rm("/inspect-test", recursive=True)
