"""srcaco2.srdata.ome: the streamed OME-NGFF writer and the OME-Zarr reader."""

from __future__ import annotations

from pathlib import Path

import numpy as np
import pytest
import zarr

from srcaco2.srdata.ome import OmeImageWriter
from srcaco2.srdata.ome_read import open_ome_zarr_image


def test_streamed_uint16_image_levels_and_metadata(tmp_path: Path) -> None:
    data = np.random.default_rng(0).integers(0, 4096, (2, 40, 36), dtype=np.uint16)
    grp = zarr.open_group(tmp_path / "x.ome.zarr", mode="w")
    w = OmeImageWriter(grp, data.shape, chunk=8, pixel_size_um=0.05, channel_names=["a", "b"], name="x",
                       dtype="uint16")  # fmt: skip
    for ch in range(2):  # channels one after another, rows in bands of 12
        for r0 in range(0, 40, 12):
            w.write_rows(r0, data[ch : ch + 1, r0 : r0 + 12], channel=ch)
    assert "ome" not in grp.attrs  # metadata only once finished
    meta = w.finish({"extra": {"k": 1}})
    np.testing.assert_array_equal(np.asarray(grp["0"]), data)
    lvl1 = np.asarray(grp["1"])
    ref = np.round(data.reshape(2, 20, 2, 18, 2).astype(np.float64).mean(axis=(2, 4)))
    np.testing.assert_array_equal(lvl1, ref.astype(np.uint16))
    ds = meta["multiscales"][0]["datasets"]
    assert [d["path"] for d in ds] == ["0", "1", "2"]
    assert ds[1]["coordinateTransformations"][0]["scale"] == [1.0, 0.1, 0.1]
    assert meta["omero"]["channels"][1]["label"] == "b" and grp.attrs["extra"] == {"k": 1}
    img = open_ome_zarr_image(str(tmp_path / "x.ome.zarr"))
    assert img.axes == ("c", "y", "x") and img.channel_names == ["a", "b"]
    assert img.pixel_size_um == pytest.approx(0.05)


def test_writer_refuses_out_of_order_and_unfinished(tmp_path: Path) -> None:
    grp = zarr.open_group(tmp_path / "y.zarr", mode="w")
    w = OmeImageWriter(grp, (1, 16, 16), chunk=8, pixel_size_um=None, channel_names=["a"], name="y")
    with pytest.raises(ValueError, match="in order"):
        w.write_rows(8, np.zeros((1, 8, 16), np.uint8))
    w.write_rows(0, np.zeros((1, 8, 16), np.uint8))
    with pytest.raises(ValueError, match="8 of 16 rows written"):
        w.finish()
    with pytest.raises(ValueError, match="channel names"):
        OmeImageWriter(grp, (2, 16, 16), chunk=8, pixel_size_um=None, channel_names=["a"], name="y")


def test_reader_drops_singleton_t_z_and_refuses_stacks(tmp_path: Path) -> None:
    grp = zarr.open_group(tmp_path / "z.zarr", mode="w")
    grp.create_array("0", shape=(1, 2, 1, 8, 8), dtype="uint8")[...] = 3
    axes = [{"name": n, "type": t} for n, t in zip("tczyx", ["time", "channel", "space", "space", "space"])]
    axes[-1]["unit"] = axes[-2]["unit"] = "nanometer"
    grp.attrs["ome"] = {
        "version": "0.5",
        "multiscales": [
            {
                "axes": axes,
                "datasets": [
                    {
                        "path": "0",
                        "coordinateTransformations": [{"type": "scale", "scale": [1, 1, 1, 80, 80]}],
                    }
                ],
            }
        ],
    }
    img = open_ome_zarr_image(str(tmp_path / "z.zarr"))
    assert img.axes == ("c", "y", "x") and img.data.shape == (2, 8, 8)
    assert img.pixel_size_um == pytest.approx(0.08) and int(img.data[...].max()) == 3
    grp.create_array("1", shape=(1, 1, 4, 8, 8), dtype="uint8")
    grp.attrs["ome"] = {"version": "0.5", "multiscales": [{"axes": axes, "datasets": [{"path": "1"}]}]}
    with pytest.raises(ValueError, match="axis 'z' has 4 planes"):
        open_ome_zarr_image(str(tmp_path / "z.zarr"))
