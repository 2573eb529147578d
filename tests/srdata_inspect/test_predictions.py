"""The store owns predictions/: `srdata info` lists them, `srdata verify` checks them."""

from __future__ import annotations

import numpy as np
import pytest
import zarr
from click.testing import CliRunner

from srcaco2.srdata.inspect import list_predictions, store_info
from srcaco2.srdata.schema import PREDICTION_ATTRS
from srcaco2.srdata.store import parse_prediction_path, prediction_path
from srcaco2.srdata.verify import verify_store


@pytest.fixture
def predicted(store: str) -> str:
    """The synthetic store with a bicubic x4 CELL1 prediction of tile 7 (written by
    srcaco2.trainers.predict)."""
    from srcaco2.trainers.models import build_model
    from srcaco2.trainers.predict import predict_to_store

    path = predict_to_store(
        build_model("bicubic", 4).eval(), store, 7, 4, ["CELL1"], name="bic", method="bicubic"
    )
    assert path == "predictions/bic/7"
    return store


def test_prediction_path_round_trip() -> None:
    assert parse_prediction_path(prediction_path("vdsr_x4_CELL2", 12)) == ("vdsr_x4_CELL2", 12)
    with pytest.raises(ValueError, match="without '/'"):
        prediction_path("a/b", 1)
    with pytest.raises(ValueError, match="not a prediction path"):
        parse_prediction_path("tiles/3/hr")


def test_info_lists_predictions(predicted: str) -> None:
    preds = store_info(predicted)["predictions"]
    assert len(preds) == 1
    p = preds[0]
    assert (p["name"], p["tile"], p["method"], p["scale"], p["markers"]) == (
        "bic",
        7,
        "bicubic",
        4,
        ["CELL1"],
    )
    assert p["shape"] == [1, 1280, 1280] and p["dtype"] == "uint8" and p["complete"] and p["exact"]
    assert p["levels"] == 2  # 1280 px, chunk 512: one display level
    from srcaco2.cli.srdata import main

    res = CliRunner().invoke(main, ["info", predicted])
    assert res.exit_code == 0, res.output
    assert "predictions/bic/7" in res.output and "1x1280x1280" in res.output


def test_verify_accepts_a_good_prediction(predicted: str) -> None:
    assert verify_store(predicted) == []
    from srcaco2.cli.srdata import main

    res = CliRunner().invoke(main, ["verify", predicted])
    assert res.exit_code == 0, res.output


def test_verify_finds_broken_predictions(predicted: str) -> None:
    root = zarr.open_group(predicted, mode="r+")
    grp = root["predictions/bic/7"]
    meta = dict(grp.attrs[PREDICTION_ATTRS])
    grp.attrs[PREDICTION_ATTRS] = {**meta, "markers": ["CELL9"]}
    # an interrupted prediction (no OME metadata) and one of a tile the store does not have
    half = root.create_group("predictions/bic/3")
    half.create_array("0", shape=(1, 8, 8), dtype="uint8")
    root.create_group("predictions/bic/99")
    # a level 0 of the wrong extent
    other = root.create_group("predictions/small/3")
    other.create_array("0", shape=(1, 64, 64), dtype="uint8")[...] = np.ones((1, 64, 64), np.uint8)
    other.attrs["ome"] = {"version": "0.5", "multiscales": [{"datasets": [{"path": "0"}], "axes": []}]}
    other.attrs[PREDICTION_ATTRS] = {"markers": ["CELL2"], "scale": 4, "source_tile": 3, "method": "bicubic"}
    problems = "\n".join(verify_store(predicted, read_chunks=False))
    assert "predictions/bic/7: markers ['CELL9']" in problems
    assert "predictions/bic/3: no OME metadata, the prediction was interrupted" in problems
    assert "predictions/bic/99: not a tile of this store" in problems
    assert "predictions/small/3/0: shape [1, 64, 64], expected [1, 1280, 1280]" in problems
    names = [(p["path"], p["complete"]) for p in list_predictions(root)]
    assert ("predictions/bic/3", False) in names and ("predictions/bic/7", True) in names


def test_verify_reads_prediction_chunks(predicted: str) -> None:
    import os

    chunk_dir = os.path.join(predicted, "predictions", "bic", "7", "0", "c")
    victim = next(os.path.join(d, f) for d, _, fs in os.walk(chunk_dir) for f in fs)
    with open(victim, "r+b") as fh:
        fh.truncate(20)
    problems = verify_store(predicted)
    assert any(p.startswith("predictions/bic/7/0: chunk") for p in problems), problems
