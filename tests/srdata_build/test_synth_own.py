"""`srdata synth` beyond SR-CACO-2: other channels, 16 bit, other scales; the own-data form, its manifest."""

from __future__ import annotations

from pathlib import Path

import numpy as np
import pytest
import tifffile
import yaml
from click.testing import CliRunner

from srcaco2.srdata.synth import SynthParams, channel_markers, synth_tile
from srcaco2.srdata.synth.manifest import assign_splits, manifest_dict
from srcaco2.srdata.synth.own import own_tile_side, roi_threshold_raw, write_own_synth


def _srdata(*args):
    from srcaco2.cli.srdata import main

    return CliRunner().invoke(main, [str(a) for a in args])


def _load(out: Path) -> dict:
    m = yaml.safe_load((out / "manifest.yaml").read_text())
    for t in m["tiles"]:
        assert (out / t["hr"]).is_file()
        for s, path in t["lr"].items():
            assert isinstance(s, int) and (out / path).is_file()
    return m


def test_two_channels_16_bit_scales_2_3(tmp_path):
    out = tmp_path / "own"
    res = _srdata("synth", out, "--tiles", "3", "--hr-size", "200", "--channel-names", "DAPI,Actin",
                  "--bit-depth", "16", "--scales", "3,2", "--seed", "4")  # fmt: skip
    assert res.exit_code == 0, res.output
    assert "rounded down to 198" in res.output and "manifest.yaml" in res.output
    assert not (out / "HighRes1024").exists()
    m = _load(out)
    assert m["version"] == 1 and m["channels"] == ["DAPI", "Actin"]
    assert m["roi"] == {"channel": "DAPI", "method": "fixed", "threshold": 1600}  # 1000 + (4 - 1) · 200 ADU
    assert m["window"] == {"size": 640, "stride": 256, "center": 128, "min_fraction": 0.2}
    assert [t["split"] for t in m["tiles"]] == ["train", "val", "test"]
    for t in m["tiles"]:
        hr = tifffile.imread(out / t["hr"])
        assert hr.shape == (2, 198, 198) and hr.dtype == np.uint16
        assert sorted(t["lr"]) == [2, 3]
        for s, path in t["lr"].items():
            lr = tifffile.imread(out / path)
            assert lr.dtype == np.uint16 and lr.shape[0] == 2 and lr.shape[1] * s == lr.shape[2] * s == 198
        # a camera-like 16-bit range: an offset near 1000 ADU, signal far above 8 bit, not 8-bit × 257
        assert 900 < np.percentile(hr, 2) < 1300 and hr.max() > 8000
        assert (hr % 257 != 0).mean() > 0.9 and len(np.unique(hr)) > 1000
        assert not np.array_equal(hr[0], hr[1])


def test_manifest_layout_of_the_default_settings(tmp_path):
    out = tmp_path / "m"
    res = _srdata("synth", out, "--tiles", "4", "--hr-size", "64", "--layout", "manifest")
    assert res.exit_code == 0, res.output
    m = _load(out)
    assert m["channels"] == ["ch0", "ch1", "ch2"]
    assert m["roi"] == {"channel": "ch2", "method": "fixed", "threshold": 4}  # CELL2, the official order
    assert [t["split"] for t in m["tiles"]] == ["train", "train", "val", "test"]
    t = m["tiles"][0]
    assert t["lr"] == {2: "acq/t001_lr2.tif", 4: "acq/t001_lr4.tif", 8: "acq/t001_lr8.tif"}
    hr, lr8 = tifffile.imread(out / t["hr"]), tifffile.imread(out / t["lr"][8])
    assert hr.shape == (3, 64, 64) and hr.dtype == np.uint8 and lr8.shape == (3, 8, 8)
    # the same acquisitions as the official layout writes
    np.testing.assert_array_equal(hr, synth_tile(1, SynthParams(hr_size=64, seed=0))[1])


def test_channels_count_and_names(tmp_path):
    res = _srdata(
        "synth", tmp_path / "c", "--tiles", "1", "--hr-size", "96", "--channels", "5", "--scales", "2"
    )
    assert res.exit_code == 0, res.output
    m = _load(tmp_path / "c")
    assert m["channels"] == [f"ch{i}" for i in range(5)] and m["roi"]["channel"] == "ch0"
    assert m["tiles"][0]["split"] == "train" and list(m["tiles"][0]["lr"]) == [2]
    hr = tifffile.imread(tmp_path / "c" / m["tiles"][0]["hr"])
    assert hr.shape == (5, 96, 96)
    assert len({hr[c].tobytes() for c in range(5)}) == 5
    assert channel_markers(1).tolist() == [[0, 0, 1]]  # one channel: the nuclei
    res = _srdata("synth", tmp_path / "d", "--tiles", "1", "--hr-size", "64", "--channels", "3",
                  "--channel-names", "a,b")  # fmt: skip
    assert res.exit_code != 0 and "--channel-names" in res.output and not (tmp_path / "d").exists()


@pytest.mark.parametrize(
    "args, words",
    [
        (["--scales", "1,2"], ["--scales", "2-8"]),
        (["--scales", "9"], ["--scales", "2-8"]),
        (["--scales", "2.5"], ["--scales", "2-8"]),
        (["--scales", ""], ["--scales"]),
        (["--channels", "0"], ["--channels", "1<=x<=8"]),
        (["--channels", "9"], ["--channels", "1<=x<=8"]),
        (["--bit-depth", "12"], ["--bit-depth", "'8', '16'"]),
        (["--channel-names", "a,a"], ["--channel-names", "distinct"]),
        (["--layout", "official", "--bit-depth", "16"], ["--layout", "--layout manifest"]),
        (["--scales", "5,7,8"], ["--hr-size", "lcm 280"]),
    ],
)
def test_bad_options_are_refused_with_one_line_and_nothing_written(tmp_path, args, words):
    out = tmp_path / "raw"
    res = _srdata("synth", out, "--tiles", "1", "--hr-size", "64", *args)
    assert res.exit_code != 0 and "Traceback" not in res.output
    lines = [ln for ln in res.output.splitlines() if ln.startswith("Error")]
    assert len(lines) == 1, res.output
    for w in words:
        assert w in lines[0], (w, res.output)
    assert not out.exists()


def test_overwrite_replaces_either_form(tmp_path):
    out = tmp_path / "o"
    assert _srdata("synth", out, "--tiles", "1", "--hr-size", "64").exit_code == 0
    res = _srdata("synth", out, "--tiles", "1", "--hr-size", "64", "--bit-depth", "16")
    assert res.exit_code != 0 and "--overwrite" in res.output
    res = _srdata("synth", out, "--tiles", "1", "--hr-size", "64", "--bit-depth", "16", "--overwrite")
    assert res.exit_code == 0, res.output
    assert sorted(p.name for p in out.iterdir()) == ["acq", "manifest.yaml", "synth.json"]
    assert [p.name for p in (out / "acq").iterdir() if p.name.startswith(".")] == []  # no temporary files


def test_scales_outside_the_official_ones_interpolate_and_stay_exact_in_the_ideal_mode():
    p = SynthParams(hr_size=210, scales=(3, 5, 7), bit_depth=16, noise=False, misregistration=False, band=64)
    assert p.per_scan("psf_sigma", 3) == pytest.approx((1.3 + 1.4) / 2 + 0.0, abs=0.06)
    assert p.per_scan("gain", 8) == p.gain[3] and p.per_scan("gain", 2) == p.gain[1]
    acq = synth_tile(2, p)
    assert sorted(acq) == [1, 3, 5, 7]
    hr = acq[1].astype(np.float64)
    for s in (3, 5, 7):
        n = 210 // s
        mean = hr.reshape(3, n, s, n, s).mean(axis=(2, 4))
        np.testing.assert_array_equal(acq[s], np.round(mean).astype(np.uint16))


def test_manifest_helpers():
    assert assign_splits(2) == ["train", "train"]
    assert assign_splits(20).count("val") == assign_splits(20).count("test") == 3
    assert own_tile_side(200, (2, 3)) == 198 and own_tile_side(2048, (2, 4, 8)) == 2048
    assert roi_threshold_raw(SynthParams()) == 4
    with pytest.raises(ValueError, match="not one of the channels"):
        manifest_dict(channels=["a"], roi_channel="b", roi_threshold=4, tiles=[])
    with pytest.raises(ValueError, match="scales >= 2"):
        manifest_dict(channels=["a"], roi_channel="a", roi_threshold=None,
                      tiles=[{"id": "x", "hr": "h.tif", "lr": {1: "l.tif"}}])  # fmt: skip
    assert (
        manifest_dict(channels=["a"], roi_channel="a", roi_threshold=None, tiles=[])["roi"]["method"]
        == "otsu"
    )
    with pytest.raises(ValueError, match="multiple of every scale"):
        write_own_synth("unused", params=SynthParams(hr_size=100, scales=(3,)))
