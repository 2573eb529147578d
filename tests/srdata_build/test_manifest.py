"""srcaco2.srdata.manifest: your own paired scans described by a YAML manifest, checked from headers."""

from __future__ import annotations

from pathlib import Path

import numpy as np
import pytest
import tifffile
import yaml

from srcaco2.srdata.manifest import ManifestError, read_manifest


def _write(folder: Path, tiles: dict[str, dict[int, np.ndarray]], **extra) -> Path:
    """TIFFs under folder/acq and a manifest naming them; returns the manifest path."""
    (folder / "acq").mkdir(parents=True, exist_ok=True)
    items = []
    for tid, acqs in tiles.items():
        lr = {}
        for s, img in acqs.items():
            name = f"acq/{tid}_HR.tif" if s == 1 else f"acq/{tid}_lr{s}.tif"
            tifffile.imwrite(folder / name, img)
            if s > 1:
                lr[s] = name
        items.append({"id": tid, "hr": f"acq/{tid}_HR.tif", "lr": lr})
    doc = {"version": 1, "channels": ["DAPI", "Actin"], "tiles": items, **extra}
    path = folder / "manifest.yaml"
    path.write_text(yaml.safe_dump(doc, sort_keys=False))
    return path


def _pair(h: int, w: int, scales=(2, 3), c: int = 2, dtype=np.uint16, pad: int = 0) -> dict[int, np.ndarray]:
    rng = np.random.default_rng(0)
    out = {1: rng.integers(0, 4000, (c, h + pad, w + pad)).astype(dtype)}
    for s in scales:
        out[s] = rng.integers(0, 4000, (c, h // s, w // s)).astype(dtype)
    return out


def test_a_valid_manifest_reads_from_headers(tmp_path):
    roi = {"channel": "DAPI", "method": "fixed", "threshold": 400}
    path = _write(tmp_path, {"a": _pair(96, 120), "b-2": _pair(60, 66)}, roi=roi, pixel_size_um=0.065)
    m = read_manifest(path)
    assert m.channels == ("DAPI", "Actin") and m.scales == (2, 3) and m.dtype == "uint16"
    assert m.tile_ids == ["a", "b-2"] and m.pixel_size_um == 0.065
    assert m.tile("a").extent == (96, 120) and m.tile("b-2").extent == (60, 66)
    assert m.roi == {"channel": "DAPI", "method": "fixed", "threshold": 400}
    assert m.window == {"size": 640, "stride": 256, "center": 128, "min_fraction": 0.2}
    assert len(m.sha256) == 64 and m.notes == ()


def test_hr_larger_by_less_than_one_lr_pixel_is_cropped_and_said(tmp_path):
    m = read_manifest(_write(tmp_path, {"a": _pair(96, 96, pad=1)}))  # HR 97 = 2*48 + 1 = 3*32 + 1
    assert m.tile("a").extent == (96, 96)
    assert any("cropped from 97 to 96" in n for n in m.notes)


def test_a_2d_tiff_is_one_channel(tmp_path):
    (tmp_path / "acq").mkdir()
    tifffile.imwrite(tmp_path / "acq/hr.tif", np.zeros((64, 64), np.uint8))
    tifffile.imwrite(tmp_path / "acq/lr.tif", np.zeros((16, 16), np.uint8))
    doc = {
        "version": 1,
        "channels": ["GFP"],
        "tiles": [{"id": "t1", "hr": "acq/hr.tif", "lr": {4: "acq/lr.tif"}}],
    }
    (tmp_path / "m.yaml").write_text(yaml.safe_dump(doc))
    m = read_manifest(tmp_path / "m.yaml")
    assert m.channels == ("GFP",) and m.scales == (4,) and m.dtype == "uint8"
    assert m.roi == {"channel": "GFP", "method": "otsu"}


@pytest.mark.parametrize(
    ("change", "words"),
    [
        (lambda d, f: d["tiles"][0].update(hr="acq/missing.tif"), ["tile 'a'", "hr", "no such file"]),
        (lambda d, f: d["tiles"][1].update(id="a"), ["tile 'a'", "duplicate"]),
        (
            lambda d, f: d.update(roi={"channel": "GFP", "method": "fixed", "threshold": 4}),
            ["roi.channel", "GFP"],
        ),
        (lambda d, f: d["tiles"][0]["lr"].update({2.5: "acq/a_lr2.tif"}), ["tile 'a'", "scale 2.5"]),
        (lambda d, f: d["tiles"][0]["lr"].update({9: "acq/a_lr2.tif"}), ["tile 'a'", "scale 9"]),
        (lambda d, f: d["tiles"][0]["lr"].update({2: "acq/b_lr3.tif"}), ["tile 'a'", "lr.2", "not 2 x"]),
        (lambda d, f: d.update(version=2), ["version"]),
        (lambda d, f: d.update(channels=["DAPI"]), ["tile 'a'", "2 channel", "1"]),
        (lambda d, f: d["tiles"][0].update(split="holdout"), ["tile 'a'", "split"]),
        (lambda d, f: d.update(window={"size": -3}), ["window.size"]),
        (lambda d, f: d["tiles"][1]["lr"].pop(3), ["tile 'b'", "same LR scales"]),
    ],
)
def test_bad_manifests_name_the_tile_and_field(tmp_path, change, words):
    path = _write(tmp_path, {"a": _pair(96, 96), "b": _pair(96, 96)})
    doc = yaml.safe_load(path.read_text())
    change(doc, tmp_path)
    path.write_text(yaml.safe_dump(doc))
    with pytest.raises(ManifestError) as err:
        read_manifest(path)
    msg = str(err.value)
    assert "\n" not in msg and all(w in msg for w in words), msg


def test_unsupported_dtype_and_yaml_errors(tmp_path):
    path = _write(tmp_path, {"a": _pair(96, 96, dtype=np.float32)})
    with pytest.raises(ManifestError, match="float32 is not supported"):
        read_manifest(path)
    path.write_text("version: 1\ntiles: [\n")
    with pytest.raises(ManifestError, match=r"manifest.yaml:\d+: not valid YAML"):
        read_manifest(path)


# ----------------------------------------------------------------------------- building from a manifest


@pytest.fixture(scope="module")
def own_data(tmp_path_factory) -> Path:
    """Three tiles of two-channel uint16 scans with separate x2 and x3 acquisitions (area means of the
    simulator's HR plus read noise) and a manifest naming them; ids are names, splits given."""
    import cv2

    from srcaco2.srdata.synth.acquire import synth_tile
    from srcaco2.srdata.synth.model import SynthParams

    folder = tmp_path_factory.mktemp("own")
    (folder / "acq").mkdir()
    items = []
    for k, tid in enumerate(["a", "b-1", "c_2"]):
        hr8 = synth_tile(k + 1, SynthParams(hr_size=1024))[1][1:]
        hr = hr8.astype(np.uint16) * 180 + 300  # a 16-bit camera: offset and gain
        tifffile.imwrite(folder / f"acq/{tid}_HR.tif", hr[:, :1021, :1021])  # 1 px more than 2x510, 3x340
        lr = {}
        for s in (2, 3):
            n = 1020 // s  # HR 1021 is larger by less than one LR pixel: cropped to 1020
            small = np.stack(
                [cv2.resize(c.astype(np.float32), (n, n), interpolation=cv2.INTER_AREA) for c in hr]
            )
            noisy = small + np.random.default_rng(s + 10 * k).normal(0, 40, small.shape)
            tifffile.imwrite(folder / f"acq/{tid}_lr{s}.tif", np.clip(noisy, 0, 65535).astype(np.uint16))
            lr[s] = f"acq/{tid}_lr{s}.tif"
        items.append({"id": tid, "hr": f"acq/{tid}_HR.tif", "lr": lr, "split": ("train", "val", "test")[k]})
    doc = {
        "version": 1,
        "channels": ["DAPI", "Actin"],
        "pixel_size_um": 0.065,
        "roi": {"channel": "Actin", "method": "fixed", "threshold": 900},
        "tiles": items,
    }
    (folder / "manifest.yaml").write_text(yaml.safe_dump(doc, sort_keys=False))
    return folder


@pytest.fixture(scope="module")
def own_store(own_data) -> str:
    from srcaco2.srdata.build import build_store

    out = str(own_data / "store.zarr")
    build_store(own_data / "manifest.yaml", out)
    return out


def test_a_manifest_builds_a_store_of_its_channels_scales_and_dtype(own_data, own_store):
    from srcaco2.srdata.store import Store
    from srcaco2.srdata.verify import verify_store

    st = Store.open(own_store)
    assert st.markers == ("DAPI", "Actin") and st.scales == (2, 3) and st.dtype == np.uint16
    assert st.tiles == ("a", "b-1", "c_2") and st.kind == "manifest"
    assert st.attrs.chunks == {"hr": 510, "x2": 255, "x3": 170}  # aligned: HR chunk = s x LR chunk
    geo = st.geometry
    assert (geo.size, geo.stride, geo.margin, geo.patch) == (642, 258, 66, 510)  # whole LR px at x2, x3
    hr = tifffile.imread(own_data / "acq/b-1_HR.tif")
    np.testing.assert_array_equal(st.tile_image("b-1", 1)[...], hr[:, :1020, :1020])  # kept as acquired
    lr3 = tifffile.imread(own_data / "acq/b-1_lr3.tif")
    np.testing.assert_array_equal(st.tile_image("b-1", 3)[...], lr3)
    np.testing.assert_array_equal(st.roi("b-1")[...], (hr[1, :1020, :1020] >= 900).astype(np.uint8))
    idx = st.index()
    assert set(idx["tile"]) == {"a", "b-1", "c_2"} and idx["shift"].shape[1:] == (2, 2, 2)
    assert (idx["y0"] % 6 == 0).all() and (idx["x0"] % 6 == 0).all() and (idx["size"] == 642).all()
    for t, code in {"a": 0, "b-1": 1, "c_2": 2}.items():  # the manifest's split, on accepted windows
        assert set(idx["split"][(idx["tile"] == t) & idx["accepted"]]) <= {code}
    assert (idx["split"][~idx["accepted"]] == -1).all() and idx["accepted"].sum() > 0
    assert verify_store(own_store) == []


def test_a_changed_manifest_or_other_input_is_refused_on_resume(own_data, own_store, tmp_path):
    from srcaco2.srdata.build import build_store
    from srcaco2.srdata.schema import StoreFormatError

    doc = yaml.safe_load((own_data / "manifest.yaml").read_text())
    doc["tiles"][0]["split"] = "test"
    changed = own_data / "changed.yaml"
    changed.write_text(yaml.safe_dump(doc))
    with pytest.raises(StoreFormatError, match="built from"):
        build_store(changed, own_store)
    path = own_data / "manifest.yaml"  # the same path with other contents: the recorded hash differs
    saved = path.read_text()
    try:
        path.write_text(saved.replace("threshold: 900", "threshold: 901"))
        with pytest.raises(StoreFormatError, match="manifest changed"):
            build_store(path, own_store)
    finally:
        path.write_text(saved)
    assert build_store(path, own_store)["built"] == []  # the unchanged manifest resumes: nothing to do


def test_bad_manifest_from_the_cli_is_one_line_and_leaves_no_store(own_data, tmp_path):
    from click.testing import CliRunner

    from srcaco2.cli.srdata import main

    doc = yaml.safe_load((own_data / "manifest.yaml").read_text())
    doc["tiles"][2]["lr"][3] = "acq/a_lr2.tif"  # the x2 scan given as x3: HR is not 3 x LR
    bad = tmp_path / "bad.yaml"
    text = yaml.safe_dump(doc).replace("acq/", f"{own_data}/acq/")
    bad.write_text(text)
    res = CliRunner().invoke(main, ["build", str(bad), str(tmp_path / "s.zarr")])
    assert res.exit_code == 1, res.output
    errors = [line for line in res.output.splitlines() if line.startswith("Error:")]
    assert len(errors) == 1 and "tile 'c_2', lr.3" in errors[0] and "not 3 x" in errors[0], res.output
    assert not (tmp_path / "s.zarr").exists()
