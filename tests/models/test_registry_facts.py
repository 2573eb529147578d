"""The registry is the one home of a network's facts: every fact declared, and the derived tables agree."""

from __future__ import annotations

import pytest

from srcaco2.trainers.models import FAMILIES, MODEL_NAMES, available_models, model_info, register_model
from srcaco2.trainers.models.registry import _discover


def test_every_module_registers_one_model_with_every_fact() -> None:
    infos = available_models()
    assert {i.name for i in infos} == set(_discover()) and len(infos) == 17
    for i in infos:
        assert i.family in FAMILIES and i.display_name and i.paper, i.name
        assert i.input_grid >= 1 and i.min_input_size() >= 1, i.name
        assert isinstance(i.tiny_overrides(2), dict) and isinstance(i.hparams(4), dict), i.name
        for s in i.scales:
            halo = i.receptive_halo(s)
            assert (halo is None) == i.is_global, i.name
            assert halo is None or halo >= 1, i.name
        assert i.is_global == bool(i.global_reason), i.name
    ranks = [(i.family, i.table_rank) for i in infos]
    assert len(set(ranks)) == len(ranks)  # one row per rank and family
    assert [i.name for i in infos] == list(MODEL_NAMES)


def test_benchmark_halos_are_the_computed_ones() -> None:
    """The figures of issue 13 (x4), now the default halo of `srtrain predict`."""
    got = {i.name: i.receptive_halo(4) for i in available_models()}
    assert {k: got[k] for k in ("memnet", "prosr", "dbpn", "edsr_liif", "srfbn")} == {
        "memnet": 110, "prosr": 89, "dbpn": 57, "edsr_liif": 36, "srfbn": 26,
    }  # fmt: skip
    assert got["swinir"] == 103  # 24 window layers (8x8, half of them shifted) + 5 convs, exact bound
    assert {n for n, h in got.items() if h is None} == {"nlsn", "dfcan", "enlcn", "grl", "act", "omnisr"}


def test_display_names_and_families_match_the_paper_tables() -> None:
    """The paper's Table 4 rows, in order: family, then the name as printed (docs/protocol.md#method-table,
    #tables)."""
    from srcaco2.trainers import tables

    paper_rows = [
        ("bicubic", "bicubic", "Bicubic"),
        ("srcnn", "pre-upsampling", "SRCNN"), ("vdsr", "pre-upsampling", "VDSR"),
        ("drrn", "pre-upsampling", "DRRN"), ("memnet", "pre-upsampling", "MemNet"),
        ("nlsn", "post-upsampling", "NLSN"), ("dfcan", "post-upsampling", "DFCAN"),
        ("swinir", "post-upsampling", "SwinIR"), ("edsr_liif", "post-upsampling", "EDSR-LIIF"),
        ("enlcn", "post-upsampling", "ENLCN"), ("grl", "post-upsampling", "GRL"),
        ("act", "post-upsampling", "ACT"), ("omnisr", "post-upsampling", "Omni-SR"),
        ("dbpn", "iterative up-and-down", "DBPN"), ("srfbn", "iterative up-and-down", "SRFBN"),
        ("prosr", "progressive", "ProSR"), ("mslapsrn", "progressive", "MS-LapSRN"),
    ]  # fmt: skip
    assert [(n, model_info(n).family, model_info(n).display_name) for n in MODEL_NAMES] == paper_rows
    # the tables read these facts from the registry (their one home)
    assert [tables.method_facts(n) for n, _, _ in paper_rows] == [(f, d) for _, f, d in paper_rows]
    assert tables.method_facts("unknown_net") == ("other", "unknown_net")
    assert FAMILIES == tables.FAMILIES
    assert {m for table in tables.load_paper_tables().values() for m, _ in table} <= set(MODEL_NAMES)


def test_predict_input_grid_is_derived() -> None:
    from srcaco2.trainers import tiling

    assert tiling.INPUT_GRID == {"swinir": 8, "grl": 8, "omnisr": 8, "act": 3}
    assert tiling.input_grid("SwinIR") == 8 and tiling.input_grid("vdsr") == 1
    assert tiling.input_grid("not_registered") == 1


def test_tiny_tables_are_derived() -> None:
    from srcaco2.trainers.models import tiny

    assert set(tiny.TINY_OVERRIDES) == set(MODEL_NAMES)
    assert tiny.GLOBAL_MODELS == frozenset(i.name for i in available_models() if i.is_global)
    assert tiny.receptive_halo("drrn", 4) == 15 and tiny.min_input_size("nlsn") == 12


def _builder(scale: int, in_channels: int = 1) -> None:  # a stand-in builder for refused registrations
    return None


_FACTS = dict(family="pre-upsampling", display_name="X", table_rank=9, paper="p", tiny={}, hparams={})


def test_a_registration_lacking_a_fact_is_refused() -> None:
    with pytest.raises(TypeError, match="reach"):
        register_model("vdsr", **_FACTS)  # type: ignore[call-arg]
    with pytest.raises(TypeError, match="display_name"):
        partial = {k: v for k, v in _FACTS.items() if k != "display_name"}
        register_model("vdsr", **partial, reach=None)  # type: ignore[arg-type]
    with pytest.raises(ValueError, match="exactly one of reach= .* or global_reason="):
        register_model("newnet", **_FACTS, reach=None)(_builder)
    with pytest.raises(ValueError, match="family 'pre' is not one of"):
        register_model("newnet", **{**_FACTS, "family": "pre"}, reach=lambda s, hp: 1)(_builder)


def test_a_registration_outside_its_own_module_or_twice_is_refused() -> None:
    with pytest.raises(ValueError, match="must be registered by module srcaco2.trainers.models.newnet"):
        register_model("newnet", **_FACTS, reach=lambda s, hp: 1)(_builder)
    model_info("vdsr")
    _builder.__module__ = "srcaco2.trainers.models.vdsr"
    try:
        with pytest.raises(ValueError, match="registered twice"):
            register_model("vdsr", **_FACTS, reach=lambda s, hp: 1)(_builder)
    finally:
        _builder.__module__ = __name__


def test_a_broken_module_is_listed_last_and_hides_nothing(monkeypatch: pytest.MonkeyPatch) -> None:
    from srcaco2.trainers.models import registry

    found = registry._discover()
    monkeypatch.setattr(registry, "_discover", lambda: (*found, "aaa_broken"))
    monkeypatch.setattr(registry, "_ORDERED", None)
    names = registry.model_names()
    assert names[-1] == "aaa_broken" and names[:-1] == tuple(MODEL_NAMES)
    with pytest.raises(ModuleNotFoundError):
        registry.build_model("aaa_broken", 2)
