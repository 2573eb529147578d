"""Config tree: paper recipe, YAML round trip, dotted overrides, errors that suggest the fix."""

from __future__ import annotations

import pytest
import yaml

from srcaco2.trainers.config import (
    ConfigError,
    RunConfig,
    apply_overrides,
    config_to_dict,
    load_config,
    save_config,
)
from srcaco2.trainers.recipes import recipe_config


def test_paper_recipe_values():
    cfg = recipe_config("swinir", scale=8, marker="CELL2", recipe="paper")
    assert (cfg.optim.name, cfg.optim.lr, cfg.optim.momentum, cfg.optim.nesterov) == ("sgd", 0.01, 0.9, True)
    assert (cfg.optim.weight_decay, cfg.optim.step_size, cfg.optim.gamma, cfg.optim.min_lr) == (
        0.0,
        30,
        0.5,
        1e-4,
    )
    assert (cfg.optim.schedule, cfg.optim.grad_clip, cfg.optim.warmup_steps) == ("original", 0.0, 0)
    assert (cfg.train.divergence, cfg.train.reseed, cfg.eval.at_end) == ("report", True, False)
    assert (cfg.data.batch_size, cfg.data.h_size, cfg.train.epochs) == (8, 128, 100)
    assert (cfg.loss.l2_weight, cfg.loss.ssim_weight, cfg.loss.ssim_window, cfg.loss.ssim_padding) == (
        1.0, 5.0, 19, "same")  # fmt: skip
    assert cfg.data.loader.roi_bias and cfg.data.loader.roi_threshold == 4
    assert cfg.data.loader.samples_per_epoch is None and cfg.model.init_from == ""
    assert (cfg.eval.val_windows, cfg.eval.every, cfg.eval.select_metric) == (128, 0.9, "roi_psnr")
    assert cfg.version == 1 and cfg.data.scale == 8 and cfg.model.method == "swinir"


def test_yaml_round_trip(tmp_path):
    cfg = apply_overrides(
        recipe_config("vdsr", 4, "CELL1", store="/x/s.zarr"),
        ["train.max_steps=7", "model.overrides.num_features=8", "optim.schedule=original"],
    )
    p = save_config(cfg, tmp_path / "config.yaml")
    text = p.read_text()
    back = load_config(p)
    assert back == cfg
    save_config(back, tmp_path / "again.yaml")
    assert (tmp_path / "again.yaml").read_text() == text
    assert yaml.safe_load(text)["model"]["overrides"] == {"num_features": 8}


def test_overrides_are_typed():
    cfg = apply_overrides(
        RunConfig(),
        [
            "train.epochs=5",
            "optim.lr=1e-3",
            "data.roi_bias=false",
            "eval.val_windows=null",
            "data.marker=CELL0",
        ],
    )
    assert cfg.train.epochs == 5 and isinstance(cfg.train.epochs, int)
    assert cfg.optim.lr == 1e-3 and cfg.data.loader.roi_bias is False and cfg.eval.val_windows is None
    assert cfg.data.marker == "CELL0"


def test_unknown_key_suggests_closest():
    with pytest.raises(ConfigError, match=r"'train.epoch'.*Did you mean 'train.epochs'"):
        apply_overrides(RunConfig(), ["train.epoch=3"])
    with pytest.raises(ConfigError, match="Did you mean 'optim.lr'"):
        apply_overrides(RunConfig(), ["optim.lrr=0.1"])


def test_wrong_types_are_refused(tmp_path):
    with pytest.raises(ConfigError, match=r"train.epochs='ten'.*expected int"):
        apply_overrides(RunConfig(), ["train.epochs=ten"])
    with pytest.raises(ConfigError, match=r"data.loader.roi_bias='maybe'.*expected bool"):
        apply_overrides(RunConfig(), ["data.loader.roi_bias=maybe"])
    with pytest.raises(ConfigError, match="optim.schedule='weekly' is not allowed"):
        apply_overrides(RunConfig(), ["optim.schedule=weekly"])
    with pytest.raises(ConfigError, match="must look like key=value"):
        apply_overrides(RunConfig(), ["train.epochs"])
    bad = config_to_dict(RunConfig())
    bad["data"]["batch_size"] = "8"
    (tmp_path / "bad.yaml").write_text(yaml.safe_dump(bad))
    with pytest.raises(ConfigError, match=r"bad.yaml: data.batch_size='8' has the wrong type"):
        load_config(tmp_path / "bad.yaml")
    bad = config_to_dict(RunConfig())
    bad["loss"]["ssim_windw"] = 11
    (tmp_path / "bad2.yaml").write_text(yaml.safe_dump(bad))
    with pytest.raises(ConfigError, match="Did you mean 'loss.ssim_window'"):
        load_config(tmp_path / "bad2.yaml")


def test_field_and_cross_field_checks():
    with pytest.raises(ConfigError, match="h_size=130 must be a positive multiple of scale=4"):
        apply_overrides(RunConfig(), ["data.h_size=130"])
    with pytest.raises(ConfigError, match="Did you mean 'swinir'"):
        recipe_config("swinIRR", 4, "CELL2")
    with pytest.raises(ConfigError, match="data.marker=''"):  # names come from the store, checked at fit
        recipe_config("vdsr", 4, "")
    with pytest.raises(ConfigError, match="data.scale=9 is not an integer from 2 to 8"):
        recipe_config("vdsr", 9, "CELL2")
    with pytest.raises(ConfigError, match="ssim_window=12 must be odd"):
        apply_overrides(RunConfig(), ["loss.ssim_window=12"])


def test_recipes_differ_exactly_in_the_listed_fields(tmp_path):
    from srcaco2.trainers.recipes import RECIPE_DIFFERENCES, recipe_config

    default = recipe_config("swinir", 8, "CELL2")
    paper = recipe_config("swinir", 8, "CELL2", recipe="paper")
    assert (default.recipe, paper.recipe) == ("default", "paper")
    # the benchmark's quirks: per-iteration lr steps, crops off the LR grid, fp32
    assert (paper.optim.schedule, paper.data.aligned, paper.train.amp) == ("original", False, "off")
    flat_default, flat_paper = config_to_dict(default), config_to_dict(paper)

    def flat(d, prefix=""):
        out = {}
        for k, v in d.items():
            out.update(flat(v, f"{prefix}{k}.") if isinstance(v, dict) and v else {f"{prefix}{k}": v})
        return out

    fd, fp = flat(flat_default), flat(flat_paper)
    differing = {k for k in fd if fd[k] != fp[k]} - {"recipe"}
    assert differing == {d.key for d in RECIPE_DIFFERENCES}
    # each listed value is what --set would give
    for d in RECIPE_DIFFERENCES:
        assert apply_overrides(default, [f"{d.key}={d.paper}"]) != default
        assert apply_overrides(paper, [f"{d.key}={d.default}"]) != paper
    back = load_config(save_config(paper, tmp_path / "config.yaml"))
    assert back == paper and "recipe: paper" in (tmp_path / "config.yaml").read_text()
    with pytest.raises(ConfigError, match="recipe='papr' is not one of default, paper .did you mean 'paper'"):
        recipe_config("vdsr", 4, "CELL2", recipe="papr")


def test_fit_cli_recipe_option(tmp_path):
    import click
    from click.testing import CliRunner

    from srcaco2.cli.srtrain_fit import build_config, fit
    from srcaco2.trainers.recipes import RECIPE_DIFFERENCES

    cfg = build_config("s.zarr", "vdsr", "4", "CELL2", None, ["train.epochs=3"], "paper")
    assert cfg.recipe == "paper" and cfg.optim.schedule == "original" and cfg.train.epochs == 3
    saved = save_config(cfg, tmp_path / "c.yaml")
    with pytest.raises(click.UsageError, match="--recipe paper and --config"):
        build_config("s.zarr", None, None, None, str(saved), [], "paper")
    help_text = CliRunner().invoke(fit, ["--help"]).output
    for d in RECIPE_DIFFERENCES:
        assert f"{d.key}: paper {d.paper}, default {d.default}" in help_text


def test_data_config_embeds_the_loader_settings(tmp_path):
    from srcaco2.srdata.loader import LoaderSettings

    cfg = apply_overrides(
        RunConfig(),
        ["data.loader.num_workers=2", "data.loader.preload=auto", "data.loader.prefetch_factor=4",
         "data.loader.cache_bytes=1000000", "data.loader.pin_memory=false", "data.loader.aligned=false"],
    )  # fmt: skip
    assert cfg.data.loader == LoaderSettings(
        num_workers=2,
        preload="auto",
        prefetch_factor=4,
        cache_bytes=1_000_000,
        pin_memory=False,
        aligned=False,
    )
    back = load_config(save_config(cfg, tmp_path / "c.yaml"))
    assert back == cfg and isinstance(back.data.loader, LoaderSettings)
    assert yaml.safe_load((tmp_path / "c.yaml").read_text())["data"]["loader"]["preload"] == "auto"
    # every make_loader setting is a config key, and none is declared twice
    keys = set(config_to_dict(cfg)["data"])
    assert keys == {"store", "marker", "scale", "h_size", "batch_size", "loader"}
    with pytest.raises(ConfigError, match=r"data.loader: num_workers=-1 must be >= 0"):
        apply_overrides(RunConfig(), ["data.loader.num_workers=-1"])
    with pytest.raises(ConfigError, match="Did you mean 'data.loader.num_workers'"):
        apply_overrides(RunConfig(), ["data.loader.num_worker=1"])


def test_older_flat_loader_keys_still_load(tmp_path):
    old = config_to_dict(RunConfig())
    loader = old["data"].pop("loader")
    old["data"].update(num_workers=3, roi_bias=False, samples_per_epoch=16)  # a config.yaml of before
    (tmp_path / "old.yaml").write_text(yaml.safe_dump(old))
    cfg = load_config(tmp_path / "old.yaml")
    assert (cfg.data.loader.num_workers, cfg.data.loader.roi_bias, cfg.data.loader.samples_per_epoch) == (
        3, False, 16)  # fmt: skip
    assert cfg.data.loader.cache_bytes == loader["cache_bytes"]
    assert cfg.data.roi_bias is False  # read access under the older name
    with pytest.raises(AttributeError):
        cfg.data.no_such_thing  # noqa: B018
    # --set with an older key sets the new one
    assert apply_overrides(cfg, ["data.augment=false"]).data.loader.augment is False
    both = config_to_dict(RunConfig())
    both["data"]["roi_bias"] = False
    (tmp_path / "both.yaml").write_text(yaml.safe_dump(both))
    with pytest.raises(ConfigError, match="data.roi_bias and data.loader.roi_bias are both set"):
        load_config(tmp_path / "both.yaml")


def test_train_sync_every_and_init_from():
    cfg = apply_overrides(RunConfig(), ["train.sync_every=5", "model.init_from=/runs/a/best.pt"])
    assert cfg.train.sync_every == 5 and cfg.model.init_from == "/runs/a/best.pt"
    with pytest.raises(ConfigError, match="train.sync_every=0 must be >= 1"):
        apply_overrides(RunConfig(), ["train.sync_every=0"])


@pytest.mark.parametrize("text", ["nan", "inf", "-inf", "NaN"])
def test_non_finite_numbers_are_refused(text):
    for key in ("optim.lr", "optim.grad_clip", "loss.ssim_weight", "train.explode_mse"):
        with pytest.raises(ConfigError, match=rf"{key}=.* must be a finite number"):
            apply_overrides(RunConfig(), [f"{key}={text}"])


def test_yaml_duplicate_keys_refused_and_numeric_strings_read_as_numbers(tmp_path, caplog):
    dup = tmp_path / "dup.yaml"
    dup.write_text("optim:\n  lr: 0.1\n  name: adam\n  lr: 0.2\n")
    with pytest.raises(ConfigError, match=r"dup.yaml: key 'lr' is given twice \(lines 2 and 4\); keep one"):
        load_config(dup)
    text = tmp_path / "c.yaml"
    text.write_text("optim:\n  lr: 1e-3\n  grad_clip: .nan\n")  # PyYAML: "1e-3" is a string, .nan a float
    with pytest.raises(ConfigError, match="optim.grad_clip=nan must be a finite number"):
        load_config(text)
    text.write_text("optim:\n  lr: 1e-3\n")
    with caplog.at_level("WARNING"):
        assert load_config(text).optim.lr == 1e-3
    assert "optim.lr='1e-3' is a string in YAML" in caplog.text
