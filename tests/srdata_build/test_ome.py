"""OME-NGFF 0.5 metadata of every image and label group, checked with ome-zarr-models and ome-zarr-py.

- Every scan (HR, x2, x4, x8), every display level, the ROI label and predictions sit in one physical
  frame: an LR pixel's centre is the mean of the centres of the HR pixels it covers, computed from the
  metadata alone (independent of the writer's formula) and from the xarray coordinates.
- ``omero`` windows are the 0.1-99.9 percentiles of each channel's coarsest level.
- The ROI mask is a label image of its HR image (``labels/``, ``image-label``).
- An unknown pixel size is visible: no unit on the axes, ``metadata.pixel_size == "unknown"``.
- Stores of format version 1 (ROI at ``tiles/<t>/roi``) stay readable.
- The pixel size is read from TIFF metadata (OME-XML, ImageJ, resolution tags) when present.
"""

from __future__ import annotations

import json
import os
import shutil
from pathlib import Path

import numpy as np
import pytest
import tifffile
import zarr
from ome_zarr_models import open_ome_zarr
from ome_zarr_models.common.omero import Omero
from ome_zarr_models.v05.image import Image
from ome_zarr_models.v05.image_label import ImageLabel
from ome_zarr_models.v05.labels import Labels

from srcaco2 import srdata
from srcaco2.srdata.array_store import write_store_from_arrays
from srcaco2.srdata.inspect import store_info
from srcaco2.srdata.ome import ome_image_metadata
from srcaco2.srdata.rawtiles import raw_pixel_size, tiff_pixel_size_um, validate_raw
from srcaco2.srdata.real_sample import REAL_SAMPLE_DIR
from srcaco2.srdata.schema import FORMAT_VERSION, MARKERS, SCALES, acquisition_name
from srcaco2.srdata.store import Store, open_root, roi_group_path, roi_path
from srcaco2.srdata.verify import verify_store
from srcaco2.srdata.writer import write_image

HR = 768
CHUNK = 64
REAL_SAMPLE = REAL_SAMPLE_DIR  # shipped with the package (srdata/data/real_sample, BSD-3)


def _tiles(seed: int = 0) -> dict[int, dict[int, np.ndarray]]:
    """One tile: dim CELL0 (values 0..20), mid CELL1, bright sparse CELL2; LR scans independent."""
    rng = np.random.default_rng(seed)
    hr = np.empty((3, HR, HR), np.uint8)
    hr[0] = rng.integers(0, 21, (HR, HR))
    hr[1] = rng.integers(0, 120, (HR, HR))
    hr[2] = np.where(rng.random((HR, HR)) < 0.3, rng.integers(0, 256, (HR, HR)), 0)
    out = {1: hr}
    for s in SCALES:
        out[s] = np.ascontiguousarray(hr[:, ::s, ::s]) // 2 + rng.integers(
            0, 3, (3, HR // s, HR // s)
        ).astype(np.uint8)
    return {5: out}


@pytest.fixture(scope="module")
def store(tmp_path_factory) -> str:
    p = str(tmp_path_factory.mktemp("ome") / "s.zarr")
    windows = {"tile": [5, 5], "y0": [0, 64], "x0": [0, 128], "split": [2, 2]}
    write_store_from_arrays(
        p, _tiles(), chunk=CHUNK, pixel_size_um=0.25, windows=windows, source={"kind": "test"}
    )
    return p


def _transforms(group: zarr.Group) -> list[tuple[np.ndarray, np.ndarray]]:
    """(scale, translation) of y and x for every level, from ``attrs["ome"]`` only."""
    ms = group.attrs["ome"]["multiscales"][0]
    space = [i for i, a in enumerate(ms["axes"]) if a["type"] == "space"]
    out = []
    for d in ms["datasets"]:
        ct = {t["type"]: t for t in d["coordinateTransformations"]}
        sc = np.asarray(ct["scale"]["scale"], float)[space]
        tr = np.asarray(
            ct.get("translation", {"translation": [0.0] * len(ms["axes"])})["translation"], float
        )[space]
        out.append((sc, tr))
    return out


def _centres(sc: float, tr: float, n: int) -> np.ndarray:
    return np.arange(n) * sc + tr  # OME-NGFF: physical = scale * index + translation


def _check_overlay(hr_group: zarr.Group, group: zarr.Group, pitch_hr_px: int) -> None:
    """Every level of `group` lies on the HR grid: pixel centre = mean of the HR centres it covers."""
    (hr_sc, hr_tr), *_ = _transforms(hr_group)
    hr_y = _centres(hr_sc[0], hr_tr[0], HR)
    hr_x = _centres(hr_sc[1], hr_tr[1], HR)
    for lv, (sc, tr) in enumerate(_transforms(group)):
        f = pitch_hr_px * 2**lv
        n = HR // f
        assert group[str(lv)].shape[-2:] == (n, n)
        want_y = hr_y[: n * f].reshape(n, f).mean(1)
        want_x = hr_x[: n * f].reshape(n, f).mean(1)
        np.testing.assert_allclose(_centres(sc[0], tr[0], n), want_y, rtol=0, atol=1e-9)
        np.testing.assert_allclose(_centres(sc[1], tr[1], n), want_x, rtol=0, atol=1e-9)
        # same field of view: the first pixel's top-left edge is the HR one's
        assert tr[0] - sc[0] / 2 == pytest.approx(hr_tr[0] - hr_sc[0] / 2)


def test_every_scan_and_level_overlays_hr(store):
    root = open_root(store)
    hr = root["tiles/5/hr"]
    assert _transforms(hr)[0][0] == pytest.approx([0.25, 0.25]) and _transforms(hr)[0][1] == pytest.approx(
        [0, 0]
    )
    assert len(_transforms(hr)) >= 3  # display levels exist, so their translations are exercised
    for s in (1, *SCALES):
        _check_overlay(hr, root[f"tiles/5/{acquisition_name(s)}"], s)
    _check_overlay(hr, root[roi_group_path(5)], 1)
    # x4 level 0 in numbers: pixel 0 covers HR px 0..3, centre 1.5 HR px = 0.375 µm
    sc, tr = _transforms(root["tiles/5/x4"])[0]
    assert sc == pytest.approx([1.0, 1.0]) and tr == pytest.approx([0.375, 0.375])


def test_xarray_coordinates_match_the_metadata(store):
    tree = srdata.open_store(store)
    root = open_root(store)
    for s in (1, *SCALES):
        acq = acquisition_name(s)
        img = tree[f"tiles/5/{acq}"]["image"]
        sc, tr = _transforms(root[f"tiles/5/{acq}"])[0]
        np.testing.assert_allclose(img["y"].values, _centres(sc[0], tr[0], img.sizes["y"]), atol=1e-12)
        np.testing.assert_allclose(img["x"].values, _centres(sc[1], tr[1], img.sizes["x"]), atol=1e-12)
        assert img["x"].attrs["units"] == "um"
    # so label-based selection lines scans up: the x4 pixel nearest HR pixel (100, 200) covers it
    hr = tree["tiles/5/hr"]["image"]
    x4 = tree["tiles/5/x4"]["image"]
    y, x = float(hr["y"][100]), float(hr["x"][200])
    near = x4.sel(y=y, x=x, method="nearest")
    assert (float(near["y"]), float(near["x"])) == pytest.approx((float(x4["y"][25]), float(x4["x"][50])))
    roi = tree["tiles/5/roi"]["roi"]
    np.testing.assert_array_equal(roi["x"].values, hr["x"].values)


def test_images_and_labels_validate_with_ome_zarr_models(store):
    root = open_root(store)
    for s in (1, *SCALES):
        g = root[f"tiles/5/{acquisition_name(s)}"]
        model = Image.from_zarr(g)
        assert len(model.datasets[0]) == len([k for k in g.array_keys()])
        omero = Omero.model_validate(g.attrs["ome"]["omero"])
        assert [c.model_dump().get("label") for c in omero.channels] == list(MARKERS)
    hr_model = Image.from_zarr(root["tiles/5/hr"])
    assert hr_model.labels is not None and hr_model.labels.label_paths == [
        "roi"
    ]  # linked, level counts equal
    labels = Labels.from_zarr(root["tiles/5/hr/labels"])
    assert labels.label_paths == ["roi"]
    roi = root[roi_group_path(5)]
    label = ImageLabel.from_zarr(roi)
    meta = label.ome_attributes.image_label
    assert meta is not None and meta.source is not None and meta.source.image == "../../"
    assert [(c.label_value, c.rgba is not None) for c in meta.colors or ()] == [(1, True)]
    assert isinstance(open_ome_zarr(roi), ImageLabel)
    assert roi["0"].dtype == np.uint8 and set(np.unique(roi["0"][...])) <= {0, 1}


def test_ome_zarr_py_reads_image_and_label(store):
    from ome_zarr.io import parse_url
    from ome_zarr.reader import Label, Multiscales, Reader

    nodes = list(Reader(parse_url(os.path.join(store, "tiles/5/hr")))())
    image = nodes[0]
    assert any(isinstance(sp, Multiscales) for sp in image.specs)
    assert tuple(image.data[0].shape) == (3, HR, HR)
    assert image.metadata["channel_names"] == list(MARKERS)
    labels = [n for n in nodes if any(isinstance(sp, Label) for sp in n.specs)]
    assert labels, [n.specs for n in nodes]
    np.testing.assert_array_equal(np.asarray(labels[0].data[0]), open_root(store)[roi_path(5)][...])


def test_omero_windows_are_the_coarsest_level_percentiles(store):
    root = open_root(store)
    for s in (1, *SCALES):
        g = root[f"tiles/5/{acquisition_name(s)}"]
        n = len(g.attrs["ome"]["multiscales"][0]["datasets"])
        coarsest = g[str(n - 1)][...]
        for c, ch in enumerate(g.attrs["ome"]["omero"]["channels"]):
            lo, hi = np.percentile(coarsest[c], [0.1, 99.9])
            w = ch["window"]
            assert (w["min"], w["max"]) == (0, 255)
            assert w["start"] == pytest.approx(lo, abs=1e-3)
            assert w["end"] == pytest.approx(max(hi, lo + 1), abs=1e-3)
            assert ch["color"] == {"CELL0": "00FFFF", "CELL1": "00FF00", "CELL2": "FF00FF"}[ch["label"]]
    dim = root["tiles/5/hr"].attrs["ome"]["omero"]["channels"][0]["window"]
    assert dim["end"] <= 20  # the dim marker opens visible, not black in a 0..255 window


def test_prediction_metadata_function(tmp_path):
    """What a prediction writer attaches: channel names, colours, windows, HR-grid transforms."""
    g = zarr.open_group(str(tmp_path / "pred.zarr"), mode="w", zarr_format=3)
    rng = np.random.default_rng(2)
    levels = [rng.integers(0, 60, (1, 128 // 2**lv, 96 // 2**lv), dtype=np.uint8) for lv in range(3)]
    for lv, a in enumerate(levels):
        g.create_array(str(lv), data=a, chunks=(1, 32, 32), dimension_names=("c", "y", "x"))
    g.attrs["ome"] = ome_image_metadata("pred/5", 3, 0.25, channel_names=["CELL2"], coarsest=levels[-1])
    model = Image.from_zarr(g)
    assert model.ome_attributes.multiscales[0].axes[1].unit == "micrometer"
    ch = g.attrs["ome"]["omero"]["channels"][0]
    assert ch["label"] == "CELL2" and ch["color"] == "FF00FF"
    assert ch["window"]["end"] == pytest.approx(np.percentile(levels[-1], 99.9), abs=1e-3)
    sc, tr = _transforms(g)[2]
    assert sc == pytest.approx([1.0, 1.0]) and tr == pytest.approx([0.375, 0.375])  # f=4 on the HR grid
    with pytest.raises(ValueError, match="channels"):
        ome_image_metadata("p", 1, 0.25, channel_names=["A", "B"], coarsest=levels[-1])


def test_predictions_and_coverage_validate_and_overlay(store, tmp_path):
    """A real `predict_to_store` output (bicubic x4) and an imported store's coverage mask."""
    import torch.nn.functional as F

    from srcaco2.srdata.import_patches import _write_coverage
    from srcaco2.trainers.predict import predict_to_store

    p = str(tmp_path / "p.zarr")
    shutil.copytree(store, p)

    def upsample(x):
        return F.interpolate(x, scale_factor=4, mode="bicubic", align_corners=False).clamp(0, 1)

    # an unregistered callable: its halo is given (bicubic reaches 2 LR px)
    group = predict_to_store(upsample, p, 5, 4, ["CELL1", "CELL2"], name="bicubic", halo=4)
    root = open_root(p)
    g = root[group]
    Image.from_zarr(g)
    chans = g.attrs["ome"]["omero"]["channels"]
    assert [c["label"] for c in chans] == ["CELL1", "CELL2"] and [c["color"] for c in chans] == [
        "00FF00",
        "FF00FF",
    ]
    assert g.attrs["ome"]["multiscales"][0]["axes"][1]["unit"] == "micrometer"
    _check_overlay(root["tiles/5/hr"], g, 1)  # predictions sit on the HR grid

    rw = zarr.open_group(p, mode="r+")
    _write_coverage(Store.of_root(rw), 5, np.ones((HR, HR), np.uint8), chunk=CHUNK, pixel_size_um=0.25)
    Image.from_zarr(rw["tiles/5/coverage"])
    _check_overlay(rw["tiles/5/hr"], rw["tiles/5/coverage"], 1)


def test_unknown_pixel_size_is_visible(tmp_path):
    p = str(tmp_path / "u.zarr")
    tiles = _tiles(1)
    px = {"hr": None, **{acquisition_name(s): None for s in SCALES}}
    write_store_from_arrays(p, tiles, chunk=CHUNK, pixel_size_um=px, source={"kind": "test"})  # type: ignore[arg-type]
    root = open_root(p)
    assert Store.of_root(root).attrs.pixel_size_um == px
    for s in (1, *SCALES):
        g = root[f"tiles/5/{acquisition_name(s)}"]
        Image.from_zarr(g)
        ms = g.attrs["ome"]["multiscales"][0]
        assert all("unit" not in a for a in ms["axes"])
        assert ms["metadata"]["pixel_size"] == "unknown"
        sc, tr = _transforms(g)[0]
        assert sc == pytest.approx([s, s]) and tr == pytest.approx([(s - 1) / 2] * 2)  # HR pixels
    Image.from_zarr(root["tiles/5/hr"])  # with its label
    img = srdata.open_store(p)["tiles/5/x2"]["image"]
    assert img["x"].attrs["units"] == "HR px" and np.isnan(img.attrs["pixel_size_um"])
    assert img["x"].values[:2] == pytest.approx([0.5, 2.5])
    assert verify_store(p, read_chunks=False) == []
    assert store_info(p)["pixel_size_um"]["hr"] is None


def test_verify_checks_the_roi_label(store, tmp_path):
    p = str(tmp_path / "broken.zarr")
    shutil.copytree(store, p)
    root = zarr.open_group(p, mode="r+")
    root["tiles/5/hr/labels"].attrs["ome"] = {"version": "0.5", "labels": []}
    del root[roi_path(5, 1)]
    problems = verify_store(p, read_chunks=False)
    assert any("does not list the ROI" in q for q in problems), problems
    assert any("levels but its image tiles/5/hr has" in q for q in problems), problems


def _as_version_1(src: str, dst: str) -> None:
    """Rewrite a store in the format-version-1 layout (ROI a plain image at ``tiles/<t>/roi``)."""
    shutil.copytree(src, dst)
    for t in Store.of_root(open_root(dst)).attrs.tiles:
        shutil.move(os.path.join(dst, roi_group_path(t)), os.path.join(dst, f"tiles/{t}/roi"))
        shutil.rmtree(os.path.join(dst, f"tiles/{t}/hr/labels"))
        meta = os.path.join(dst, f"tiles/{t}/roi/zarr.json")
        doc = json.loads(Path(meta).read_text())
        doc["attributes"]["ome"].pop("image-label")
        Path(meta).write_text(json.dumps(doc))
    zj = Path(dst, "zarr.json")
    doc = json.loads(zj.read_text())
    doc["attributes"]["srcaco2"]["format_version"] = 1
    zj.write_text(json.dumps(doc))


def test_format_version_1_stores_stay_readable(store, tmp_path):
    old = str(tmp_path / "v1.zarr")
    _as_version_1(store, old)
    assert FORMAT_VERSION > 1 and roi_path(5, format_version=1) == "tiles/5/roi/0"
    root = open_root(old)
    want = open_root(store)[roi_path(5)][...]
    np.testing.assert_array_equal(root[roi_path(5, format_version=1)][...], want)
    np.testing.assert_array_equal(srdata.open_store(old)["tiles/5/roi"]["roi"].values, want)
    assert store_info(old)["tiles"][0]["roi_fraction"] == pytest.approx(want.mean())
    assert verify_store(old, read_chunks=False) == []
    from srcaco2.srdata.datasets import WindowDataset  # the loader reads the ROI through roi_path as well

    new_ds = WindowDataset(store, split="test", scale=4, marker="CELL2")
    old_ds = WindowDataset(old, split="test", scale=4, marker="CELL2")
    assert old_ds.format_version == 1 and new_ds.format_version == FORMAT_VERSION
    for i in range(len(new_ds)):
        np.testing.assert_array_equal(old_ds[i]["roi"], new_ds[i]["roi"])
        assert old_ds[i]["roi"].any()


# ----------------------------------------------------------------------------------- pixel size


def _img() -> np.ndarray:
    return np.zeros((3, 32, 32), np.uint8)


def _ome(size: float, unit: str) -> dict:
    meta = {"axes": "CYX", "PhysicalSizeX": size, "PhysicalSizeY": size}
    return {"ome": True, "metadata": meta | {"PhysicalSizeXUnit": unit, "PhysicalSizeYUnit": unit}}


def _res(y_um: float, x_um: float, unit: str = "CENTIMETER") -> dict:
    per = 1e4 if unit == "CENTIMETER" else 25400
    return {"resolution": (per / x_um, per / y_um), "resolutionunit": unit}


def _ij(size: float, unit: str) -> dict:
    return {"imagej": True, "resolution": (1 / size, 1 / size), "metadata": {"unit": unit}}


@pytest.mark.parametrize(
    ("kwargs", "um", "origin"),
    [
        (_res(0.25, 0.25), 0.25, "tiff-resolution"),
        (_res(0.5, 0.5, "INCH"), 0.5, "tiff-resolution"),
        (_ij(0.3, "um"), 0.3, "imagej"),
        (_ij(150, "nm"), 0.15, "imagej"),
        (_ij(0.3, "micron"), 0.3, "imagej"),
        (_ome(0.2, "µm"), 0.2, "ome-xml"),
        (_ome(80, "nm"), 0.08, "ome-xml"),
        ({}, None, "unknown"),  # ResolutionUnit none
        ({"resolution": (72, 72), "resolutionunit": "INCH"}, None, "unknown"),  # a display default
        (_res(0.2, 0.4), None, "unknown"),  # not square
    ],
    ids=[
        "cm",
        "inch",
        "imagej-um",
        "imagej-nm",
        "imagej-micron",
        "ome-um",
        "ome-nm",
        "none",
        "72dpi",
        "non-square",
    ],
)
def test_tiff_pixel_size(tmp_path, kwargs, um, origin):
    p = str(tmp_path / "t.tif")
    data = _img()[0] if kwargs.get("imagej") else _img()
    tifffile.imwrite(p, data, **({} if kwargs.get("imagej") else {"photometric": "minisblack"}), **kwargs)
    got = tiff_pixel_size_um(p)
    assert got.origin == origin, got
    assert (got.um is None) if um is None else got.um == pytest.approx(um, rel=1e-6)


def test_real_sample_records_no_pixel_size():
    """The released SR-CACO-2 files carry ResolutionUnit none with 1 px/unit: unknown, not 1 µm."""
    for name in ("div1.tif", "div4.tif"):
        got = tiff_pixel_size_um(str(REAL_SAMPLE / name))
        assert got.um is None and got.origin == "unknown"


def test_build_reads_the_pixel_size_from_the_tiffs(raw_tiny, tmp_path, caplog):
    from srcaco2.srdata.build import BuildConfig, build_store

    raw = validate_raw(raw_tiny)
    assert raw_pixel_size(raw).origin == "unknown"  # synthetic tiles carry no calibration
    for t in raw.tiles:
        for s, info in raw.info[t].items():
            data = tifffile.imread(info.path)
            um = 0.1 * s
            tifffile.imwrite(info.path, data, photometric="minisblack", **_res(um, um))
    raw = validate_raw(raw_tiny)
    got = raw_pixel_size(raw)
    assert got.um == pytest.approx(0.1) and got.origin == "tiff-resolution"
    assert raw_pixel_size(raw, 0.11).origin == "option"
    assert "overrides the TIFF metadata" in caplog.text

    p = str(tmp_path / "b.zarr")
    build_store(raw_tiny, p, BuildConfig(register=False, chunk=128))
    attrs = Store.of_root(open_root(p)).attrs
    assert attrs.pixel_size_um == pytest.approx({"hr": 0.1, "x2": 0.2, "x4": 0.4, "x8": 0.8})
    assert attrs.source["pixel_size"]["origin"] == "tiff-resolution"
    root = open_root(p)
    for t in attrs.tiles:
        for s in (1, *SCALES):
            Image.from_zarr(root[f"tiles/{t}/{acquisition_name(s)}"])
        assert _transforms(root[f"tiles/{t}/x8"])[0][1] == pytest.approx([0.35, 0.35])  # (8-1)/2 * 0.1 µm
    assert verify_store(p, read_chunks=False) == []


def test_write_image_takes_the_pixel_size_from_the_store(store, tmp_path):
    p = str(tmp_path / "c.zarr")
    shutil.copytree(store, p)
    root = zarr.open_group(p, mode="r+")
    write_image(Store.of_root(root), 5, 4, _tiles(3)[5][4], chunk=CHUNK // 4)
    sc, _ = _transforms(root["tiles/5/x4"])[0]
    assert sc == pytest.approx([1.0, 1.0])  # 4 x 0.25 µm from attrs.pixel_size_um["x4"]
