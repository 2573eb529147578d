"""Registry-wide checks: every benchmark network at every scale has the published layout."""

from __future__ import annotations

import json

import pytest
import torch
from click.testing import CliRunner

from trainers.models import (
    MODEL_NAMES,
    UnknownModelError,
    available_models,
    build_model,
    model_info,
    reference_layout,
)

NETWORKS = [n for n in MODEL_NAMES if n != "bicubic"]


def _layout(model: torch.nn.Module) -> list[list]:
    return [[k, list(v.shape), str(v.dtype).removeprefix("torch.")] for k, v in model.state_dict().items()]


@pytest.mark.parametrize("scale", [2, 4, 8])
@pytest.mark.parametrize("name", NETWORKS)
def test_layout_matches_reference(name: str, scale: int) -> None:
    ref = reference_layout(name, scale)
    assert ref is not None, f"no reference/{name}_x{scale}.json"
    with torch.device("meta"):
        model = build_model(name, scale)
    got = _layout(model)
    expected = [row[:3] for row in ref["state_dict"]]
    missing = [r[0] for r in expected if r[0] not in {g[0] for g in got}]
    extra = [g[0] for g in got if g[0] not in {r[0] for r in expected}]
    assert not missing and not extra, f"missing {missing[:5]}, unexpected {extra[:5]}"
    assert got == expected  # shapes, dtypes and order
    assert sum(p.numel() for p in model.parameters()) == ref["param_count"]
    buffers = {k for k, _ in model.named_buffers()}
    assert {r[0] for r in ref["state_dict"] if r[3] == "buffer"} <= buffers


def test_unknown_name_suggests_close_match() -> None:
    with pytest.raises(UnknownModelError) as err:
        build_model("swinIRR", scale=2)
    assert "Did you mean 'swinir'" in str(err.value)
    with pytest.raises(UnknownModelError, match="Known: bicubic"):
        build_model("resnet50", scale=2)


@pytest.mark.parametrize("name", ["bicubic", "srcnn", "dbpn", "prosr", "mslapsrn"])
def test_unsupported_scale_is_refused(name: str) -> None:
    with pytest.raises(ValueError, match="supports scales"):
        build_model(name, scale=3)


def test_available_models_lists_all_seventeen() -> None:
    infos = available_models()
    assert [i.name for i in infos] == list(MODEL_NAMES)
    assert len(infos) == 17
    assert {i.family for i in infos} <= {"bicubic", "pre-upsampling", "post-upsampling",
                                         "iterative up-and-down", "progressive"}
    assert {i.name for i in infos if i.multi_output} == {"srfbn", "prosr", "mslapsrn"}


def test_family_agrees_with_reference() -> None:
    for name in NETWORKS:
        # the reference may qualify the family, e.g. "post-upsampling (implicit function)"
        assert reference_layout(name, 2)["family"].startswith(model_info(name).family), name


def test_unknown_override_lists_allowed_names() -> None:
    with pytest.raises(ValueError, match="allowed"):
        build_model("vdsr", scale=2, not_a_knob=3)


def test_methods_cli_table_and_json() -> None:
    from cli.srtrain import main

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
