"""Registry-wide checks: every benchmark network at every scale has the published layout."""

from __future__ import annotations

import json

import pytest
from click.testing import CliRunner

from srcaco2.trainers.models import (
    MODEL_NAMES,
    UnknownModelError,
    available_models,
    build_model,
    model_info,
    reference_layout,
)

NETWORKS = [n for n in MODEL_NAMES if n != "bicubic"]


@pytest.mark.parametrize("scale", [2, 4, 8])
@pytest.mark.parametrize("name", NETWORKS)
def test_layout_matches_reference(name: str, scale: int, check_reference_layout) -> None:
    model, ref = check_reference_layout(name, scale)
    buffers = {k for k, _ in model.named_buffers()}
    assert {r[0] for r in ref["state_dict"] if r[3] == "buffer"} <= buffers


def test_unknown_name_suggests_close_match() -> None:
    with pytest.raises(UnknownModelError) as err:
        build_model("swinIRR", scale=2)
    assert "Did you mean 'swinir'" in str(err.value)
    with pytest.raises(UnknownModelError, match="Known: bicubic"):
        build_model("resnet50", scale=2)


@pytest.mark.parametrize(
    ("name", "scale"),
    [("bicubic", 9), ("srcnn", 9), ("dbpn", 3), ("prosr", 3), ("mslapsrn", 3), ("swinir", 3), ("nlsn", 5)],
)
def test_unsupported_scale_is_refused(name: str, scale: int) -> None:
    with pytest.raises(ValueError, match="supports scales"):
        build_model(name, scale=scale)


@pytest.mark.parametrize("name", [n for n in MODEL_NAMES])
def test_every_registered_scale_builds_and_upscales(name: str) -> None:
    """The registry's scales are what the architecture does: x s output at each of them (tiny widths)."""
    import torch

    info = model_info(name)
    for s in info.scales:
        model = build_model(name, s, **info.tiny_overrides(s)).eval()
        n = max(24, info.min_input_size())
        n = -(-n // (12 * info.input_grid)) * 12 * info.input_grid
        with torch.no_grad():
            out = model(torch.rand(1, 1, n, n))
        out = out[-1] if isinstance(out, (list, tuple)) else out
        assert tuple(out.shape) == (1, 1, s * n, s * n), (name, s)


def test_available_models_lists_all_seventeen() -> None:
    infos = available_models()
    assert [i.name for i in infos] == list(MODEL_NAMES)
    assert len(infos) == 17
    assert {i.family for i in infos} <= {
        "bicubic",
        "pre-upsampling",
        "post-upsampling",
        "iterative up-and-down",
        "progressive",
    }
    assert {i.name for i in infos if i.multi_output} == {"srfbn", "prosr", "mslapsrn"}


def test_family_agrees_with_reference() -> None:
    for name in NETWORKS:
        # the reference may qualify the family, e.g. "post-upsampling (implicit function)"
        assert reference_layout(name, 2)["family"].startswith(model_info(name).family), name


def test_unknown_override_lists_allowed_names() -> None:
    with pytest.raises(ValueError, match="allowed"):
        build_model("vdsr", scale=2, not_a_knob=3)


@pytest.mark.parametrize("name", MODEL_NAMES)
def test_every_builder_refuses_an_unknown_override_the_same_way(name: str) -> None:
    message = rf"^{name}: unknown override\(s\) 'not_a_knob'; allowed overrides: "
    with pytest.raises(ValueError, match=message):
        build_model(name, 2, not_a_knob=3)


def test_resolve_hparams_merges_skips_none_and_guards_builder_names() -> None:
    from srcaco2.trainers.models._hparams import resolve_hparams

    defaults = {"a": 1, "b": [2], "upscale": 4}
    hp = resolve_hparams("m", defaults, {"a": None, "b": [5]}, fixed={"upscale": 8})
    assert hp == {"a": 1, "b": [5], "upscale": 8} and defaults["b"] == [2]
    fixed_message = r"'upscale' are set by the builder arguments.*allowed overrides: a, b$"
    with pytest.raises(ValueError, match=fixed_message):
        resolve_hparams("m", defaults, {"upscale": 2}, fixed={"upscale": 8})
    with pytest.raises(ValueError, match="unknown override"):
        resolve_hparams("m", defaults, {"c": None})  # an unknown name is refused even when None


def test_methods_cli_table_and_json() -> None:
    from srcaco2.cli.srtrain import main

    runner = CliRunner()
    res = runner.invoke(main, ["methods"])
    assert res.exit_code == 0, res.output
    lines = res.output.splitlines()
    assert lines[0].split()[:3] == ["name", "family", "paper"]
    assert any(line.startswith("vdsr ") and "664,704" in line for line in lines)
    res = runner.invoke(main, ["methods", "--json"])
    assert res.exit_code == 0, res.output
    rows = json.loads(res.output)
    assert [r["name"] for r in rows] == list(MODEL_NAMES)
    by_name = {r["name"]: r for r in rows}
    assert by_name["bicubic"]["params"] == {"x2": 0, "x4": 0, "x8": 0}
    assert by_name["dbpn"]["params"]["x8"] == reference_layout("dbpn", 8)["param_count"]


def test_methods_builds_no_network(monkeypatch) -> None:
    """`srtrain methods` reads the registry and the reference layouts; building 48 networks took 7-11 s."""
    import srcaco2.trainers.models.registry as registry
    from srcaco2.cli.srtrain_methods import method_rows

    def refuse(*args, **kwargs):
        raise AssertionError("srtrain methods built a network")

    import srcaco2.trainers.models as models

    monkeypatch.setattr(registry, "build_model", refuse)
    monkeypatch.setattr(models, "build_model", refuse)
    rows = {r["name"]: r for r in method_rows()}
    assert rows["swinir"]["params"]["x4"] == reference_layout("swinir", 4)["param_count"]
    assert "error" not in rows["swinir"]
