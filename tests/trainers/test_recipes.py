"""The two recipes' training behaviours: the divergence guard (default: stop; paper: report and skip),
the paper recipe's quirks (no last-step validation, per-step reseeding, the stop on a bad validation
metric), the lr schedule and the tiny version of ``benchmarks/train_health.py``."""

from __future__ import annotations

import csv
import math

import pytest
import torch

from srcaco2.trainers.config import OptimConfig, apply_overrides
from srcaco2.trainers.engine.guard import GRAD_FACTOR, DivergenceGuard, TrainingDivergedError
from srcaco2.trainers.fit import fit
from srcaco2.trainers.recipes import recipe_config


def _rows(path):
    with open(path, newline="") as f:
        return list(csv.DictReader(f))


def _paper(store, tiny_overrides, *extra):
    return apply_overrides(
        recipe_config("vdsr", 4, "CELL2", recipe="paper", store=store), tiny_overrides + list(extra)
    )


def _row(step, loss=-1.0, mse=0.01, norm=1.0, skipped=0):
    return {"step": step, "epoch": 0, "loss": loss, "mse": mse, "grad_norm": norm, "skipped": skipped}


# ------------------------------------------------------------------------------------------- guard
def test_guard_mse_rule_needs_growth_from_the_runs_own_start():
    guard = DivergenceGuard("stop", explode_mse=1.0, max_skipped=20)
    guard.check(_row(1, mse=1.8), None, None)  # a fresh network may start out of range: not an explosion
    guard.check(_row(2, mse=0.02), None, None)
    guard.check(_row(3, mse=0.9), None, None)  # grown 45x but still below explode_mse
    with pytest.raises(TrainingDivergedError, match=r"step 4 .*MSE is 1537 .*optim.grad_clip"):
        guard.check(_row(4, loss=1537.0, mse=1537.0), None, "run/last.pt")


def test_guard_gradient_norm_rule_and_report_mode():
    guard = DivergenceGuard("report", explode_mse=1.0, max_skipped=3)
    for step in range(1, 12):
        guard.check(_row(step, norm=2.0), None, None)
    assert not guard.tainted
    guard.check(_row(12, norm=2.0 * GRAD_FACTOR * 1.5), None, None)  # reported, not raised
    assert guard.tainted and guard.explosions == 1
    guard.validated()
    assert not guard.tainted
    stop = DivergenceGuard("stop", explode_mse=1.0, max_skipped=3)
    for step in range(1, 12):
        stop.check(_row(step, norm=2.0), None, None)
    with pytest.raises(TrainingDivergedError, match=r"gradient norm is 3000, 1500x the median"):
        stop.check(_row(12, norm=3000.0), None, None)
    # report: skipped batches are counted; a run of max_skipped of them ends the run
    guard.check(_row(13, loss=math.nan, mse=math.nan, norm=math.nan, skipped=1), None, None)
    guard.check(_row(14, loss=math.nan, mse=math.nan, norm=math.nan, skipped=1), None, None)
    with pytest.raises(TrainingDivergedError, match=r"3 batches in a row .*skipped .*frozen"):
        guard.check(_row(15, loss=math.nan, mse=math.nan, norm=math.nan, skipped=1), None, None)


def test_default_run_stops_at_an_explosion_and_names_the_keys(trainer_store, tiny_overrides, tmp_path):
    # the full-size VDSR with the paper's optimiser (SGD 0.01, no clipping, no warm-up): it explodes
    # within a few steps, and the default recipe's guard stops the run there
    data = [kv for kv in tiny_overrides if not kv.startswith("model.")]
    cfg = apply_overrides(
        recipe_config("vdsr", 4, "CELL2", store=trainer_store),
        [*data, "optim.name=sgd", "optim.lr=0.01", "optim.grad_clip=0", "optim.warmup_steps=0",
         "optim.scheduler=constant", "train.max_steps=12", "eval.every=100", "train.sync_every=4"],
    )  # fmt: skip
    with pytest.raises(
        TrainingDivergedError, match=r"(diverged|loss is) .*step \d+ .*optim.lr.*optim.grad_clip"
    ):
        fit(cfg, tmp_path / "run")
    rows = _rows(tmp_path / "run" / "metrics.csv")
    assert len(rows) < 12 and all(math.isfinite(float(r["loss"])) for r in rows)
    assert not (tmp_path / "run" / "best.pt").exists()
    # the default recipe itself trains the same network on the same batches without a divergence
    ok = apply_overrides(
        recipe_config("vdsr", 4, "CELL2", store=trainer_store), [*data, "train.max_steps=12"]
    )
    res = fit(ok, tmp_path / "ok")
    assert all(math.isfinite(v) for v in res.losses) and len(res.losses) == 12


# ------------------------------------------------------------------------------------ paper quirks
def test_paper_skips_a_nonfinite_batch_and_trains_on(trainer_store, tiny_overrides, tmp_path, monkeypatch):
    from srcaco2.trainers import losses

    real = losses.SRLoss.__call__
    calls = []

    def nan_on_second(self, outputs, hr):
        calls.append(1)
        loss, parts = real(self, outputs, hr)
        return (loss * math.nan if len(calls) == 2 else loss), parts

    monkeypatch.setattr(losses.SRLoss, "__call__", nan_on_second)
    snapshots = []
    from srcaco2.trainers.engine import loop as loop_mod

    real_step = loop_mod.train_step

    def recording(ctx, lr, hr):
        out = real_step(ctx, lr, hr)
        snapshots.append([p.detach().clone() for p in ctx.model.parameters()])
        return out

    monkeypatch.setattr(loop_mod, "train_step", recording)
    cfg = _paper(trainer_store, tiny_overrides, "train.max_steps=4", "eval.every=100", "optim.lr=1e-3")
    res = fit(cfg, tmp_path / "run")
    rows = _rows(tmp_path / "run" / "metrics.csv")
    assert [int(r["skipped"]) for r in rows] == [0, 1, 0, 0] and math.isnan(float(rows[1]["loss"]))
    assert res.step == 4
    for a, b in zip(snapshots[0], snapshots[1], strict=True):  # the skipped step changed no weight
        torch.testing.assert_close(a, b, rtol=0, atol=0)
    assert any(not torch.equal(a, b) for a, b in zip(snapshots[1], snapshots[2], strict=True))


def test_no_last_step_validation_under_paper(tiny, trainer_store, tiny_overrides, tmp_path):
    # 4 steps per epoch, every=0.9 -> validation every 3 steps; 7 steps: paper validates at 3, 6 only
    paper = _paper(
        trainer_store, tiny_overrides, "train.max_steps=7", "optim.lr=1e-4", "eval.abort_on_bad_metric=false"
    )
    fit(paper, tmp_path / "paper")
    assert [int(r["step"]) for r in _rows(tmp_path / "paper" / "val.csv")] == [3, 6]
    assert (tmp_path / "paper" / "last.pt").exists()  # the end still writes last.pt
    default = tiny(trainer_store, "train.max_steps=7")
    fit(default, tmp_path / "default")
    assert [int(r["step"]) for r in _rows(tmp_path / "default" / "val.csv")] == [3, 6, 7]


def test_paper_reseeds_every_step(trainer_store, tiny_overrides, tmp_path, monkeypatch):
    from srcaco2.trainers.engine import loop as loop_mod

    real_step = loop_mod.train_step
    draws = []

    def drawing(ctx, lr, hr):
        state = torch.get_rng_state()
        draws.append(torch.rand(3))
        torch.set_rng_state(state)
        return real_step(ctx, lr, hr)

    monkeypatch.setattr(loop_mod, "train_step", drawing)
    cfg = _paper(trainer_store, tiny_overrides, "train.max_steps=3", "eval.every=100", "train.seed=5")
    fit(cfg, tmp_path / "run")
    for k, d in enumerate(draws):  # set_seed(seed + step) before step k (0-based)
        torch.manual_seed(5 + k)
        torch.testing.assert_close(d, torch.rand(3), rtol=0, atol=0)


def test_paper_stops_clearly_on_a_negative_validation_metric(
    trainer_store, tiny_overrides, tmp_path, monkeypatch
):
    from click.testing import CliRunner

    from srcaco2.cli.srtrain_fit import fit as fit_cli
    from srcaco2.trainers.engine import validation

    real_run = validation.Validator.run

    def negative_ssim(self):
        model, means, rows = real_run(self)
        rows[0]["roi_ssim"] = -0.25
        return model, means, rows

    monkeypatch.setattr(validation.Validator, "run", negative_ssim)
    args = ["--store", trainer_store, "--method", "vdsr", "--scale", "4", "--marker", "CELL2",
            "--recipe", "paper", "--out", str(tmp_path / "run"), "--set", "train.max_steps=4"]  # fmt: skip
    for kv in tiny_overrides:
        args += ["--set", kv]
    result = CliRunner().invoke(fit_cli, args)
    assert result.exit_code == 1, result.output
    assert "warning: --recipe paper trains exactly as the released benchmark code" in result.output
    assert (
        "roi_ssim = -0.25 (negative)" in result.output and "eval.abort_on_bad_metric=false" in result.output
    )
    assert [int(r["step"]) for r in _rows(tmp_path / "run" / "val.csv")] == [3]


def test_a_validation_after_a_divergence_is_never_best(trainer_store, tiny_overrides, tmp_path, monkeypatch):
    from srcaco2.trainers.engine import guard as guard_mod

    real = guard_mod.DivergenceGuard.explosion
    monkeypatch.setattr(guard_mod.DivergenceGuard, "explosion",
                        lambda self, row: "forced" if row["step"] == 2 else real(self, row))  # fmt: skip
    cfg = _paper(
        trainer_store, tiny_overrides, "train.max_steps=6", "optim.lr=1e-4", "eval.abort_on_bad_metric=false"
    )
    res = fit(cfg, tmp_path / "run")
    val = _rows(tmp_path / "run" / "val.csv")
    assert [(int(r["step"]), int(r["is_best"])) for r in val] == [(3, 0), (6, 1)]
    assert res.best_step == 6


# ------------------------------------------------------------------------------------------ schedule
def test_cosine_schedule_with_warmup():
    from srcaco2.trainers._state import lr_factor

    cfg = OptimConfig(name="adam", lr=2e-4, scheduler="cosine", min_lr=1e-6, warmup_steps=10)
    f = [lr_factor(t, cfg, total_steps=111, iters_per_epoch=7) for t in range(111)]
    assert f[0] == pytest.approx(0.1) and f[4] == pytest.approx(0.5) and f[9] == pytest.approx(1.0)
    assert f[60] == pytest.approx(0.5 * (1 + 1e-6 / 2e-4), rel=1e-6)  # half way through the decay
    assert f[-1] == pytest.approx(1e-6 / 2e-4, rel=1e-6) and all(a >= b for a, b in zip(f[9:], f[10:]))


# ------------------------------------------------------------------------------------- train health
def test_train_health_tiny_networks_finite_and_falling(trainer_store, tmp_path):
    from srcaco2.benchmarks import train_health
    from srcaco2.trainers.models.registry import model_info

    def settings(method):
        tiny = [f"model.overrides.{k}={v}" for k, v in model_info(method).tiny_overrides(4).items()]
        extra = (*tiny, "optim.warmup_steps=5", "optim.lr=1e-3")
        return train_health.HealthSettings(
            h_size=32, batch_size=2, budget_s=0.0, val_windows=1, overrides=extra
        )

    results = []
    for method in ("vdsr", "edsr_liif", "mslapsrn"):
        r = train_health.run_default(method, 4, trainer_store, tmp_path, settings(method))
        assert r["steps"] == train_health.MIN_STEPS and not r["diverged"]
        assert all(math.isfinite(v) for v in r["losses"]) and r["loss_falls"], (method, r["losses"])
        assert math.isfinite(r["val_end_roi_psnr"]) and math.isfinite(r["bicubic_roi_psnr"])
        results.append(r)
    paper = train_health.run_paper("vdsr", 4, trainer_store, tmp_path, settings("vdsr"))
    assert paper["recipe"] == "paper" and paper["steps"] >= 1
    summary = train_health.summarise([*results, paper])
    assert summary["default_runs"] == 3 and summary["default_diverged"] == 0 and summary["paper_runs"] == 1
    png = train_health.plot(results, tmp_path / "curves.png")
    assert png.stat().st_size > 1000


# ------------------------------------------------------------------------------------ fit's reports
def test_val_csv_epochs_are_the_epochs_the_steps_belong_to(tiny, trainer_store, tmp_path):
    fit(tiny(trainer_store, "train.epochs=2", "eval.every=1.0"), tmp_path / "run")  # 4 steps per epoch
    val = _rows(tmp_path / "run" / "val.csv")
    assert [(int(r["step"]), int(r["epoch"])) for r in val] == [(4, 0), (8, 1)]


def test_fit_cli_says_how_to_continue_after_ctrl_c(trainer_store, tiny_overrides, tmp_path, monkeypatch):
    from click.testing import CliRunner

    import srcaco2.trainers.fit as fit_mod
    from srcaco2.cli.srtrain_fit import fit as fit_cli

    sets = [a for kv in tiny_overrides for a in ("--set", kv)]
    base = ["--store", trainer_store, "--method", "vdsr", "--scale", "4", "--marker", "CELL2", *sets]

    def interrupted(*args, **kwargs):
        raise KeyboardInterrupt

    monkeypatch.setattr(fit_mod, "fit", interrupted)
    res = CliRunner().invoke(fit_cli, [*base, "--out", str(tmp_path / "new")])
    assert res.exit_code == 130 and "no checkpoint was written yet: rerun the same command" in res.output
    monkeypatch.undo()
    assert (
        CliRunner()
        .invoke(fit_cli, [*base, "--out", str(tmp_path / "run"), "--set", "train.max_steps=4"])
        .exit_code
        == 0
    )
    monkeypatch.setattr(fit_mod, "fit", interrupted)
    res = CliRunner().invoke(fit_cli, ["--out", str(tmp_path / "run"), "--resume"])
    assert res.exit_code == 130 and f"srtrain fit --out {tmp_path / 'run'} --resume" in res.output


def test_a_tie_is_reported_as_a_tie(tiny, trainer_store, tmp_path, monkeypatch):
    from srcaco2.trainers.engine import validation

    real_run = validation.Validator.run

    def constant_scores(self):
        model, means, rows = real_run(self)
        return model, {**means, "roi_psnr": 30.0}, rows

    monkeypatch.setattr(validation.Validator, "run", constant_scores)
    events = []
    fit(
        tiny(trainer_store, "train.max_steps=6"),
        tmp_path / "run",
        callback=lambda e, i: events.append((e, i)),
    )
    vals = [i for e, i in events if e == "val"]
    assert [(v["is_best"], v["tie"]) for v in vals] == [(True, False), (True, True)]  # steps 3 and 6
    assert [e for e, _ in events].count("val_start") == len(vals)


def test_no_checkpoint_written_after_a_divergence_is_named_last_good(
    trainer_store, tiny_overrides, tmp_path, monkeypatch
):
    """Under `paper` (report) the run trains on after an explosion; checkpoints written after it are
    never offered as the 'last good' one."""
    from srcaco2.trainers.engine import guard as guard_mod
    from srcaco2.trainers.engine import loop as loop_mod

    real = guard_mod.DivergenceGuard.explosion
    monkeypatch.setattr(guard_mod.DivergenceGuard, "explosion",
                        lambda self, row: "forced" if row["step"] == 5 else real(self, row))  # fmt: skip
    seen = []
    real_run = loop_mod.TrainLoop.run

    def run(self):
        try:
            real_run(self)
        finally:
            seen.append(self.last_good)

    monkeypatch.setattr(loop_mod.TrainLoop, "run", run)
    cfg = _paper(trainer_store, tiny_overrides, "train.max_steps=8", "optim.lr=1e-4",
                 "train.checkpoint_every=2", "eval.abort_on_bad_metric=false")  # fmt: skip
    fit(cfg, tmp_path / "run")
    assert seen == [None] and (tmp_path / "run" / "last.pt").exists()


def test_validation_windows_are_the_official_ones_or_the_run_says_why(
    tiny_overrides, tmp_path, caplog, trainer_store_factory
):
    """A store whose build rejected official val line 1: the first 2 official val windows are lines 0
    and 1, but the store holds lines 0 and 2. Paper refuses naming line 1; default warns and goes on."""
    make_trainer_store = trainer_store_factory
    store = make_trainer_store(str(tmp_path / "gap.zarr"), val_fold_lines=(0, 2))
    extra = [*tiny_overrides, "eval.val_windows=2", "train.max_steps=2", "eval.every=100"]
    paper = apply_overrides(recipe_config("vdsr", 4, "CELL2", recipe="paper", store=store), extra)
    with pytest.raises(
        ValueError, match=r"fold line\(s\) 1 \(1\) are missing .*exactly the official windows"
    ):
        fit(paper, tmp_path / "paper")
    default = apply_overrides(recipe_config("vdsr", 4, "CELL2", store=store), extra)
    with caplog.at_level("WARNING"):
        fit(default, tmp_path / "default")
    assert "fold line(s) 1 (1) are missing" in caplog.text and "goes on with them" in caplog.text
    whole = make_trainer_store(str(tmp_path / "whole.zarr"), val_fold_lines=(1, 0))  # complete head
    fit(
        apply_overrides(recipe_config("vdsr", 4, "CELL2", recipe="paper", store=whole), extra),
        tmp_path / "ok",
    )
