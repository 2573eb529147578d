"""Bad input from the command line: one clear message, a non-zero exit, no traceback, nothing half-written.

Each test feeds one kind of bad input that the audit found badly handled (a traceback, exit 0, an
unclear message or a left-over output) to `srdata` / `srtrain` through click's `CliRunner`, and
checks the exit code, the absence of "Traceback" and the words that say what, where and how to fix.
Cases already pinned by tests elsewhere (build inputs, loader arguments, kernels, checkpoints,
config keys) are not repeated here.
"""

from __future__ import annotations

import contextlib
import json
import os
import shutil
import subprocess
from pathlib import Path

import pytest
from click.testing import CliRunner

TINY = [
    "data.h_size=32", "data.batch_size=2", "data.samples_per_epoch=4", "model.overrides.num_features=4",
    "model.overrides.num_trunk_layers=1", "train.tensorboard=false", "eval.val_windows=1",
    "train.max_steps=1", "eval.every=100",
]  # fmt: skip
"""A VDSR of width 4 trained for one step on 2 crops of 32² (seconds on one CPU core)."""


def _sets(*extra: str) -> list[str]:
    return [a for s in (*TINY, *extra) for a in ("--set", s)]


def _srdata(*args: object):
    from srcaco2.cli.srdata import main

    return CliRunner().invoke(main, [str(a) for a in args])


def _srtrain(*args: object):
    from srcaco2.cli.srtrain import main

    return CliRunner().invoke(main, [str(a) for a in args])


def _refused(res, *words: str, code: int | None = None) -> None:
    """Non-zero exit, no traceback (printed or raised), and every word in the message."""
    assert res.exit_code != 0, res.output
    if code is not None:
        assert res.exit_code == code, res.output
    assert "Traceback" not in res.output
    assert res.exception is None or isinstance(res.exception, SystemExit), repr(res.exception)
    for w in words:
        assert w in res.output, (w, res.output)


@pytest.fixture(scope="session")
def raw(tmp_path_factory: pytest.TempPathFactory) -> Path:
    """Three synthetic 1024² tiles in the official raw layout."""
    from srcaco2.srdata.synth import SynthParams, write_synth

    root = tmp_path_factory.mktemp("bad_raw") / "raw"
    # seed 5: accepted windows on every tile (so train, val and test all have some)
    write_synth(root, n_tiles=3, params=SynthParams(hr_size=1024, seed=5))
    return root


@pytest.fixture(scope="session")
def store(raw: Path, tmp_path_factory: pytest.TempPathFactory) -> str:
    """A store built from `raw` (no registration, 256 px chunks); read only."""
    path = tmp_path_factory.mktemp("bad_store") / "s.zarr"
    res = _srdata("build", raw, path, "--no-register", "--chunk", "256")
    assert res.exit_code == 0, res.output
    return str(path)


@pytest.fixture(scope="session")
def run_dir(store: str, tmp_path_factory: pytest.TempPathFactory) -> Path:
    """A one-step VDSR ×4 CELL2 run (best.pt, last.pt)."""
    out = tmp_path_factory.mktemp("bad_run") / "run"
    res = _srtrain("fit", "--store", store, "--method", "vdsr", "--scale", "4", "--marker", "CELL2",
                   "--device", "cpu", "--out", out, *_sets())  # fmt: skip
    assert res.exit_code == 0, res.output
    return out


@pytest.fixture
def not_a_store(tmp_path: Path) -> Path:
    d = tmp_path / "folder"
    d.mkdir()
    (d / "notes.txt").write_text("not a store")
    return d


# --- stores that are not stores ------------------------------------------------------------------


def test_eval_and_fit_on_a_folder_that_is_not_a_store(not_a_store, tmp_path):
    res = _srtrain("eval", "--store", not_a_store, "--marker", "CELL2", "--scale", "4", "--method", "bicubic",
                   "--out", tmp_path / "ev")  # fmt: skip
    _refused(res, str(not_a_store), "is not a srcaco2 store", "srdata build")
    assert not (tmp_path / "ev").exists()
    res = _srtrain("fit", "--store", not_a_store, "--method", "vdsr", "--scale", "4", "--marker", "CELL2",
                   "--device", "cpu", "--out", tmp_path / "run", *_sets())  # fmt: skip
    _refused(res, str(not_a_store), "is not a srcaco2 store", "srdata build")
    assert not (tmp_path / "run" / "config.yaml").exists()


def test_predict_on_a_folder_that_is_not_a_store(not_a_store, tmp_path):
    res = _srtrain(
        "predict", "--store", not_a_store, "--method", "bicubic", "--scale", "4", "--device", "cpu"
    )
    _refused(res, str(not_a_store), "not a srcaco2 store", "srdata build")
    assert "No group found" not in res.output


# --- methods without weights ---------------------------------------------------------------------


def test_eval_network_without_checkpoint_and_misspelled_method(store, tmp_path):
    base = ["eval", "--store", store, "--marker", "CELL2", "--scale", "4", "--device", "cpu"]
    res = _srtrain(*base, "--method", "swinir", "--out", tmp_path / "a")
    _refused(res, "'swinir' needs trained weights", "--checkpoint")
    res = _srtrain(*base, "--method", "bicubc", "--out", tmp_path / "b")
    _refused(res, "no method 'bicubc'", "Did you mean 'bicubic'")
    assert "batch/s" not in res.output  # no progress bar before a refused input
    assert not (tmp_path / "a").exists() and not (tmp_path / "b").exists()


def test_predict_network_without_checkpoint_writes_nothing(store, tmp_path):
    out = tmp_path / "pred.zarr"
    res = _srtrain("predict", "--store", store, "--method", "swinir", "--scale", "4", "--device", "cpu",
                   "--out-store", out)  # fmt: skip
    _refused(res, "'swinir' needs trained weights", "--checkpoint")
    assert not out.exists()  # before the fix: exit 0 and tiles "predicted" by an untrained network
    res = _srtrain("predict", "--store", store, "--method", "vdsrr", "--scale", "4", "--device", "cpu",
                   "--out-store", out)  # fmt: skip
    _refused(res, "Did you mean 'vdsr'")
    assert not out.exists()


def test_eval_checkpoint_of_another_scale_says_how_to_fix(store, run_dir, tmp_path):
    res = _srtrain("eval", "--store", store, "--marker", "CELL2", "--scale", "2", "--device", "cpu",
                   "--checkpoint", run_dir / "best.pt", "--out", tmp_path / "ev")  # fmt: skip
    _refused(res, "holds scale=4", "scale=2 was requested", "pass --scale 4")
    assert not (tmp_path / "ev").exists()


# --- devices -------------------------------------------------------------------------------------


def test_unknown_device(store, tmp_path):
    res = _srtrain("fit", "--store", store, "--method", "vdsr", "--scale", "4", "--marker", "CELL2",
                   "--device", "tpu", "--out", tmp_path / "run", *_sets())  # fmt: skip
    _refused(res, "device='tpu'", "cpu, cuda, cuda:N")
    assert not (tmp_path / "run" / "config.yaml").exists()
    res = _srtrain("predict", "--store", store, "--method", "bicubic", "--scale", "4", "--device", "gpu0",
                   "--out-store", tmp_path / "p.zarr")  # fmt: skip
    _refused(res, "--device", "device='gpu0'")
    res = _srtrain("eval", "--store", store, "--marker", "CELL2", "--scale", "4", "--method", "bicubic",
                   "--device", "tpu", "--out", tmp_path / "ev")  # fmt: skip
    _refused(res, "device='tpu'")


def test_cuda_asked_for_without_a_gpu(store, tmp_path):
    import torch

    if torch.cuda.is_available():
        pytest.skip("this machine has a GPU")
    res = _srtrain("fit", "--store", store, "--method", "vdsr", "--scale", "4", "--marker", "CELL2",
                   "--device", "cuda", "--out", tmp_path / "run", *_sets())  # fmt: skip
    _refused(res, "no CUDA GPU", "--device cpu")
    res = _srtrain("eval", "--store", store, "--marker", "CELL2", "--scale", "4", "--method", "bicubic",
                   "--device", "cuda", "--out", tmp_path / "ev")  # fmt: skip
    _refused(res, "no CUDA GPU", "--device cpu")


# --- config files --------------------------------------------------------------------------------


def test_fit_config_that_is_not_yaml(tmp_path):
    bad = tmp_path / "run.yaml"
    bad.write_text("data: [1, 2\n")
    res = _srtrain("fit", "--config", bad, "--out", tmp_path / "run")
    _refused(res, str(bad), "not valid YAML", "--config")


# --- srtrain table -------------------------------------------------------------------------------


def _fake_eval(d: Path, split: str, method: str = "bicubic") -> Path:
    d.mkdir(parents=True)
    metrics = {k: 1.0 for k in ("psnr", "nrmse", "ssim", "roi_psnr", "roi_nrmse", "roi_ssim")}
    summary = {"method": method, "scale": 4, "marker": "CELL2", "split": split, "metrics": metrics}
    (d / "summary.json").write_text(json.dumps(summary))
    return d


def test_table_refusals_leave_no_output_folder(tmp_path):
    out = tmp_path / "tables"
    res = _srtrain(
        "table", _fake_eval(tmp_path / "a", "test"), _fake_eval(tmp_path / "b", "val", "vdsr"), "--out", out
    )
    _refused(res, "different splits", "one --split")
    assert not out.exists()
    broken = tmp_path / "broken"
    broken.mkdir()
    (broken / "summary.json").write_text("{")
    res = _srtrain("table", broken, "--out", out)
    _refused(res, str(broken / "summary.json"), "not valid JSON", "srtrain eval")
    assert not out.exists()
    res = _srtrain("table", _fake_eval(tmp_path / "c", "test"), "--out", out)
    assert res.exit_code == 0, res.output
    assert (out / "table4_roi.md").exists()


# --- srdata import-patches -----------------------------------------------------------------------


@pytest.fixture(scope="session")
def patches(store: str, tmp_path_factory: pytest.TempPathFactory) -> Path:
    out = tmp_path_factory.mktemp("bad_patches") / "p"
    res = _srdata("export-patches", store, out, "--split", "test", "--markers", "CELL2", "--scales", "4")
    assert res.exit_code == 0, res.output
    return out


def test_import_unreadable_patch_names_the_file_and_leaves_no_store(patches, tmp_path):
    src = tmp_path / "p"
    shutil.copytree(patches, src)
    victim = sorted((src / "hr_div_4").glob("*.tif"))[-1]
    victim.write_bytes(b"hello, not a TIFF")
    dst = tmp_path / "s.zarr"
    res = _srdata("import-patches", src, dst, "--chunk", "128")
    _refused(res, victim.name, "not a readable TIFF", "copy it again")
    assert not dst.exists()  # no half-written store that could be mistaken for a finished one


def test_import_into_an_existing_store_points_to_overwrite(patches, tmp_path):
    dst = tmp_path / "s.zarr"
    assert _srdata("import-patches", patches, dst, "--chunk", "128").exit_code == 0
    res = _srdata("import-patches", patches, dst, "--chunk", "128")
    _refused(res, str(dst), "already exists", "--overwrite")
    assert "mode 'w-'" not in res.output
    assert _srdata("import-patches", patches, dst, "--chunk", "128", "--overwrite").exit_code == 0


# --- srdata synth --------------------------------------------------------------------------------


def test_synth_into_a_non_empty_folder_needs_overwrite_and_warns_about_windowless_sizes(tmp_path):
    out = tmp_path / "raw"
    res = _srdata("synth", out, "--tiles", "2", "--hr-size", "200")
    assert res.exit_code == 0 and "below one 640 px window" in res.output
    res = _srdata("synth", out, "--tiles", "1", "--hr-size", "200")
    _refused(res, "is not empty", "--overwrite", code=1)
    assert (out / "HighRes1024" / "HighRes1024-2.tif").exists()  # untouched
    res = _srdata("synth", out, "--tiles", "1", "--hr-size", "200", "--overwrite")
    assert res.exit_code == 0, res.output
    assert sorted(p.name for p in (out / "HighRes1024").iterdir()) == ["HighRes1024-1.tif"]  # no mixed set


def test_build_into_a_store_of_other_raw_data_is_refused(raw, tmp_path):
    other = tmp_path / "other_raw"
    assert _srdata("synth", other, "--tiles", "3", "--hr-size", "768", "--seed", "9").exit_code == 0
    store = tmp_path / "s.zarr"
    assert _srdata("build", raw, store, "--no-register", "--chunk", "256").exit_code == 0
    res = _srdata("build", other, store, "--no-register", "--chunk", "256")
    _refused(res, "was built from", str(raw), "--overwrite", code=1)
    assert "0 built" not in res.output


# --- srtrain demo --------------------------------------------------------------------------------


def test_demo_refuses_bad_set_before_any_work_and_a_file_as_out(tmp_path):
    out = tmp_path / "demo"
    res = _srtrain("demo", "--out", out, "--set", "train.epoch=3")
    _refused(res, "unknown config key 'train.epoch'", "Did you mean 'train.epochs'")
    assert "synthesising" not in res.output and not out.exists()  # refused before synthesis and build
    afile = tmp_path / "afile"
    afile.write_text("x")
    res = _srtrain("demo", "--out", afile)
    _refused(res, str(afile), "is not a directory", "--out")
    assert "Errno" not in res.output


@pytest.mark.parametrize(
    "args, words",
    [
        (["--tile-size", "0"], ["--tile-size", "x>=1"]),
        (["--tile-size", "16", "--overlap", "32"], ["--overlap 32 must be smaller than --tile-size 16"]),
        (["--halo", "-1"], ["--halo", "x>=0"]),
        (["--batch-size", "0"], ["--batch-size", "x>=1"]),
    ],
)
def test_predict_bad_tiling_options_write_nothing(store, tmp_path, args, words):
    out = tmp_path / "pred.zarr"
    res = _srtrain("predict", "--store", store, "--method", "bicubic", "--scale", "4", "--device", "cpu",
                   "--out-store", out, *args)  # fmt: skip
    _refused(res, *words, code=2)
    assert not out.exists()


def test_import_malformed_patch_name_says_how_to_fix(patches, tmp_path):
    src = tmp_path / "p"
    shutil.copytree(patches, src)
    victim = sorted((src / "hr_div_1").glob("*.tif"))[0]
    victim.rename(victim.with_name("tile_HighRes1024-3_zz_0_640_CELL2.tif"))
    dst = tmp_path / "s.zarr"
    res = _srdata("import-patches", src, dst, "--chunk", "128")
    _refused(res, "tile_HighRes1024-3_zz_0_640_CELL2.tif", "not a released patch name", "rename the file")
    assert not dst.exists()


# --- damaged stores, unwritable targets, option ranges (issue 16, item 6) -------------------------


def _first_window_chunk(store: str, split: str = "test") -> tuple[int, int, int, int]:
    """(tile, c, iy, ix) of the HR CELL2 chunk under the centre of the split's first window."""
    import numpy as np

    from srcaco2.srdata.schema import split_code
    from srcaco2.srdata.store import Store, open_root

    index = Store.of_root(open_root(store, mode="r")).index()
    r = int(np.flatnonzero((index["split"] == split_code(split)) & index["accepted"])[0])
    chunk = 256  # the `store` fixture's HR chunk edge
    t, y0, x0 = int(index["tile"][r]), int(index["y0"][r]), int(index["x0"][r])
    return t, 2, (y0 + 320) // chunk, (x0 + 320) // chunk


def _damaged_copy(store: str, dst: Path, kind: str, acq: str = "hr") -> tuple[Path, str]:
    """A copy of `store` with one chunk under the first test window flipped or deleted; (copy, chunk key)."""
    shutil.copytree(store, dst)
    t, c, iy, ix = _first_window_chunk(store)  # chunk grids align across scales: same (iy, ix) at x4
    key = f"tiles/{t}/{acq}/0/c/{c}/{iy}/{ix}"
    f = dst / key
    if kind == "flip":
        data = bytearray(f.read_bytes())
        data[len(data) // 2] ^= 0x10
        f.write_bytes(bytes(data))
    else:
        f.unlink()
    return dst, key


def _one_error_line(res) -> str:
    lines = [ln for ln in res.output.splitlines() if ln.startswith("Error")]
    assert len(lines) == 1, res.output
    return lines[0]


@contextlib.contextmanager
def _read_only(path: Path):
    """Make the folder `path` unwritable (chmod; as root, where permissions do not bind: chattr +i)."""
    if os.geteuid() != 0:
        path.chmod(0o555)
        try:
            yield
        finally:
            path.chmod(0o755)
        return
    got = subprocess.run(["chattr", "+i", str(path)], capture_output=True)
    if got.returncode != 0:
        pytest.skip(f"cannot make a folder read-only as root here (chattr: {got.stderr.decode().strip()})")
    try:
        yield
    finally:
        subprocess.run(["chattr", "-i", str(path)], check=True)


@pytest.mark.parametrize("kind", ["flip", "delete"])
def test_export_from_a_damaged_store_names_the_chunk_and_writes_nothing(store, tmp_path, kind):
    bad, key = _damaged_copy(store, tmp_path / "bad.zarr", kind)
    out = tmp_path / "patches"
    res = _srdata("export-patches", bad, out, "--split", "test", "--markers", "CELL2", "--scales", "4")
    _refused(res, key, "srdata verify", code=1)
    line = _one_error_line(res)
    assert ("checksum" in line) if kind == "flip" else ("is missing" in line)
    assert not out.exists()  # before: 15 patch files and no fold lists
    assert [p.name for p in tmp_path.iterdir() if p.name.startswith(".")] == []  # no temporary folder left


def test_export_into_an_existing_folder_keeps_it_untouched_on_failure(store, tmp_path):
    bad, key = _damaged_copy(store, tmp_path / "bad.zarr", "flip")
    out = tmp_path / "patches"
    out.mkdir()
    (out / "mine.txt").write_text("keep me")
    res = _srdata("export-patches", bad, out, "--split", "test", "--markers", "CELL2")
    _refused(res, "not empty", "--overwrite", code=1)  # never merged into
    res = _srdata("export-patches", bad, out, "--split", "test", "--markers", "CELL2", "--overwrite")
    _refused(res, key, code=1)
    assert sorted(p.name for p in out.iterdir()) == ["mine.txt"]
    res = _srdata("export-patches", store, out, "--split", "test", "--markers", "CELL2", "--overwrite")
    assert res.exit_code == 0, res.output
    assert "mine.txt" not in {p.name for p in out.iterdir()}  # replaced as a whole


@pytest.mark.parametrize("kind", ["flip", "delete"])
def test_eval_on_a_damaged_store_refuses_with_one_line(store, tmp_path, kind):
    bad, key = _damaged_copy(store, tmp_path / "bad.zarr", kind)
    res = _srtrain("eval", "--store", bad, "--marker", "CELL2", "--scale", "4", "--method", "bicubic",
                   "--device", "cpu", "--out", tmp_path / "ev")  # fmt: skip
    _refused(res, key, "srdata verify", code=1)
    _one_error_line(res)
    assert not (tmp_path / "ev" / "summary.json").exists()


@pytest.mark.parametrize("kind", ["flip", "delete"])
def test_predict_on_a_damaged_store_names_the_chunk_and_writes_nothing(store, tmp_path, kind):
    bad, key = _damaged_copy(store, tmp_path / "bad.zarr", kind, acq="x4")
    tile = key.split("/")[1]
    out = tmp_path / "pred.zarr"
    res = _srtrain("predict", "--store", bad, "--method", "bicubic", "--scale", "4", "--marker", "CELL2",
                   "--tile", tile, "--device", "cpu", "--out-store", out)  # fmt: skip
    _refused(res, key, "srdata verify", code=1)
    _one_error_line(res)
    assert not (out / "predictions").exists()
    assert not Path(f"{out}.lease").exists() and not Path(f"{bad}.lease").exists()


def test_predict_into_an_unwritable_store_writes_nothing(store, tmp_path):
    target = tmp_path / "target.zarr"
    target.mkdir()
    with _read_only(target):
        res = _srtrain("predict", "--store", store, "--method", "bicubic", "--scale", "4", "--device", "cpu",
                       "--out-store", target)  # fmt: skip
    _refused(res, str(target), "cannot be written", "--out-store", code=1)
    _one_error_line(res)
    assert list(target.iterdir()) == []


def test_synth_into_a_read_only_folder(tmp_path):
    out = tmp_path / "ro"
    out.mkdir()
    with _read_only(out):
        res = _srdata("synth", out, "--tiles", "1", "--hr-size", "64")
    _refused(res, str(out), "cannot be written", "writable OUT folder", code=1)
    _one_error_line(res)
    assert list(out.iterdir()) == []
    under_a_file = tmp_path / "afile"
    under_a_file.write_text("x")
    res = _srdata("synth", under_a_file / "raw", "--tiles", "1", "--hr-size", "64")
    _refused(res, "afile", "writable OUT folder", code=1)


@pytest.mark.parametrize(
    "args, words",
    [
        (["--pixel-size-um", "-1"], ["--pixel-size-um", "-1", "x>0"]),
        (["--pixel-size-um", "0"], ["--pixel-size-um", "x>0"]),
        (["--roi-threshold", "-5"], ["--roi-threshold", "-5", "0<=x<=255"]),
        (["--roi-threshold", "256"], ["--roi-threshold", "0<=x<=255"]),
        (["--roi-min-fraction", "1.5"], ["--roi-min-fraction"]),
        (["--chunk", "4"], ["--chunk", "x>=8"]),
        (["--workers", "0"], ["--workers", "x>=1"]),
    ],
)
def test_build_option_ranges_are_checked_by_click(raw, tmp_path, args, words):
    out = tmp_path / "s.zarr"
    res = _srdata("build", raw, out, "--no-register", *args)
    _refused(res, *words, code=2)
    assert not out.exists() and not Path(f"{out}.lease").exists()


@pytest.mark.parametrize(
    "cmd, words",
    [
        (["synth", "{tmp}/raw", "--seed", "-1"], ["--seed", "x>=0"]),
        (["synth", "{tmp}/raw", "--tiles", "0"], ["--tiles", "x>=1"]),
        (["import-patches", "{tmp}", "{tmp}/s.zarr", "--pixel-size-um", "-1"], ["--pixel-size-um", "x>0"]),
        (["export-patches", "{tmp}/s.zarr", "{tmp}/out", "--workers", "0"], ["--workers", "x>=1"]),
        (["verify", "{tmp}/s.zarr", "--workers", "0"], ["--workers", "x>=1"]),
    ],
)
def test_other_srdata_option_ranges(tmp_path, cmd, words):
    res = _srdata(*(c.format(tmp=tmp_path) for c in cmd))
    _refused(res, *words, code=2)
    assert sorted(p.name for p in tmp_path.iterdir()) == []


def test_predict_negative_panels_refused(store, tmp_path):
    res = _srtrain("predict", "--store", store, "--method", "bicubic", "--scale", "4", "--device", "cpu",
                   "--out-store", tmp_path / "p.zarr", "--panels", "-1")  # fmt: skip
    _refused(res, "--panels", "x>=0", code=2)
    assert not (tmp_path / "p.zarr").exists()


def test_build_into_a_read_only_folder_names_the_cause(raw, tmp_path):
    parent = tmp_path / "ro"
    parent.mkdir()
    with _read_only(parent):
        res = _srdata("build", raw, parent / "s.zarr", "--no-register")
    _refused(res, str(parent / "s.zarr"), "must be writable", code=1)
    line = _one_error_line(res)
    assert "disk space" not in line and ("not permitted" in line or "Permission denied" in line), line
    assert list(parent.iterdir()) == []


# --- non-finite weights and predictions ----------------------------------------------------------


def test_predict_from_a_checkpoint_with_a_nan_weight_writes_nothing(store, run_dir, tmp_path):
    """Before: an all-zero image and exit 0 (`verify` then said OK). Now refused at load, one line."""
    import numpy as np
    import tifffile
    import torch

    ckpt = torch.load(run_dir / "best.pt", map_location="cpu", weights_only=False)
    key = next(k for k, v in ckpt["model"].items() if v.is_floating_point())
    ckpt["model"][key] = ckpt["model"][key].clone().fill_(float("nan"))
    bad = tmp_path / "nan.pt"
    torch.save(ckpt, bad)
    out = tmp_path / "pred.zarr"
    res = _srtrain("predict", "--store", store, "--checkpoint", bad, "--device", "cpu", "--out-store", out)
    _refused(res, "nan.pt holds non-finite weights", key)
    assert not out.exists()
    image = tmp_path / "lr.tif"
    tifffile.imwrite(image, np.full((32, 32), 20, np.uint8))
    res = _srtrain("predict", "--input", image, "--checkpoint", bad, "--device", "cpu",
                   "--output", tmp_path / "sr.tif")  # fmt: skip
    _refused(res, "non-finite weights")
    assert not (tmp_path / "sr.tif").exists()


def test_a_nan_prediction_never_becomes_pixels():
    import numpy as np
    import torch

    from srcaco2.trainers.evaluate import NonFiniteOutputError
    from srcaco2.trainers.predict import predict_tiled

    def nan_in_one_corner(x):
        y = torch.nn.functional.interpolate(x, scale_factor=2, mode="nearest")
        if x.shape[-1] > 40:  # only the whole-image forward
            y[..., 0, 0] = float("nan")
        return y

    lr = np.full((1, 48, 48), 10, np.uint8)
    with pytest.raises(NonFiniteOutputError, match="NaN / infinite"):
        predict_tiled(nan_in_one_corner, lr, 2, halo=None)
    sink_rows = []

    def blows_up(x):
        return torch.nn.functional.interpolate(x, scale_factor=2, mode="nearest") * float("inf")

    with pytest.raises(NonFiniteOutputError, match=r"output rows 0-"):
        predict_tiled(blows_up, lr, 2, tile=16, overlap=4, halo=2, sink=lambda r0, rows: sink_rows.append(r0))
    assert sink_rows == []  # nothing emitted before the check


def test_predict_input_arguments_are_checked_before_the_model_loads(tmp_path, monkeypatch):
    import numpy as np
    import tifffile

    import srcaco2.trainers.predict_run as predict_run

    def no_load(*args, **kwargs):
        raise AssertionError("the model was loaded before the arguments were checked")

    monkeypatch.setattr(predict_run, "_load_model", no_load)
    image = tmp_path / "lr.tif"
    tifffile.imwrite(image, np.zeros((2, 32, 32), np.uint8))
    jpeg = tmp_path / "lr.jpg"
    jpeg.write_bytes(b"\xff\xd8\xff\xe0 not really")
    base = ["--method", "bicubic", "--scale", "4", "--device", "cpu"]
    _refused(_srtrain("predict", "--input", jpeg, *base), "unknown image format", ".tif")
    _refused(_srtrain("predict", "--input", image, "--output", tmp_path / "sr.png", *base), "sr.png", ".tif")
    _refused(_srtrain("predict", "--input", image, "--channel", "5", *base), "no channel(s) [5]", "has 2")
    (tmp_path / "sr.tif").write_bytes(b"x")
    _refused(_srtrain("predict", "--input", image, "--output", tmp_path / "sr.tif", *base), "--overwrite")


def test_eval_into_an_existing_evaluation_needs_overwrite(store, tmp_path):
    args = ["eval", "--store", store, "--marker", "CELL2", "--scale", "4", "--method", "bicubic",
            "--device", "cpu", "--max-windows", "1", "--out", tmp_path / "ev"]  # fmt: skip
    assert _srtrain(*args).exit_code == 0
    before = (tmp_path / "ev" / "summary.json").read_text()
    _refused(_srtrain(*args), "already holds an evaluation", "--overwrite")
    assert (tmp_path / "ev" / "summary.json").read_text() == before
    assert _srtrain(*args, "--overwrite").exit_code == 0


@pytest.mark.parametrize("value", ["NaN", "Infinity", '"high"'])
def test_table_refuses_a_tampered_summary(store, tmp_path, value):
    ev = tmp_path / "ev"
    assert _srtrain("eval", "--store", store, "--marker", "CELL2", "--scale", "4", "--method", "bicubic",
                    "--device", "cpu", "--max-windows", "1", "--out", ev).exit_code == 0  # fmt: skip
    summary = json.loads((ev / "summary.json").read_text())
    text = json.dumps(summary).replace(json.dumps(summary["metrics"]["roi_psnr"]), value, 1)
    (ev / "summary.json").write_text(text)
    res = _srtrain("table", ev, "--out", tmp_path / "tables")
    _refused(res, "metrics.roi_psnr", "not a finite number", "--overwrite")
    assert not (tmp_path / "tables").exists()


def test_predict_input_into_a_read_only_folder_or_a_full_disk(tmp_path, monkeypatch):
    import errno

    import numpy as np
    import tifffile

    image = tmp_path / "lr.tif"
    tifffile.imwrite(image, np.full((32, 32), 30, np.uint8))
    ro = tmp_path / "ro"
    ro.mkdir()
    base = ["--input", image, "--method", "bicubic", "--scale", "4", "--device", "cpu"]
    with _read_only(ro):
        res = _srtrain("predict", *base, "--output", ro / "sr.tif")
    _refused(res, str(ro), "cannot be written", "writable folder", code=1)
    _one_error_line(res)
    assert list(ro.iterdir()) == []

    from srcaco2.srdata import images

    def full_disk(self, *args, **kwargs):
        raise OSError(errno.ENOSPC, "No space left on device")

    monkeypatch.setattr(images.TiffRowWriter, "write_rows", full_disk)
    res = _srtrain("predict", *base, "--output", tmp_path / "sr.tif")
    _refused(res, "No space left on device", "nothing was left there", code=1)
    assert not (tmp_path / "sr.tif").exists()


def test_a_damaged_index_chunk_names_the_store_and_the_array(store, tmp_path):
    bad = tmp_path / "bad.zarr"
    shutil.copytree(store, bad)
    chunk = next(
        p for p in sorted((bad / "index" / "tile").rglob("*")) if p.is_file() and p.name != "zarr.json"
    )
    data = bytearray(chunk.read_bytes())
    data[len(data) // 2] ^= 0x10
    chunk.write_bytes(bytes(data))
    res = _srtrain("eval", "--store", bad, "--marker", "CELL2", "--scale", "4", "--method", "bicubic",
                   "--device", "cpu", "--out", tmp_path / "ev")  # fmt: skip
    _refused(res, str(bad), "array index/tile cannot be read", "srdata verify", code=1)
    _one_error_line(res)


def test_verify_during_a_live_build_names_the_writer(store, tmp_path):
    from srcaco2.srdata.lease import store_lease

    with store_lease(store, operation="srdata build"):
        res = _srdata("verify", store)
    assert res.exit_code != 0
    assert "another writer holds this store (srdata build" in res.output and "verify it after" in res.output
    assert "rebuild" not in res.output


def test_compare_paper_on_a_synthetic_store_says_so(store, tmp_path):
    ev = tmp_path / "ev"
    assert _srtrain("eval", "--store", store, "--marker", "CELL2", "--scale", "4", "--method", "bicubic",
                    "--device", "cpu", "--max-windows", "1", "--out", ev).exit_code == 0  # fmt: skip
    res = _srtrain("table", ev, "--out", tmp_path / "t", "--compare-paper")
    assert res.exit_code == 0, res.output
    md = (tmp_path / "t" / "delta_paper.md").read_text()
    assert "Not a reproduction check: the evaluated store holds synthetic data" in md and "**+" not in md


# --- chunks bound to their place -------------------------------------------------------------------


def _eval_args(store, out):
    return ["eval", "--store", store, "--marker", "CELL2", "--scale", "4", "--method", "bicubic",
            "--device", "cpu", "--split", "test", "--out", out]  # fmt: skip


@pytest.mark.parametrize("how", ["other tile", "other level", "swap"])
def test_a_chunk_moved_from_its_place_is_found_by_verify_and_refused_by_readers(store, tmp_path, how):
    """Before: a chunk copied from another tile (or two swapped) passed its crc32c, verify said OK and
    eval scored the wrong pixels. Now each array's chunk manifest binds a chunk to its (array, key)."""
    bad = tmp_path / "bad.zarr"
    shutil.copytree(store, bad)
    t, c, iy, ix = _first_window_chunk(store)
    key = f"tiles/{t}/hr/0/c/{c}/{iy}/{ix}"
    if how == "other tile":
        other = next(int(p.name) for p in sorted((bad / "tiles").iterdir()) if p.name != str(t))
        source = bad / f"tiles/{other}/hr/0/c/{c}/{iy}/{ix}"
    elif how == "other level":
        source = bad / f"tiles/{t}/hr/1/c/{c}/{iy // 2}/{ix // 2}"
    else:
        source = bad / f"tiles/{t}/hr/0/c/{c}/{iy}/{ix + 1 if ix == 0 else ix - 1}"
    assert source.read_bytes() != (bad / key).read_bytes()
    if how == "swap":
        a, b = (bad / key).read_bytes(), source.read_bytes()
        (bad / key).write_bytes(b)
        source.write_bytes(a)
    else:
        shutil.copyfile(source, bad / key)
    res = _srdata("verify", bad)
    assert (
        res.exit_code == 1
        and f"tiles/{t}/hr/0: chunk {c}/{iy}/{ix} is not the chunk written there" in res.output
    )
    res = _srtrain(*_eval_args(bad, tmp_path / "ev"))
    _refused(res, "is not the chunk written there", "srdata verify", code=1)
    moved = {key, source.relative_to(bad).as_posix()} if how == "swap" else {key}
    assert any(k in _one_error_line(res) for k in moved), res.output
    assert not (tmp_path / "ev").exists()


def test_an_array_stripped_of_its_checksum_codec_is_damage_for_readers_too(store, tmp_path):
    import json

    bad = tmp_path / "bad.zarr"
    shutil.copytree(store, bad)
    t, c, iy, ix = _first_window_chunk(store)
    meta_path = bad / f"tiles/{t}/x4/0/zarr.json"
    meta = json.loads(meta_path.read_text())
    meta["codecs"] = [cd for cd in meta["codecs"] if cd.get("name") != "crc32c"]
    meta_path.write_text(json.dumps(meta))
    res = _srdata("verify", bad, "--no-chunks")
    assert res.exit_code != 0 or "without chunk checksums" in _srdata("verify", bad).output
    res = _srtrain(*_eval_args(bad, tmp_path / "ev"))
    _refused(res, f"tiles/{t}/x4/0 has no crc32c checksum codec", "format 2", code=1)
    _one_error_line(res)
