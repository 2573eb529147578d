"""export-patches / import-patches: released layout, fold lists, round trip, bad input."""

from __future__ import annotations

import filecmp
import logging
import os
import shutil
from pathlib import Path

import numpy as np
import pytest
import tifffile
import zarr

from srcaco2.srdata.export_patches import export_patches, window_pids
from srcaco2.srdata.import_patches import PatchesInputError, import_patches
from srcaco2.srdata.patches import PatchNameError, fold_dir_name, parse_patch_name, patch_relpath
from srcaco2.srdata.schema import (
    MARKERS,
    SCALES,
    SPLITS,
    StoreFormatError,
    read_hr_patch,
    read_lr_patch,
    split_name,
)
from srcaco2.srdata.store import Store, roi_path
from srcaco2.srdata.verify import verify_store


def _files(root: str | Path) -> list[str]:
    root = Path(root)
    return sorted(str(p.relative_to(root)) for p in root.rglob("*") if p.is_file())


@pytest.fixture(scope="module")
def exported(shared_store, tmp_path_factory) -> str:
    out = str(tmp_path_factory.mktemp("export") / "patches")
    export_patches(shared_store, out, workers=2)
    return out


@pytest.fixture(scope="module")
def imported(exported, tmp_path_factory) -> tuple[str, dict]:
    path = str(tmp_path_factory.mktemp("import") / "imported.zarr")
    summary = import_patches(exported, path, chunk=512, pixel_size_um=0.1, workers=2)
    return path, summary


def test_export_writes_every_accepted_window_exactly(shared_store, exported):
    root = zarr.open_group(shared_store, mode="r")
    index = Store.of_root(root).index()
    pids = window_pids(index)
    acc = np.flatnonzero(index["accepted"])
    assert len(acc) == 14
    files = _files(exported)
    assert not [f for f in files if Path(f).name.startswith(".")]  # no temporary file left
    assert len([f for f in files if f.endswith(".tif")]) == len(acc) * 3 * 4
    for r in acc:
        t, y0, x0 = (int(index[k][r]) for k in ("tile", "y0", "x0"))
        for ci, m in enumerate(MARKERS):
            hr = tifffile.imread(Path(exported, patch_relpath(t, pids[r], y0, x0, m, 1)))
            assert hr.dtype == np.uint8 and hr.shape == (512, 512)
            np.testing.assert_array_equal(hr, read_hr_patch(root[f"tiles/{t}/hr/0"][ci], y0, x0))
            for si, s in enumerate(SCALES):
                lr = tifffile.imread(Path(exported, patch_relpath(t, pids[r], y0, x0, m, s)))
                assert lr.shape == (512 // s, 512 // s)
                dy, dx = index["shift"][r, ci, si]
                np.testing.assert_array_equal(
                    lr, read_lr_patch(root[f"tiles/{t}/x{s}/0"][ci], y0, x0, dy, dx, s)
                )


def test_export_patch_ids(shared_store, synth):
    index = Store.of_root(zarr.open_group(shared_store, mode="r")).index()
    pids = window_pids(index)
    first = index["tile"] == synth.TILES[0]  # no official ids: acceptance order in (y0, x0) order
    rows = np.flatnonzero(first & index["accepted"])
    rows = rows[np.lexsort((index["x0"][rows], index["y0"][rows]))]
    assert list(pids[rows]) == list(range(len(rows)))
    second = np.flatnonzero((index["tile"] == synth.TILES[1]) & index["accepted"])
    assert list(pids[second]) == list(index["official_patch_id"][second])
    assert (pids[~index["accepted"]] == -1).all()


def test_fold_lists(shared_store, exported):
    index = Store.of_root(zarr.open_group(shared_store, mode="r")).index()
    pids = window_pids(index)
    for split in SPLITS:
        rows = np.flatnonzero(index["accepted"] & (index["split"] == SPLITS.index(split)))
        keys = sorted(
            (int(index["tile"][r]), int(index["y0"][r]), int(index["x0"][r]), int(pids[r])) for r in rows
        )
        for s in SCALES:
            for m in MARKERS:
                d = Path(exported, "folds", fold_dir_name(split, s, m))
                h_l = d.joinpath("h_l.txt").read_text().splitlines()
                l_h = d.joinpath("l_h.txt").read_text().splitlines()
                want = [
                    f"{patch_relpath(t, p, y, x, m, 1)},{patch_relpath(t, p, y, x, m, s)}"
                    for t, y, x, p in keys
                ]
                assert h_l == want  # documented order: (tile, y0, x0)
                assert l_h == [",".join(line.split(",")[::-1]) for line in h_l]
                for line in h_l:
                    assert all(Path(exported, f).is_file() for f in line.split(","))


def test_export_subset(shared_store, tmp_path):
    res = export_patches(shared_store, tmp_path, split="val", markers=["CELL2"], scales=[4])
    files = _files(tmp_path)
    assert res["windows"] == 3 and res["files"] == 6
    assert {f.split("/")[0] for f in files} == {"hr_div_1", "hr_div_4", "folds"}
    assert all(f.endswith("_CELL2.tif") for f in files if f.endswith(".tif"))
    assert [f for f in files if f.startswith("folds")] == [
        f"folds/{fold_dir_name('val', 4, 'CELL2')}/h_l.txt",
        f"folds/{fold_dir_name('val', 4, 'CELL2')}/l_h.txt",
    ]


@pytest.mark.parametrize(
    ("kwargs", "needle"),
    [
        ({"split": "dev"}, "unknown split"),
        ({"markers": ["CELL7"]}, "not in this store"),
        ({"scales": [3]}, "scales"),
    ],
)
def test_export_bad_options(shared_store, tmp_path, kwargs, needle):
    with pytest.raises(ValueError, match=needle):
        export_patches(shared_store, tmp_path, **kwargs)


def test_round_trip_byte_identical(exported, imported, tmp_path):
    path, summary = imported
    assert summary["conflicts"] == [] and summary["windows"] == 14
    assert summary["splits"] == {"train": 7, "val": 3, "test": 4}
    again = tmp_path / "again"
    export_patches(path, again, workers=2)
    a, b = _files(exported), _files(again)
    assert a == b
    match, mismatch, errors = filecmp.cmpfiles(exported, again, a, shallow=False)
    assert mismatch == [] and errors == [] and len(match) == len(a)


def test_imported_store_reads_every_patch(exported, imported):
    path, _ = imported
    assert verify_store(path) == []
    root = zarr.open_group(path, mode="r")
    index = Store.of_root(root).index()
    assert index["accepted"].all() and (index["size"] == 640).all()
    hr_files = sorted(Path(exported, "hr_div_1").glob("*.tif"))
    assert len(index["tile"]) * 3 == len(hr_files)
    for f in hr_files:
        p = parse_patch_name(f.name)
        (r,) = np.flatnonzero((index["tile"] == p.tile) & (index["y0"] == p.y0) & (index["x0"] == p.x0))
        assert index["official_patch_id"][r] == p.pid
        c = MARKERS.index(p.marker)
        np.testing.assert_array_equal(
            read_hr_patch(root[f"tiles/{p.tile}/hr/0"][c], p.y0, p.x0), tifffile.imread(f)
        )
        for si, s in enumerate(SCALES):
            lr_file = Path(exported, patch_relpath(p.tile, p.pid, p.y0, p.x0, p.marker, s))
            dy, dx = index["shift"][r, c, si]
            got = read_lr_patch(root[f"tiles/{p.tile}/x{s}/0"][c], p.y0, p.x0, dy, dx, s)
            np.testing.assert_array_equal(got, tifffile.imread(lr_file))


def test_imported_splits_roi_and_coverage(shared_store, imported, synth):
    path, _ = imported
    src = Store.of_root(zarr.open_group(shared_store, mode="r")).index()
    root = zarr.open_group(path, mode="r")
    index = Store.of_root(root).index()
    for r in range(len(index["tile"])):
        (s,) = np.flatnonzero(
            (src["tile"] == index["tile"][r]) & (src["y0"] == index["y0"][r]) & (src["x0"] == index["x0"][r])
        )
        assert split_name(index["split"][r]) == split_name(src["split"][s])
    for t in synth.TILES:
        hr = root[f"tiles/{t}/hr/0"][...]
        cov = root[f"tiles/{t}/coverage/0"][...]
        want = np.zeros_like(cov)
        for r in np.flatnonzero(index["tile"] == t):
            y0, x0 = int(index["y0"][r]), int(index["x0"][r])
            want[y0 + 64 : y0 + 576, x0 + 64 : x0 + 576] = 1
        np.testing.assert_array_equal(cov, want)
        assert not hr[:, cov == 0].any()  # nothing outside the released patches
        np.testing.assert_array_equal(root[roi_path(t)][...], (hr[2] >= 4).astype(np.uint8))
        assert hr.shape[1] % 512 == 0 and root[f"tiles/{t}/x8/0"].shape[1] * 8 == hr.shape[1]
    rows = np.flatnonzero(index["tile"] == synth.TILES[0])
    r = rows[0]
    y0, x0 = int(index["y0"][r]), int(index["x0"][r])
    roi = root[roi_path(synth.TILES[0])][y0 + 256 : y0 + 384, x0 + 256 : x0 + 384]
    assert index["roi_fraction"][r] == pytest.approx(roi.mean())


def _copy(src: str, dst: Path) -> Path:
    shutil.copytree(src, dst)
    return dst


def test_import_without_folds(exported, tmp_path, caplog):
    patches = _copy(exported, tmp_path / "p")
    shutil.rmtree(patches / "folds")
    with caplog.at_level(logging.WARNING):
        res = import_patches(patches, str(tmp_path / "s.zarr"), chunk=512)
    assert res["splits"] == {"none": 14} and "no fold lists" in caplog.text
    assert (Store.of_root(zarr.open_group(str(tmp_path / "s.zarr"), mode="r")).index()["split"] == -1).all()


def test_import_reports_conflicting_lr_patch(exported, tmp_path):
    patches = _copy(exported, tmp_path / "p")
    victim = sorted((patches / "hr_div_8").glob("tile_LowRes128-3_*_CELL0.tif"))[1]
    data = tifffile.imread(victim)
    data[:] = 255 - data
    tifffile.imwrite(victim, data)
    res = import_patches(patches, str(tmp_path / "s.zarr"), chunk=512)
    assert res["conflicts"], res
    root = zarr.open_group(str(tmp_path / "s.zarr"), mode="r")
    index = Store.of_root(root).index()
    for f in (patches / "hr_div_8").glob("*.tif"):
        rel = f"hr_div_8/{f.name}"
        p = parse_patch_name(f.name)
        (r,) = np.flatnonzero((index["tile"] == p.tile) & (index["y0"] == p.y0) & (index["x0"] == p.x0))
        c = MARKERS.index(p.marker)
        dy, dx = index["shift"][r, c, 2]
        same = np.array_equal(
            read_lr_patch(root[f"tiles/{p.tile}/x8/0"][c], p.y0, p.x0, dy, dx, 8), tifffile.imread(f)
        )
        assert same == (rel not in res["conflicts"]), rel


def test_import_refuses_existing_store(imported, exported, tmp_path):
    path, _ = imported
    with pytest.raises(StoreFormatError, match="already exists"):
        import_patches(exported, path)
    dst = str(tmp_path / "s.zarr")
    shutil.copytree(path, dst)
    assert import_patches(exported, dst, overwrite=True, chunk=512)["windows"] == 14


def test_import_malformed_name(exported, tmp_path):
    patches = _copy(exported, tmp_path / "p")
    (patches / "hr_div_4" / "notes.tif").write_bytes(b"")
    with pytest.raises(PatchNameError, match=r"hr_div_4/notes.tif.*tile_LowRes\{1024/s\}"):
        import_patches(patches, str(tmp_path / "s.zarr"))
    assert not (tmp_path / "s.zarr").exists()


def test_import_missing_lr(exported, tmp_path):
    patches = _copy(exported, tmp_path / "p")
    victim = sorted((patches / "hr_div_2").glob("*.tif"))[0]
    victim.unlink()
    with pytest.raises(
        PatchesInputError, match="1 patch file.*missing: hr_div_2/" + victim.name.replace(".tif", "")
    ):
        import_patches(patches, str(tmp_path / "s.zarr"))


def test_import_bad_folders_and_folds(exported, tmp_path):
    with pytest.raises(PatchesInputError, match="no hr_div_1/"):
        import_patches(tmp_path, str(tmp_path / "s.zarr"))
    patches = _copy(exported, tmp_path / "p")
    with pytest.raises(PatchesInputError, match="holds no caco2_"):
        import_patches(patches, str(tmp_path / "s.zarr"), folds=tmp_path)
    fold = patches / "folds" / fold_dir_name("val", 8, "CELL1") / "h_l.txt"
    lines = fold.read_text().splitlines()
    fold.write_text("\n".join([*lines, lines[0].replace("_CELL", "x_CELL", 1)]) + "\n")
    with pytest.raises(PatchNameError, match=f"{fold.name}:{len(lines) + 1}"):
        import_patches(patches, str(tmp_path / "s.zarr"))
    foreign = (patches / "folds" / fold_dir_name("test", 8, "CELL1") / "h_l.txt").read_text().splitlines()[0]
    fold.write_text("\n".join([*lines, foreign]) + "\n")
    with pytest.raises(PatchesInputError, match="also listed in another split"):
        import_patches(patches, str(tmp_path / "s.zarr"))
    assert not os.path.exists(tmp_path / "s.zarr")
