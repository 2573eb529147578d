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
