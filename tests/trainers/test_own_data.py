"""Your own acquisitions end to end: `srdata synth` (2 channels, uint16, x2 and x3) -> manifest ->
`srdata build` -> info / verify / open_store -> `srtrain fit` (x3) -> `eval` -> `predict --store`."""

from __future__ import annotations

import json
from pathlib import Path

import numpy as np
import pytest
from click.testing import CliRunner

from srcaco2.cli.srdata import main as srdata
from srcaco2.cli.srtrain import main as srtrain


def _ok(res) -> str:
    assert res.exit_code == 0, res.output
    return res.output


@pytest.fixture(scope="module")
def own_store(tmp_path_factory) -> str:
    root = tmp_path_factory.mktemp("own")
    raw, store = root / "raw", root / "s.zarr"
    _ok(
        CliRunner().invoke(
            srdata,
            [
                "synth",
                str(raw),
                "--tiles",
                "3",
                "--hr-size",
                "1536",
                "--channels",
                "2",
                "--channel-names",
                "DAPI,Actin",
                "--bit-depth",
                "16",
                "--scales",
                "2,3",
            ],
        )
    )
    _ok(CliRunner().invoke(srdata, ["build", str(raw / "manifest.yaml"), str(store)]))
    return str(store)


def test_the_store_describes_itself(own_store):
    import srcaco2.srdata as sd
    from srcaco2.srdata.store import Store

    out = _ok(CliRunner().invoke(srdata, ["info", own_store]))
    assert "markers   DAPI, Actin" in out and "pixels    uint16" in out and "scales    2, 3" in out
    assert "642² px at stride 258, patch 510²" in out
    assert "OK" in _ok(CliRunner().invoke(srdata, ["verify", own_store]))
    st = Store.open(own_store)
    low, high = st.intensity.low, st.intensity.high  # CSBDeep-style p0.1 / p99.9 of HR, per channel
    hr = np.concatenate([np.asarray(st.tile_image(t, 1)).reshape(2, -1) for t in st.tiles], axis=1)
    for c in range(2):
        assert abs(low[c] - np.percentile(hr[c], 0.1)) <= 2 and abs(high[c] - np.percentile(hr[c], 99.9)) <= 2
    tree = sd.open_store(own_store)
    assert list(tree["index"].ds["shift"].coords["marker"].values) == ["DAPI", "Actin"]
    assert tree["tiles/t001/x3"]["image"].dtype == np.uint16


def test_fit_eval_predict_on_own_data(own_store, tmp_path, tiny_overrides):
    from srcaco2.srdata.store import Store

    run = tmp_path / "run"
    sets = [o for o in tiny_overrides if not o.startswith("data.h_size")] + [
        "data.h_size=30",
        "train.epochs=1",
    ]
    _ok(
        CliRunner().invoke(
            srtrain,
            [
                "fit",
                "--store",
                own_store,
                "--method",
                "vdsr",
                "--scale",
                "3",
                "--marker",
                "Actin",
                "--out",
                str(run),
                *[a for s in sets for a in ("--set", s)],
            ],
        )
    )
    val = (run / "val.csv").read_text().splitlines()
    assert len(val) >= 2 and "nan" not in val[-1].lower()
    _ok(
        CliRunner().invoke(
            srtrain,
            [
                "eval",
                "--store",
                own_store,
                "--checkpoint",
                str(run),
                "--marker",
                "Actin",
                "--scale",
                "3",
                "--out",
                str(tmp_path / "ev"),
            ],
        )
    )
    summary = json.loads((tmp_path / "ev" / "summary.json").read_text())
    assert summary["marker"] == "Actin" and summary["scale"] == 3
    _ok(
        CliRunner().invoke(
            srtrain, ["eval-runs", str(tmp_path), "--store", own_store, "--out", str(tmp_path / "er")]
        )
    )
    table = (tmp_path / "er" / "tables" / "table4_roi.md").read_text()
    assert "PSNR Actin" in table and "CELL0" not in table and "| VDSR | ×3 |" in table
    again = json.loads((tmp_path / "er" / "runs" / "vdsr_x3_Actin" / "summary.json").read_text())
    assert again["metrics"]["roi_psnr"] == summary["metrics"]["roi_psnr"]  # eval-runs = eval, bit for bit
    out = tmp_path / "pred.zarr"
    _ok(
        CliRunner().invoke(
            srtrain,
            [
                "predict",
                "--store",
                own_store,
                "--checkpoint",
                str(run),
                "--tile",
                "t003",
                "--out-store",
                str(out),
                "--device",
                "cpu",
            ],
        )
    )
    import zarr

    pred = zarr.open_group(str(out))["predictions/vdsr_x3_Actin/t003/0"]
    st = Store.open(own_store)
    assert pred.dtype == np.uint16 and pred.shape == (1, *st.tile_image("t003", 1).shape[1:])
    assert int(np.asarray(pred).max()) > 255  # written in the store's grey levels, not 8-bit
    import tifffile  # the same LR as a 16-bit TIFF: --input maps it as the training store did

    tifffile.imwrite(tmp_path / "lr.tif", np.asarray(st.tile_image("t003", 3))[st.marker_index("Actin")])
    _ok(
        CliRunner().invoke(
            srtrain,
            [
                "predict",
                "--input",
                str(tmp_path / "lr.tif"),
                "--checkpoint",
                str(run),
                "--output",
                str(tmp_path / "sr.tif"),
                "--device",
                "cpu",
            ],
        )
    )
    sr = tifffile.imread(tmp_path / "sr.tif")
    assert sr.dtype == np.uint16
    assert np.abs(sr.astype(np.int64) - np.asarray(pred)[0].astype(np.int64)).max() <= 1
    # a bioimage.io package of this uint16 model (the export runs bioimageio.core's test_model itself)
    _ok(
        CliRunner().invoke(srtrain, ["export", "--checkpoint", str(run), "--output", str(tmp_path / "m.zip")])
    )
    import io
    import zipfile

    import yaml

    with zipfile.ZipFile(tmp_path / "m.zip") as z:
        rdf = yaml.safe_load(z.read("rdf.yaml"))
        test_in = np.load(io.BytesIO(z.read("test_input.npy")))
        test_out = np.load(io.BytesIO(z.read("test_output.npy")))
    assert rdf["inputs"][0]["data"]["type"] == "uint16" and test_in.dtype == np.uint16
    tifffile.imwrite(tmp_path / "t.tif", test_in[0, 0])
    _ok(
        CliRunner().invoke(
            srtrain,
            [
                "predict",
                "--input",
                str(tmp_path / "t.tif"),
                "--checkpoint",
                str(run),
                "--output",
                str(tmp_path / "t_sr.tif"),
                "--device",
                "cpu",
                "--whole-image",
            ],
        )
    )
    ours = tifffile.imread(tmp_path / "t_sr.tif").astype(np.float64)
    assert np.abs(ours - test_out[0, 0]).max() <= 1.0  # the package predicts as srtrain predict does
    _ok(
        CliRunner().invoke(
            srtrain, ["export", "--checkpoint", str(run), "--output", str(tmp_path / "m.safetensors")]
        )
    )
    from srcaco2.trainers.checkpoints import load_pretrained

    _, info = load_pretrained(tmp_path / "m.safetensors")
    assert (info["method"], info["scale"], info["marker"]) == ("vdsr", 3, "Actin")


def test_a_network_that_cannot_do_the_scale_says_so(own_store, tmp_path):
    res = CliRunner().invoke(
        srtrain,
        [
            "fit",
            "--store",
            own_store,
            "--method",
            "swinir",
            "--scale",
            "3",
            "--marker",
            "Actin",
            "--out",
            str(tmp_path / "r"),
        ],
    )
    assert res.exit_code != 0 and "supports scales [2, 4, 8]" in res.output, res.output
    res = CliRunner().invoke(
        srtrain,
        [
            "fit",
            "--store",
            own_store,
            "--method",
            "vdsr",
            "--scale",
            "3",
            "--marker",
            "CELL2",
            "--out",
            str(tmp_path / "r2"),
        ],
    )
    assert res.exit_code != 0 and "CELL2" in res.output and "Actin" in res.output, res.output
    assert not Path(tmp_path / "r2" / "best.pt").exists()


def test_export_patches_writes_the_loaders_windows_in_the_stores_dtype(own_store, tmp_path):
    import tifffile

    from srcaco2.srdata.datasets import WindowDataset

    out = tmp_path / "patches"
    _ok(CliRunner().invoke(srdata, ["export-patches", own_store, str(out), "--split", "test"]))
    lists = sorted((out / "folds").glob("test_x3_in_170_out_510_Actin/h_l.txt"))
    assert len(lists) == 1
    first_hr, first_lr = lists[0].read_text().splitlines()[0].split(",")
    hr, lr = tifffile.imread(out / first_hr), tifffile.imread(out / first_lr)
    assert hr.dtype == np.uint16 and hr.shape == (510, 510) and lr.shape == (170, 170)
    ds = WindowDataset(own_store, "test", 3, "Actin")
    ds.raw = True
    batches = [ds._batch([k]) for k in range(len(ds))]  # the loader's raw (uint16) windows
    assert any(np.array_equal(b["hr"][0, 0], hr) and np.array_equal(b["lr"][0, 0], lr) for b in batches)
