"""Training loop: outputs, schedules, exact resume, refusals, NaN provenance, disk full, CLI."""

from __future__ import annotations

import csv

import pytest
import torch
from click.testing import CliRunner

from trainers._state import lr_at
from trainers.checkpoints import load_checkpoint, load_pretrained
from trainers.config import apply_overrides, load_config
from trainers.fit import RunDirError, TrainingDivergedError, fit


def _rows(path):
    with open(path, newline="") as f:
        return list(csv.DictReader(f))


def test_fit_writes_a_complete_run(tiny, trainer_store, tmp_path):
    cfg = tiny(trainer_store, "train.epochs=2", "eval.every=3")
    res = fit(cfg, tmp_path / "run")
    run = tmp_path / "run"
    assert res.step == 8 and len(res.losses) == 8 and res.best_step is not None
    assert load_config(run / "config.yaml") == cfg
    rows = _rows(run / "metrics.csv")
    assert [int(r["step"]) for r in rows] == list(range(1, 9))
    assert all(float(r["step_time_s"]) >= 0 and float(r["data_time_s"]) >= 0 for r in rows)
    assert [int(r["step"]) for r in _rows(run / "val.csv")] == [3, 6, 8]
    last = load_checkpoint(run / "last.pt")
    assert (
        last["meta"]["step"] == 8 and last["meta"]["method"] == "vdsr" and last["meta"]["marker"] == "CELL2"
    )
    assert set(last["training_state"]) >= {"optimizer", "scheduler", "ema", "step", "epoch", "loader", "rng"}
    model, info = load_pretrained(run / "best.pt", scale=4, marker="CELL2")
    assert info["method"] == "vdsr" and not model.training
    with pytest.raises(ValueError, match="scale"):
        load_pretrained(run / "best.pt", scale=2)


@pytest.mark.parametrize("schedule", ["epoch", "original"])
def test_mysteplr_granularity(tiny, trainer_store, tmp_path, schedule):
    cfg = tiny(trainer_store, "train.epochs=3", "optim.step_size=2", "eval.every=100",
                      f"optim.schedule={schedule}", "optim.min_lr=0.002")  # fmt: skip
    fit(cfg, tmp_path / "run")
    lrs = [float(r["lr"]) for r in _rows(tmp_path / "run" / "metrics.csv")]
    ipe = 4
    t = [(s if schedule == "original" else s // ipe) for s in range(12)]  # scheduler steps before step s+1
    expect = [lr_at(k, lr0=0.01, step_size=2, gamma=0.5, min_lr=0.002) for k in t]
    assert lrs == pytest.approx(expect)
    assert min(lrs) == pytest.approx(
        0.005 if schedule == "epoch" else 0.002
    )  # floor reached only per iteration


def test_resume_follows_the_same_trajectory(tiny, trainer_store, tmp_path):
    extra = ["train.epochs=3", "train.max_steps=10", "train.checkpoint_every=3", "eval.every=4",
             "optim.ema_decay=0.9", "optim.grad_clip=1.0"]  # fmt: skip
    cfg = tiny(trainer_store, *extra)
    full = fit(cfg, tmp_path / "full")

    class Killed(Exception):
        pass

    def kill_at_8(event, info):
        if event == "step" and info["step"] == 8:  # after the checkpoint of step 6, mid-epoch 1
            raise Killed

    with pytest.raises(Killed):
        fit(cfg, tmp_path / "killed", callback=kill_at_8)
    assert load_checkpoint(tmp_path / "killed" / "last.pt")["meta"]["step"] == 6
    resumed = fit(None, tmp_path / "killed", resume=True)
    assert resumed.losses == full.losses[6:]
    a = [r["loss"] for r in _rows(tmp_path / "full" / "metrics.csv")]
    b = [r["loss"] for r in _rows(tmp_path / "killed" / "metrics.csv")]
    assert a == b and len(a) == 10
    wa = load_checkpoint(tmp_path / "full" / "last.pt")
    wb = load_checkpoint(tmp_path / "killed" / "last.pt")
    for k, v in wa["model"].items():
        torch.testing.assert_close(v, wb["model"][k], rtol=0, atol=0)
    for k, v in wa["training_state"]["ema"].items():
        torch.testing.assert_close(v, wb["training_state"]["ema"][k], rtol=0, atol=0)
    assert [r["roi_psnr"] for r in _rows(tmp_path / "full" / "val.csv")] == [
        r["roi_psnr"] for r in _rows(tmp_path / "killed" / "val.csv")
    ]


def test_run_dir_refusals(tiny, trainer_store, tmp_path):
    cfg = tiny(trainer_store, "train.max_steps=1", "eval.every=100")
    fit(cfg, tmp_path / "run")
    with pytest.raises(RunDirError, match="already holds a run.*--resume.*--force"):
        fit(cfg, tmp_path / "run")
    assert fit(cfg, tmp_path / "run", force=True).step == 1
    with pytest.raises(FileNotFoundError, match="nothing to resume"):
        fit(cfg, tmp_path / "empty", resume=True)
    other = apply_overrides(cfg, ["optim.lr=0.5"])
    with pytest.raises(ValueError, match="differs"):
        fit(other, tmp_path / "run", resume=True)


def test_missing_store_and_marker_errors(tiny, trainer_store, tmp_path):
    with pytest.raises(Exception, match="no store at this path"):
        fit(tiny(str(tmp_path / "nope.zarr")), tmp_path / "run")


def test_nan_loss_names_step_batch_and_checkpoint(tiny, trainer_store, tmp_path, monkeypatch):
    from trainers import losses

    real = losses.SRLoss.__call__
    calls = {"n": 0}

    def poisoned(self, outputs, hr):
        calls["n"] += 1
        loss, parts = real(self, outputs, hr)
        return (loss * float("nan") if calls["n"] == 3 else loss), parts

    monkeypatch.setattr(losses.SRLoss, "__call__", poisoned)
    cfg = tiny(trainer_store, "train.checkpoint_every=2", "eval.every=100")
    pattern = r"loss is nan at step 3 .*\(tile, y0, x0\): \(1, \d+, \d+\), \(1, \d+, \d+\); "
    pattern += r"last good checkpoint: .*last.pt"
    with pytest.raises(TrainingDivergedError, match=pattern):
        fit(cfg, tmp_path / "run")


def test_disk_full_keeps_the_previous_checkpoint(tiny, trainer_store, tmp_path, monkeypatch):
    from trainers import checkpoints

    cfg = tiny(trainer_store, "train.checkpoint_every=2", "train.max_steps=4", "eval.every=100")
    real_save = torch.save
    n = {"saves": 0}

    def full_disk(obj, f, *a, **k):
        n["saves"] += 1
        if n["saves"] >= 2:
            real_save(obj, f, *a, **k)  # a partial temp file is written, then the disk is "full"
            raise OSError(28, "No space left on device")
        return real_save(obj, f, *a, **k)

    monkeypatch.setattr(checkpoints.torch if hasattr(checkpoints, "torch") else torch, "save", full_disk)
    with pytest.raises(OSError, match=r"at step 4 .*No space left.*previous checkpoint .*last.pt is intact"):
        fit(cfg, tmp_path / "run")
    ck = load_checkpoint(tmp_path / "run" / "last.pt")
    assert ck["meta"]["step"] == 2
    assert not list((tmp_path / "run").glob("*.tmp"))
    monkeypatch.setattr(torch, "save", real_save)
    assert fit(None, tmp_path / "run", resume=True).step == 4


def test_cli_fit_and_resume(tiny_overrides, trainer_store, tmp_path):
    from cli.srtrain import main

    out = tmp_path / "run"
    sets = [a for s in tiny_overrides + ["train.max_steps=2", "eval.every=100"] for a in ("--set", s)]
    args = [
        "fit",
        "--store",
        trainer_store,
        "--method",
        "vdsr",
        "--scale",
        "4",
        "--marker",
        "CELL2",
        "--out",
        str(out),
    ]
    args += sets
    res = CliRunner().invoke(main, args)
    assert res.exit_code == 0, res.output
    assert "trained 2 steps" in res.output
    res = CliRunner().invoke(main, args)
    assert res.exit_code != 0 and "already holds a run" in res.output
    res = CliRunner().invoke(main, args[:-2] + ["--set", "train.epoch=3"])
    assert res.exit_code != 0 and "Did you mean 'train.epochs'" in res.output
    res = CliRunner().invoke(main, ["fit", "--out", str(out), "--resume", "--set", "train.max_steps=3"])
    assert res.exit_code == 0, res.output
    assert "trained 3 steps" in res.output
