"""Fixtures of tests/srdata_inspect: small synthetic stores written directly with `srcaco2.srdata.writer`
(two 1280² HR tiles, 9 windows each at stride 256, some rejected, non-zero shifts)."""

from __future__ import annotations

import shutil
import types
from pathlib import Path

import numpy as np
import pytest

from srcaco2.srdata.schema import SCALES, STRIDE, WINDOW_SIZE

HR_SIZE = 1280
CHUNK = 512
TILES = (3, 7)
PIXEL_SIZE_UM = {"hr": 0.1, "x2": 0.2, "x4": 0.4, "x8": 0.8}


def make_store(path: str, *, seed: int = 0, tiles: tuple[int, ...] = TILES, max_shift: int = 9) -> str:
    """Write a complete store: random uint8 tiles (sparse CELL2 so the ROI is partial), a window
    grid at stride 256 with some rejected windows, splits, official ids and non-zero shifts."""
    from srcaco2.srdata.array_store import write_store_from_arrays

    rng = np.random.default_rng(seed)
    images: dict[int, dict[int, np.ndarray]] = {}
    cols: dict[str, list] = {k: [] for k in ("tile", "y0", "x0", "accepted", "split", "official_patch_id")}
    for k, t in enumerate(tiles):
        hr = rng.integers(0, 256, size=(3, HR_SIZE, HR_SIZE), dtype=np.uint8)
        hr[2] = np.where(rng.random((HR_SIZE, HR_SIZE)) < 0.4, hr[2], 0)
        images[t] = {1: hr}
        for s in SCALES:
            images[t][s] = rng.integers(1, 256, size=(3, HR_SIZE // s, HR_SIZE // s), dtype=np.uint8)
        starts = range(0, HR_SIZE - WINDOW_SIZE, STRIDE)
        for n, (y0, x0) in enumerate((y, x) for y in starts for x in starts):
            cols["tile"].append(t)
            cols["y0"].append(y0)
            cols["x0"].append(x0)
            cols["accepted"].append(n not in (1, 5))
            cols["split"].append(k if k < 1 else (1 if n < 4 else 2))  # tile 0 train, tile 1 val / test
            cols["official_patch_id"].append(-1 if k == 0 else 100 + n)
    n = len(cols["tile"])
    columns = {k: np.asarray(v) for k, v in cols.items()}
    columns["size"] = np.full(n, WINDOW_SIZE)
    columns["roi_fraction"] = rng.random(n).astype(np.float32)
    columns["shift"] = rng.integers(-max_shift, max_shift + 1, size=(n, 3, 3, 2))
    write_store_from_arrays(
        path,
        images,
        chunk=CHUNK,
        # reversed row order: readers must not rely on the index being sorted
        windows={k: v[::-1] for k, v in columns.items()},
        pixel_size_um=PIXEL_SIZE_UM,
        roi={"threshold": 4, "min_fraction": 0.2, "method": "threshold", "marker": "CELL2"},
        source={"kind": "synth", "seed": seed},
        n_levels={"hr": 2, "x2": 1, "x4": 2, "x8": 1, "roi": 2},
    )
    return path


@pytest.fixture(scope="session")
def _store_master(tmp_path_factory: pytest.TempPathFactory) -> str:
    return make_store(str(tmp_path_factory.mktemp("master") / "s.zarr"))


@pytest.fixture
def store(_store_master: str, tmp_path: Path) -> str:
    """A fresh copy of the synthetic store (tests may break it)."""
    dst = str(tmp_path / "s.zarr")
    shutil.copytree(_store_master, dst)
    return dst


@pytest.fixture(scope="session")
def shared_store(_store_master: str) -> str:
    """The synthetic store itself: read only."""
    return _store_master


@pytest.fixture(scope="session")
def synth() -> types.SimpleNamespace:
    """The fixture store's parameters (tests compare against them)."""
    return types.SimpleNamespace(
        HR_SIZE=HR_SIZE, CHUNK=CHUNK, TILES=TILES, PIXEL_SIZE_UM=PIXEL_SIZE_UM, make_store=make_store
    )
