"""Fixtures of the reliability tests: a tiny raw set and a small store (generated once per session)."""

from __future__ import annotations

import shutil
from pathlib import Path

import pytest


@pytest.fixture(scope="session")
def raw_tiny_cache(tmp_path_factory: pytest.TempPathFactory) -> str:
    """Two synthetic 768² tiles (one accepted 640² window each, seed 5) in the official raw layout."""
    from srcaco2.srdata.synth import SynthParams, write_synth

    root = tmp_path_factory.mktemp("rel_raw") / "raw"
    write_synth(root, n_tiles=2, params=SynthParams(hr_size=768, seed=5))
    return str(root)


@pytest.fixture
def raw_tiny(raw_tiny_cache: str, tmp_path: Path) -> str:
    """A private copy of the tiny raw set."""
    dst = tmp_path / "raw"
    shutil.copytree(raw_tiny_cache, dst)
    return str(dst)


@pytest.fixture(scope="session")
def raw_small(tmp_path_factory: pytest.TempPathFactory) -> str:
    """Three synthetic 1024² tiles (four windows each): enough for a split with train/val/test."""
    from srcaco2.srdata.synth import SynthParams, write_synth

    root = tmp_path_factory.mktemp("rel_raw_small") / "raw"
    # seed 5: accepted windows on every tile (so train, val and test all have some)
    write_synth(root, n_tiles=3, params=SynthParams(hr_size=1024, seed=5))
    return str(root)


@pytest.fixture(scope="session")
def store_small(raw_small: str, tmp_path_factory: pytest.TempPathFactory) -> str:
    """A format-2 store built from `raw_small` (no registration, 256 px chunks); copy before damaging."""
    from srcaco2.srdata.build import BuildConfig, build_store

    path = tmp_path_factory.mktemp("rel_store") / "s.zarr"
    build_store(raw_small, str(path), BuildConfig(register=False, chunk=256))
    return str(path)
