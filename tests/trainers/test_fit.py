"""Training loop: outputs, schedules, exact resume, refusals, NaN provenance, disk full, CLI."""

from __future__ import annotations

import csv

import pytest
import torch
from click.testing import CliRunner

from srcaco2.trainers._state import lr_at
from srcaco2.trainers.checkpoints import load_checkpoint, load_pretrained
from srcaco2.trainers.config import apply_overrides, load_config
from srcaco2.trainers.fit import RunDirError, TrainingDivergedError, fit


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
               "optim.name=sgd", "optim.lr=0.01", "optim.scheduler=mysteplr", "optim.warmup_steps=0",
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
    with pytest.raises(Exception, match="no such store"):
        fit(tiny(str(tmp_path / "nope.zarr")), tmp_path / "run")


def test_nan_loss_names_step_batch_and_checkpoint(tiny, trainer_store, tmp_path, monkeypatch):
    from srcaco2.trainers import losses

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
    from srcaco2.trainers import checkpoints

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
    from srcaco2.cli.srtrain import main

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


# ------------------------------------------------------------------ never a non-finite checkpoint
def _poison_weights_at(monkeypatch, step, value):
    """After the optimiser update of `step`, one weight becomes `value` (an update gone wrong)."""
    from srcaco2.trainers.engine import loop

    real = loop.train_step
    n = {"steps": 0}

    def poisoned(ctx, lr, hr):
        out = real(ctx, lr, hr)
        n["steps"] += 1
        if n["steps"] == step:
            with torch.no_grad():
                next(ctx.model.parameters()).view(-1)[0] = value
        return out

    monkeypatch.setattr(loop, "train_step", poisoned)


def _all_finite(ckpt):
    return all(torch.isfinite(v).all() for v in ckpt["model"].values() if v.is_floating_point())


@pytest.mark.parametrize("value", [float("nan"), float("inf")])
def test_nonfinite_update_on_a_validation_step_saves_nothing(
    tiny, trainer_store, tmp_path, monkeypatch, value
):
    run = tmp_path / "run"
    _poison_weights_at(monkeypatch, 4, value)  # step 4 validates and checkpoints
    cfg = tiny(trainer_store, "train.max_steps=8", "eval.every=2", "optim.ema_decay=0.5")
    pattern = (r"weights are non-finite after the update of step 4 \(its loss was finite.*"
               r"\(tile, y0, x0\): \(1, \d+, \d+\), \(1, \d+, \d+\); nothing was saved at this step; "
               r"last good checkpoint: .*last.pt")  # fmt: skip
    with pytest.raises(TrainingDivergedError, match=pattern):
        fit(cfg, run)
    last, best = load_checkpoint(run / "last.pt"), load_checkpoint(run / "best.pt")
    assert last["meta"]["step"] == 2 and best["meta"]["step"] == 2
    assert _all_finite(last) and _all_finite(best)
    assert all(torch.isfinite(v).all() for v in last["training_state"]["ema"].values())
    assert [int(r["step"]) for r in _rows(run / "val.csv")] == [2]
    # the run resumes from the finite checkpoint (the update is not poisoned this time)
    monkeypatch.undo()
    assert fit(None, run, resume=True).step == 8


def test_nan_loss_on_a_validation_step_is_caught_before_validating(
    tiny, trainer_store, tmp_path, monkeypatch
):
    from srcaco2.trainers import losses

    real = losses.SRLoss.__call__
    calls = {"n": 0}

    def poisoned(self, outputs, hr):
        calls["n"] += 1
        loss, parts = real(self, outputs, hr)
        return (loss * float("inf") if calls["n"] == 4 else loss), parts

    monkeypatch.setattr(losses.SRLoss, "__call__", poisoned)
    run = tmp_path / "run"
    cfg = tiny(trainer_store, "train.max_steps=8", "eval.every=2", "train.sync_every=50")
    pattern = r"loss is (-?inf|nan) at step 4 .*last good checkpoint: .*last.pt"
    with pytest.raises(TrainingDivergedError, match=pattern):
        fit(cfg, run)
    assert [int(r["step"]) for r in _rows(run / "val.csv")] == [2]
    assert [int(r["step"]) for r in _rows(run / "metrics.csv")] == [1, 2, 3]  # the finite steps are logged
    assert load_checkpoint(run / "last.pt")["meta"]["step"] == 2


def test_better_never_takes_nan():
    from srcaco2.trainers.fit import _better

    nan = float("nan")
    assert not _better("roi_psnr", nan, None) and not _better("roi_psnr", nan, 20.0)
    assert _better("roi_psnr", 20.0, nan)  # a NaN recorded by an older version is replaced
    assert _better("roi_psnr", 20.0, 20.0) and not _better("roi_psnr", 19.0, 20.0)
    assert _better("roi_nrmse", 0.1, 0.2) and not _better("nrmse", float("inf"), None)


# ------------------------------------------------------------------------- last.prev.pt fallback
class _Killed(Exception):
    pass


def test_truncated_last_resumes_from_the_previous_one(tiny, trainer_store, tmp_path, caplog):
    cfg = tiny(trainer_store, "train.max_steps=7", "train.checkpoint_every=2", "eval.every=100")
    full = fit(cfg, tmp_path / "full")

    def kill_at_5(event, info):
        if event == "step" and info["step"] == 5:
            raise _Killed

    run = tmp_path / "run"
    with pytest.raises(_Killed):
        fit(cfg, run, callback=kill_at_5)  # read at the checkpoint of step 6, before writing it
    assert load_checkpoint(run / "last.pt")["meta"]["step"] == 4
    assert load_checkpoint(run / "last.prev.pt")["meta"]["step"] == 2
    data = (run / "last.pt").read_bytes()
    (run / "last.pt").write_bytes(data[: len(data) // 2])  # an interrupted copy
    events = []
    with caplog.at_level("WARNING", logger="srcaco2.trainers.fit"):
        res = fit(None, run, resume=True, callback=lambda e, i: events.append((e, i)))
    assert res.resumed_from == run / "last.prev.pt"
    assert "resuming from" in caplog.text and "last.prev.pt" in caplog.text and "truncated" in caplog.text
    start = events[0][1]
    assert start["resumed_from"].endswith("last.prev.pt") and "truncated" in start["resume_problems"][0]
    assert res.losses == full.losses[2:]  # exact from step 2
    assert (run / "last.bad.pt").exists()  # set aside, never kept as last.prev.pt
    assert load_checkpoint(run / "last.prev.pt")["meta"]["step"] == 6
    logged = [r["loss"] for r in _rows(run / "metrics.csv")]
    assert logged == [r["loss"] for r in _rows(tmp_path / "full" / "metrics.csv")]


def test_resume_refuses_when_no_checkpoint_is_usable(tiny, trainer_store, tmp_path):
    from srcaco2.trainers.checkpoints import CheckpointError, load_resume_checkpoint, save_checkpoint

    cfg = tiny(trainer_store, "train.max_steps=2", "train.checkpoint_every=1", "eval.every=100")
    run = tmp_path / "run"
    fit(cfg, run)
    ck = load_checkpoint(run / "last.pt")
    nan_state = {
        k: torch.full_like(v, float("nan")) if v.is_floating_point() else v for k, v in ck["model"].items()
    }
    save_checkpoint(run / "last.pt", model_state=nan_state, config=ck["config"], meta=ck["meta"],
                    training_state=ck["training_state"])  # fmt: skip
    got, path, problems = load_resume_checkpoint(run)
    assert path.name == "last.prev.pt" and "non-finite weights" in problems[0]
    (run / "last.prev.pt").write_bytes(b"not a checkpoint")
    pattern = r"cannot resume .*last.pt holds non-finite weights.*last.prev.pt is not a checkpoint"
    with pytest.raises(CheckpointError, match=pattern):
        fit(None, run, resume=True)


# --------------------------------------------------------------------- failed runs, torchrun ranks
def test_a_run_that_failed_before_its_first_checkpoint_is_simply_restarted(
    tiny, trainer_store, tmp_path, monkeypatch
):
    from srcaco2.trainers import losses

    real = losses.SRLoss.__call__

    def poisoned(self, outputs, hr):
        loss, parts = real(self, outputs, hr)
        return loss * float("nan"), parts

    monkeypatch.setattr(losses.SRLoss, "__call__", poisoned)
    run = tmp_path / "run"
    cfg = tiny(trainer_store, "train.max_steps=3", "eval.every=100")
    with pytest.raises(TrainingDivergedError, match=r"step 1 .*last good checkpoint: \(none yet\)"):
        fit(cfg, run)
    assert (run / "config.yaml").exists() and not list(run.glob("*.pt"))
    monkeypatch.undo()
    with pytest.raises(FileNotFoundError, match="stopped before its first checkpoint"):
        fit(cfg, run, resume=True)
    assert fit(cfg, run).step == 3  # no --force needed: nothing in it could be resumed
    with pytest.raises(RunDirError, match="already holds a run"):
        fit(cfg, run)  # now it holds checkpoints


def test_a_failed_start_leaves_no_empty_run_folder(tiny, trainer_store, tmp_path):
    with pytest.raises(Exception, match="no such store"):
        fit(tiny(str(tmp_path / "nope.zarr")), tmp_path / "run")
    assert not (tmp_path / "run").exists()
    (tmp_path / "mine").mkdir()
    with pytest.raises(Exception, match="no such store"):
        fit(tiny(str(tmp_path / "nope.zarr")), tmp_path / "mine")
    assert (tmp_path / "mine").is_dir()  # a folder the user made is left alone


def test_cli_reports_on_rank_0_only(tiny_overrides, trainer_store, tmp_path, monkeypatch):
    import srcaco2.trainers.fit as fit_module
    from srcaco2.cli.srtrain import main
    from srcaco2.trainers.fit import FitResult

    def fake_fit(cfg, out_dir, **kw):
        return FitResult(
            run_dir=tmp_path, step=3, epoch=0, best_metric=None, best_step=None, losses=[], rank=1
        )

    monkeypatch.setattr(fit_module, "fit", fake_fit)
    monkeypatch.setenv("RANK", "1")
    args = ["fit", "--store", trainer_store, "--method", "vdsr", "--scale", "4", "--marker", "CELL2",
            "--out", str(tmp_path / "run")]  # fmt: skip
    res = CliRunner().invoke(main, args)
    assert res.exit_code == 0, res.output
    assert "best validation score" not in res.output and res.output.strip() == ""

    def failing_fit(cfg, out_dir, **kw):
        raise ValueError("boom")

    monkeypatch.setattr(fit_module, "fit", failing_fit)
    res = CliRunner().invoke(main, args)
    assert res.exit_code != 0 and "[rank 1] boom" in res.output
