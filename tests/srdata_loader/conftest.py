"""A small store written with `srdata.writer` from numpy arrays whose content the tests control.

Tiles 1, 2 (train) and 3 (val), 1024² HR, 4 windows each (640² at stride 256); window 1 of tile 2
is rejected. HR: background 0..3 with bright squares (cells); LR at scale s = rint(s×s area mean of
HR) exactly. Registration shifts: 0 for CELL2 (so LR crops are area means of HR crops), random
(some large enough to leave the 640/s window) for CELL0 and CELL1.
"""

from __future__ import annotations

import numpy as np
import pytest

from srdata.schema import FORMAT_VERSION, MARKERS, SCALES, STRIDE, WINDOW_SIZE, StoreAttrs

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
    from srdata import writer

    rng = np.random.default_rng(seed)
    attrs = StoreAttrs(
        format_version=FORMAT_VERSION,
        markers=list(MARKERS),
        scales=list(SCALES),
        pixel_size_um={"hr": 0.1, "x2": 0.2, "x4": 0.4, "x8": 0.8},
        chunks={"hr": CHUNK_HR, **{f"x{s}": CHUNK_HR // s for s in SCALES}},
        tiles=sorted(TILES),
        finished_tiles=[],
        roi={"threshold": 4, "min_fraction": 0.2, "method": "fixed"},
        source={"kind": "synth", "tool": "tests/srdata_loader"},
    )
    root = writer.create_store(path, attrs)
    cols: dict[str, list] = {
        k: []
        for k in (
            "tile",
            "y0",
            "x0",
            "size",
            "roi_fraction",
            "accepted",
            "split",
            "official_patch_id",
            "shift",
        )
    }
    hrs = {}
    for t, split in TILES.items():
        hr = make_tile(rng)
        hrs[t] = hr
        writer.write_image(root, t, 1, hr, chunk=CHUNK_HR, pixel_size_um=0.1, n_levels=1)
        for s in SCALES:
            writer.write_image(
                root, t, s, area_mean(hr, s), chunk=CHUNK_HR // s, pixel_size_um=0.1 * s, n_levels=1
            )
        writer.write_roi(
            root, t, (hr[2] >= 4).astype(np.uint8), chunk=CHUNK_HR, pixel_size_um=0.1, n_levels=1
        )
        writer.mark_tile_finished(root, t)
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
                cols["size"].append(WINDOW_SIZE)
                cols["roi_fraction"].append(0.5)
                cols["accepted"].append(accepted)
                cols["split"].append(split if accepted else -1)
                cols["official_patch_id"].append(pid)
                cols["shift"].append(shift)
                pid += 1
    writer.write_index(root, {k: np.asarray(v) for k, v in cols.items()})
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
