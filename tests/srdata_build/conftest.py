"""Small synthetic raw sets for the store-builder tests (generated once per session, copied per test)."""

from __future__ import annotations

import os
import shutil

import pytest

from srcaco2.srdata.synth import SynthParams, write_synth


def _synth(base, name: str, **kw) -> str:
    out = os.path.join(base, name)
    n = kw.pop("n_tiles")
    write_synth(out, n_tiles=n, params=SynthParams(**kw))
    return out


@pytest.fixture(scope="session")
def raw_cache(tmp_path_factory):
    """Raw sets: ``tiny`` 2 tiles of 768² (1 window each), ``small`` 3 tiles of 1024² (4 windows each)."""
    base = tmp_path_factory.mktemp("raw")
    return {
        "tiny": _synth(base, "tiny", n_tiles=2, hr_size=768, seed=3),
        "small": _synth(base, "small", n_tiles=3, hr_size=1024, seed=1),
    }


@pytest.fixture
def raw_tiny(raw_cache, tmp_path) -> str:
    """A private copy of the tiny raw set (tests may corrupt it)."""
    dst = tmp_path / "raw"
    shutil.copytree(raw_cache["tiny"], dst)
    return str(dst)


@pytest.fixture
def raw_small(raw_cache) -> str:
    """The shared small raw set (read only)."""
    return raw_cache["small"]
