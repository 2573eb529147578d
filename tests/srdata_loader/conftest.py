"""A small store written with `srcaco2.srdata.writer` from numpy arrays whose content the tests control.

Tiles 1, 2 (train) and 3 (val), 1024² HR, 4 windows each (640² at stride 256); window 1 of tile 2
is rejected. HR: background 0..3 with bright squares (cells); LR at scale s = rint(s×s area mean of
HR) exactly. Registration shifts: 0 for CELL2 (so LR crops are area means of HR crops), random
(some large enough to leave the 640/s window) for CELL0 and CELL1.
"""

from __future__ import annotations

import numpy as np
import pytest

from srcaco2.srdata.schema import SCALES, STRIDE, WINDOW_SIZE

TILE_SIZE = 1024
TILES = {1: 0, 2: 0, 3: 1}  # tile -> split code
CHUNK_HR = 256


def area_mean(hr: np.ndarray, s: int) -> np.ndarray:
    """rint of the s×s block mean over the last two axes (uint8)."""
    *lead, h, w = hr.shape
    m = hr.reshape(*lead, h // s, s, w // s, s).astype(np.float64).mean(axis=(-3, -1))
    return np.rint(m).astype(np.uint8)


def make_tile(rng: np.random.Generator) -> np.ndarray:
    hr = rng.integers(0, 4, (3, TILE_SIZE, TILE_SIZE), dtype=np.uint8)
    for _ in range(40):
        c = rng.integers(0, 3)
        y, x = rng.integers(0, TILE_SIZE - 80, 2)
        sz = rng.integers(20, 80)
        hr[c, y : y + sz, x : x + sz] = rng.integers(40, 256, (sz, sz), dtype=np.uint8)
    return hr


def write_store(path: str, *, seed: int = 0) -> dict:
    from srcaco2.srdata.array_store import write_store_from_arrays

    rng = np.random.default_rng(seed)
    cols: dict[str, list] = {
        k: [] for k in ("tile", "y0", "x0", "accepted", "split", "official_patch_id", "shift")
    }
    hrs = {}
    for t, split in TILES.items():
        hrs[t] = make_tile(rng)
        pid = 0
        for y0 in range(0, TILE_SIZE - WINDOW_SIZE, STRIDE):
            for x0 in range(0, TILE_SIZE - WINDOW_SIZE, STRIDE):
                shift = rng.integers(-12, 13, (3, 3, 2))
                shift[0, 0] = (70, -70)  # CELL0 x2: leaves the 320² LR window -> zero fill
                shift[2] = 0
                accepted = not (t == 2 and pid == 1)
                cols["tile"].append(t)
                cols["y0"].append(y0)
                cols["x0"].append(x0)
                cols["accepted"].append(accepted)
                cols["split"].append(split if accepted else -1)
                cols["official_patch_id"].append(pid)
                cols["shift"].append(shift)
                pid += 1
    windows = {k: np.asarray(v) for k, v in cols.items()}
    windows["roi_fraction"] = np.full(len(cols["tile"]), 0.5)
    write_store_from_arrays(
        path,
        {t: {1: hr} | {s: area_mean(hr, s) for s in SCALES} for t, hr in hrs.items()},
        chunk=CHUNK_HR,
        windows=windows,
        pixel_size_um=0.1,
        roi={"threshold": 4, "min_fraction": 0.2, "method": "fixed"},
        source={"kind": "synth", "tool": "tests/srdata_loader"},
        n_levels=1,
    )
    return hrs


@pytest.fixture(scope="session")
def area_mean_fn():
    """`area_mean` as a fixture (test modules do not import conftest)."""
    return area_mean


@pytest.fixture(scope="session")
def store(tmp_path_factory) -> str:
    path = str(tmp_path_factory.mktemp("loader") / "s.zarr")
    write_store(path)
    return path
