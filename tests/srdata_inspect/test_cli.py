"""`srdata info | verify | export-patches | import-patches` through click's CliRunner."""

from __future__ import annotations

import json
import shutil
from pathlib import Path

import pytest
import zarr
from click.testing import CliRunner

from srcaco2.cli.srdata import main


@pytest.fixture
def run():
    runner = CliRunner()

    def invoke(*args: str):
        return runner.invoke(main, [str(a) for a in args], catch_exceptions=False)

    return invoke


def test_info_table_and_json(run, shared_store):
    res = run("info", shared_store)
    assert res.exit_code == 0, res.output
    assert "CELL0, CELL1, CELL2" in res.output
    lines = res.output.splitlines()
    assert any(line.split()[:3] == ["train", "7", "9"] for line in lines)
    assert any(line.startswith("3 ") and "3x1280x1280 / 1x512x512" in line for line in lines)
    res = run("info", shared_store, "--json")
    assert res.exit_code == 0
    d = json.loads(res.output)
    assert d["windows"]["test"] == {"accepted": 4, "total": 5} and len(d["tiles"]) == 2


def test_info_bad_paths(run, tmp_path):
    res = run("info", tmp_path / "missing.zarr")
    assert res.exit_code == 1 and "no such file or directory" in res.output and "srdata build" in res.output
    res = run("info", tmp_path)
    assert res.exit_code == 1 and "not a Zarr v3 store" in res.output
    zarr.open_group(str(tmp_path / "plain.zarr"), mode="w")
    res = run("info", tmp_path / "plain.zarr")
    assert res.exit_code == 1 and "not a srcaco2 store" in res.output


def test_info_other_version(run, store, tmp_path):
    root = zarr.open_group(store, mode="r+")
    root.attrs["srcaco2"] = dict(root.attrs["srcaco2"]) | {"format_version": 7}
    res = run("info", store)
    assert res.exit_code == 1 and "format_version 7" in res.output and "rebuild" in res.output
    res = run("export-patches", store, tmp_path / "o")
    assert res.exit_code == 1 and "format_version 7" in res.output
    res = run("verify", store)
    assert res.exit_code == 1 and "format_version 7" in res.output


def test_verify(run, store):
    res = run("verify", store)
    assert res.exit_code == 0 and res.output.startswith("OK ")
    f = next(Path(store, "tiles", "7", "x2", "0", "c").rglob("*"))
    while f.is_dir():
        f = next(f.iterdir())
    f.write_bytes(f.read_bytes()[:10])
    res = run("verify", store)
    assert res.exit_code == 1
    assert "PROBLEM tiles/7/x2/0: chunk" in res.output and "1 problem(s)" in res.output
    assert run("verify", store, "--no-chunks").exit_code == 0


def test_export_and_import(run, shared_store, tmp_path):
    out = tmp_path / "patches"
    res = run(
        "export-patches", shared_store, out, "--split", "test", "--markers", "CELL1,CELL2", "--scales", "8"
    )
    assert res.exit_code == 0, res.output
    assert "wrote 16 patch files of 4 windows and 4 fold lists" in res.output
    res = run("import-patches", out, tmp_path / "s.zarr", "--chunk", "512", "--pixel-size-um", "0.1")
    assert res.exit_code == 0, res.output
    assert "imported 4 windows of 1 tiles (test 4)" in res.output
    d = json.loads(run("info", tmp_path / "s.zarr", "--json").output)
    assert (
        d["markers"] == ["CELL1", "CELL2"]
        and d["scales"] == [8]
        and d["pixel_size_um"]["x8"] == pytest.approx(0.8)
    )
    assert run("verify", tmp_path / "s.zarr").exit_code == 0
    res = run("import-patches", out, tmp_path / "s.zarr")
    assert res.exit_code == 1 and "already exists" in res.output


@pytest.mark.parametrize(
    ("args", "needle"),
    [
        (["--split", "dev"], "Invalid value for '--split'"),
        (["--markers", "CELL3"], "unknown marker(s) ['CELL3']"),
        (["--scales", "2,3"], "unknown scale(s) ['3']"),
    ],
)
def test_export_unknown_options(run, shared_store, tmp_path, args, needle):
    res = run("export-patches", shared_store, tmp_path / "o", *args)
    assert res.exit_code == 2 and needle in res.output


def test_export_option_not_in_store(run, shared_store, tmp_path):
    run(
        "export-patches",
        shared_store,
        tmp_path / "p",
        "--markers",
        "CELL2",
        "--scales",
        "4",
        "--split",
        "val",
    )
    run("import-patches", tmp_path / "p", tmp_path / "s.zarr", "--chunk", "512")
    res = run("export-patches", tmp_path / "s.zarr", tmp_path / "o", "--markers", "CELL0")
    assert res.exit_code == 1 and "markers ['CELL0'] not in this store" in res.output
    res = run("export-patches", tmp_path / "nothing.zarr", tmp_path / "o")
    assert res.exit_code == 1 and "no such file or directory" in res.output


def test_import_bad_input(run, shared_store, tmp_path):
    res = run("import-patches", tmp_path / "nope", tmp_path / "s.zarr")
    assert res.exit_code == 1 and "no such folder" in res.output
    res = run("import-patches", tmp_path, tmp_path / "s.zarr")
    assert res.exit_code == 1 and "no hr_div_1/ folder" in res.output
    out = tmp_path / "p"
    run("export-patches", shared_store, out, "--split", "val", "--scales", "2")
    bad = out / "hr_div_1" / "tile_HighRes1024-7_x_0_640_0_640_CELL0.tif"
    bad.write_bytes(b"")
    res = run("import-patches", out, tmp_path / "s.zarr")
    assert res.exit_code == 1 and bad.name in res.output and "tile_HighRes1024-{tile}_{pid}" in res.output
    bad.unlink()
    lr = next((out / "hr_div_2").iterdir())
    shutil.move(lr, tmp_path / lr.name)
    res = run("import-patches", out, tmp_path / "s.zarr")
    assert res.exit_code == 1 and f"missing: hr_div_2/{lr.name}" in res.output
    assert not (tmp_path / "s.zarr").exists()
