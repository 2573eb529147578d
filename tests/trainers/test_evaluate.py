"""Evaluation: per-window rows and split means, bicubic vs a checkpoint, bad inputs, CLI."""

from __future__ import annotations

import csv
import json

import numpy as np
import pytest
from click.testing import CliRunner

from srcaco2.srdata.loader import make_loader
from srcaco2.srdata.schema import StoreFormatError
from srcaco2.trainers.evaluate import evaluate, read_eval
from srcaco2.trainers.metrics import bicubic_upsample, patch_metrics


def test_bicubic_rows_follow_the_metric_reference(trainer_store, tmp_path):
    res = evaluate(
        trainer_store, split="test", marker="CELL2", scale=4, method="bicubic", out_dir=tmp_path / "ev"
    )
    assert res.meta["n_windows"] == 2 and len(res.rows) == 2
    loader = make_loader(trainer_store, "test", 4, "CELL2", 1, 512, mode="eval")
    for row, batch in zip(res.rows, loader, strict=True):
        ref = patch_metrics(bicubic_upsample(batch["lr"], 4)[0, 0].numpy(), batch["hr"][0, 0].numpy(), 4)
        assert row["tile"] == int(batch["tile"][0]) and row["window"] == int(batch["window"][0])
        for k, v in ref.items():
            assert row[k] == pytest.approx(v, rel=1e-9)
    for k in ("psnr", "roi_psnr", "ssim", "roi_nrmse"):
        assert res.summary[k] == pytest.approx(np.mean([r[k] for r in res.rows]))
    rows = list(csv.DictReader((tmp_path / "ev" / "windows.csv").open()))
    assert len(rows) == 2 and list(rows[0])[:4] == ["tile", "window", "y0", "x0"]
    summary = read_eval(tmp_path / "ev")
    assert summary["method"] == "bicubic" and summary["split"] == "test"
    assert summary["metrics"]["roi_psnr"] == pytest.approx(res.summary["roi_psnr"])


def test_checkpoint_evaluation_and_mismatch(tiny, trainer_store, tmp_path):
    from srcaco2.trainers.fit import fit

    fit(tiny(trainer_store, "train.max_steps=2", "eval.every=100"), tmp_path / "run")
    best = tmp_path / "run" / "best.pt"
    res = evaluate(trainer_store, split="val", marker="CELL2", scale=4, checkpoint=best, max_windows=1)
    assert (
        res.meta["method"] == "vdsr" and res.meta["n_windows"] == 1 and np.isfinite(res.summary["roi_psnr"])
    )
    with pytest.raises(ValueError, match="scale"):
        evaluate(trainer_store, split="val", marker="CELL2", scale=2, checkpoint=tmp_path / "run" / "best.pt")
    with pytest.raises(ValueError, match="method"):
        evaluate(trainer_store, split="val", marker="CELL2", scale=4, checkpoint=tmp_path / "run" / "best.pt",
                 method="swinir")  # fmt: skip


def test_bad_inputs(trainer_store, tmp_path):
    with pytest.raises(StoreFormatError, match="no such store"):
        evaluate(tmp_path / "none.zarr", split="test", marker="CELL2", scale=4, method="bicubic")
    with pytest.raises(ValueError, match="split='tset'"):
        evaluate(trainer_store, split="tset", marker="CELL2", scale=4, method="bicubic")
    with pytest.raises(ValueError, match="marker='CELL5'"):
        evaluate(trainer_store, split="test", marker="CELL5", scale=4, method="bicubic")
    with pytest.raises(ValueError, match="give a checkpoint"):
        evaluate(trainer_store, split="test", marker="CELL2", scale=4)
    with pytest.raises(FileNotFoundError, match="checkpoint"):
        evaluate(trainer_store, split="test", marker="CELL2", scale=4, checkpoint=tmp_path / "x.pt")


def test_cli_eval(trainer_store, tmp_path):
    from srcaco2.cli.srtrain import main

    args = ["eval", "--store", trainer_store, "--split", "test", "--marker", "CELL2", "--scale", "2",
            "--method", "bicubic", "--out", str(tmp_path / "ev")]  # fmt: skip
    res = CliRunner().invoke(main, args + ["--json"])
    assert res.exit_code == 0, res.output
    data = json.loads(res.output[res.output.index("{") :])
    assert data["scale"] == 2 and data["n_windows"] == 2 and data["metrics"]["psnr"] > 20
    args = [
        "eval",
        "--store",
        str(tmp_path / "nope"),
        "--marker",
        "CELL2",
        "--scale",
        "4",
        "--method",
        "bicubic",
    ]
    res = CliRunner().invoke(main, args + ["--out", str(tmp_path / "e2")])
    assert res.exit_code == 1 and "no such store" in res.output


def test_evaluation_seeds_each_batch_and_restores_the_rng(trainer_store):
    """Stochastic-at-inference networks (NLSN) get the same draws as the original evaluation
    (torch seeded before every batch), and the caller's RNG stream is left untouched."""
    import torch

    from srcaco2.trainers.evaluate import evaluate_model

    class _Noisy(torch.nn.Module):
        def forward(self, lr):
            up = torch.nn.functional.interpolate(lr, scale_factor=4, mode="nearest")
            return up + 0.05 * torch.rand(1, 1, 1, 1)

    loader = make_loader(trainer_store, "test", 4, "CELL2", 1, 512, mode="eval", max_windows=2)
    torch.manual_seed(123)
    before = torch.random.get_rng_state()
    a = evaluate_model(_Noisy(), loader, 4)
    assert torch.equal(torch.random.get_rng_state(), before)
    b = evaluate_model(_Noisy(), loader, 4)
    assert a == b  # reproducible
    torch.manual_seed(99)
    unseeded = evaluate_model(_Noisy(), loader, 4, seed=None)
    assert unseeded != a  # without per-batch seeding the draws differ (and the stream moved)


def test_frc_columns_beside_the_paper_metrics(trainer_store, tmp_path):
    """FRC resolution per window (1/7 threshold) on the metrics' 8-bit, border-cropped images, in HR
    px and µm (the store's HR pixel size, 0.1 µm here); the paper's six metrics are unchanged."""
    from srcaco2.trainers.evaluate import FRC_THRESHOLD
    from srcaco2.trainers.metrics import frc_resolution, quantize_8bit

    res = evaluate(
        trainer_store, split="test", marker="CELL1", scale=2, method="bicubic", out_dir=tmp_path / "e"
    )
    loader = make_loader(trainer_store, "test", 2, "CELL1", 1, 512, mode="eval")
    for row, batch in zip(res.rows, loader, strict=True):
        sr = bicubic_upsample(batch["lr"], 2)[0, 0].numpy()
        e, h = quantize_8bit(sr)[2:-2, 2:-2], quantize_8bit(batch["hr"][0, 0].numpy())[2:-2, 2:-2]
        assert e.shape == (508, 508)
        px = frc_resolution(e, h, threshold=1 / 7)
        assert row["frc_px"] == px and 2.0 <= px < 512
        assert row["frc_um"] == pytest.approx(px * 0.1)
        ref = patch_metrics(sr, batch["hr"][0, 0].numpy(), 2)
        assert {k: row[k] for k in ref} == ref  # the paper's metrics, bit for bit
    assert FRC_THRESHOLD == pytest.approx(1 / 7)
    assert res.summary["frc_px"] == pytest.approx(np.mean([r["frc_px"] for r in res.rows]))
    rows = list(csv.DictReader((tmp_path / "e" / "windows.csv").open()))
    assert float(rows[0]["frc_um"]) == pytest.approx(res.rows[0]["frc_um"])
    assert read_eval(tmp_path / "e")["metrics"]["frc_um"] == pytest.approx(res.summary["frc_um"])


def test_nan_output_is_an_error(trainer_store, tmp_path):
    import torch

    from srcaco2.trainers.checkpoints import save_checkpoint
    from srcaco2.trainers.evaluate import NonFiniteOutputError
    from srcaco2.trainers.models import build_model

    ov = {"num_features": 4, "num_trunk_layers": 1}
    model = build_model("vdsr", 4, **ov)
    from srcaco2.trainers.checkpoints import CheckpointError

    meta = {"method": "vdsr", "scale": 4, "marker": "CELL2", "overrides": ov}
    nan = {k: torch.full_like(v, float("nan")) for k, v in model.state_dict().items()}
    save_checkpoint(tmp_path / "nan.pt", model_state=nan, config={}, meta=meta)
    with pytest.raises(CheckpointError, match="nan.pt holds non-finite weights"):  # refused at load
        evaluate(trainer_store, split="test", marker="CELL2", scale=4, checkpoint=tmp_path / "nan.pt",
                 out_dir=tmp_path / "out")  # fmt: skip
    g = torch.Generator().manual_seed(0)  # finite weights of both signs whose sums overflow to inf - inf
    huge = {k: (torch.rand(v.shape, generator=g) - 0.5).sign() * 1e30 for k, v in model.state_dict().items()}
    save_checkpoint(tmp_path / "huge.pt", model_state=huge, config={}, meta=meta)
    with pytest.raises(NonFiniteOutputError, match="NaN or infinite"):
        evaluate(trainer_store, split="test", marker="CELL2", scale=4, checkpoint=tmp_path / "huge.pt",
                 out_dir=tmp_path / "out")  # fmt: skip
    assert not (tmp_path / "out").exists()
