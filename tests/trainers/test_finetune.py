"""Fine-tuning: `fit` with `model.init_from` (`srtrain fit --init-from`) from our runs and original files."""

from __future__ import annotations

import csv

import pytest
import torch
import yaml
from click.testing import CliRunner

from srcaco2.trainers.checkpoints import CheckpointError, load_checkpoint
from srcaco2.trainers.config import load_config
from srcaco2.trainers.fit import fit

_SOURCE: dict[str, object] = {}


@pytest.fixture
def source_run(tiny, trainer_store, tmp_path_factory):
    """A short tiny-VDSR run on CELL2, made once per session (its weights start the fine-tunes)."""
    if trainer_store not in _SOURCE:
        out = tmp_path_factory.mktemp("source") / "run"
        fit(tiny(trainer_store, "train.max_steps=4", "eval.every=2"), out)
        _SOURCE[trainer_store] = out
    return _SOURCE[trainer_store]


ONE_STEP = (
    "train.max_steps=1", "eval.every=100", "optim.lr=1e-9", "optim.scheduler=constant",
    "optim.warmup_steps=0",
)  # fmt: skip
"""One step at a negligible learning rate: the weights after it are the initial ones within 1e-6."""


def _first_lr(run):
    with open(run / "metrics.csv", newline="") as f:
        return float(next(csv.DictReader(f))["lr"])


def _assert_starts_from(res, state):
    """After one step at lr 1e-9 the weights are the initial ones up to ~1e-9."""
    got = res.model.state_dict()
    for k, v in state.items():
        torch.testing.assert_close(got[k], v, rtol=0, atol=1e-6)


def test_init_from_a_run_of_ours_on_another_marker(tiny, trainer_store, tmp_path, source_run):
    best = load_checkpoint(source_run / "best.pt")
    cfg = tiny(trainer_store, *ONE_STEP, "data.marker=CELL1",
               f"model.init_from={source_run}")  # fmt: skip
    events = []
    res = fit(cfg, tmp_path / "ft", callback=lambda e, i: events.append((e, i)))
    _assert_starts_from(res, best["model"])
    assert events[0][1]["init_from"] == str(source_run / "best.pt")
    assert load_config(tmp_path / "ft" / "config.yaml").model.init_from == str(source_run)
    assert _first_lr(tmp_path / "ft") == 1e-9  # a fresh optimiser and schedule
    last = load_checkpoint(tmp_path / "ft" / "last.pt")
    assert last["meta"]["step"] == 1 and last["meta"]["marker"] == "CELL1"
    # a random start is far from those weights: the comparison above can fail
    scratch = fit(tiny(trainer_store, *ONE_STEP,
                       "train.seed=7"), tmp_path / "scratch")  # fmt: skip
    with pytest.raises(AssertionError):
        _assert_starts_from(scratch, best["model"])


def test_init_from_original_files(tiny, trainer_store, tmp_path, source_run):
    state = load_checkpoint(source_run / "last.pt")["model"]
    bare = tmp_path / "G-model.pth"
    torch.save(state, bare)  # a plain state_dict, as the original benchmark publishes
    cfg = tiny(
        trainer_store,
        "train.max_steps=1",
        "eval.every=100",
        "optim.lr=1e-9",
        "optim.scheduler=constant",
        f"model.init_from={bare}",
    )
    _assert_starts_from(fit(cfg, tmp_path / "a"), state)
    # an original run directory: config_model.yml + best-models/G-model.pth
    orig = tmp_path / "VDSR" / "caco2_train_X_4_in_128_out_512_cell_CELL2" / "id_0-x_4-netG_VDSR-sd_0-t"
    (orig / "best-models").mkdir(parents=True)
    (orig / "config_model.yml").write_text(yaml.safe_dump({"model": {"net_type": "VDSR", "scale": 4}}))
    torch.save({"module." + k: v for k, v in state.items()}, orig / "best-models" / "G-model.pth")
    cfg = tiny(
        trainer_store,
        "train.max_steps=1",
        "eval.every=100",
        "optim.lr=1e-9",
        "optim.scheduler=constant",
        f"model.init_from={orig}",
    )
    _assert_starts_from(fit(cfg, tmp_path / "b"), state)


def test_init_from_refuses_weights_that_do_not_fit(tiny, trainer_store, tmp_path, source_run):
    wide = tiny(trainer_store, "model.overrides.num_features=8", f"model.init_from={source_run}")
    pattern = (
        r"init weights .*source.*does not fit vdsr x4: .*shape difference.*"
        r"built with \{'num_features': 4, 'num_trunk_layers': 1\} .*--set model.overrides.num_features=4"
    )
    with pytest.raises(CheckpointError, match=pattern):
        fit(wide, tmp_path / "wide")
    assert not (tmp_path / "wide").exists()  # nothing half-made
    other = tiny(trainer_store, "model.method=srcnn", "model.overrides={}", f"model.init_from={source_run}")
    with pytest.raises(CheckpointError, match=r"holds method='vdsr' .* but method='srcnn' was requested"):
        fit(other, tmp_path / "other")
    scale2 = tiny(trainer_store, "data.scale=2", f"model.init_from={source_run}")
    with pytest.raises(CheckpointError, match=r"holds scale=4 .* but scale=2"):
        fit(scale2, tmp_path / "s2")
    with pytest.raises(FileNotFoundError, match="does not exist"):
        fit(tiny(trainer_store, f"model.init_from={tmp_path / 'nope.pt'}"), tmp_path / "nope")


def test_cli_init_from(tiny_overrides, trainer_store, tmp_path, source_run, monkeypatch):
    from srcaco2.cli.srtrain import main

    monkeypatch.chdir(source_run.parent)
    sets = [a for s in tiny_overrides + ["train.max_steps=1", "eval.every=100"] for a in ("--set", s)]
    args = ["fit", "--store", trainer_store, "--method", "vdsr", "--scale", "4", "--marker", "CELL2",
            "--out", str(tmp_path / "ft"), "--init-from", "run/best.pt", *sets]  # fmt: skip
    res = CliRunner().invoke(main, args)
    assert res.exit_code == 0, res.output
    assert "initial weights:" in res.output and "trained 1 steps" in res.output
    assert load_config(tmp_path / "ft" / "config.yaml").model.init_from == str(source_run / "best.pt")
    res = CliRunner().invoke(main, ["fit", "--out", str(tmp_path / "ft"), "--resume", "--init-from", "run"])
    assert res.exit_code == 2 and "--init-from starts a new run" in res.output
    res = CliRunner().invoke(main, [*args[:-len(sets)], "--set", "model.overrides.num_features=8",
                                    "--out", str(tmp_path / "bad")])  # fmt: skip
    assert res.exit_code == 1 and "does not fit vdsr x4" in res.output and "Traceback" not in res.output
