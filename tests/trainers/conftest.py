"""A tiny, learnable store for the trainer tests, written directly with `srcaco2.srdata.writer`.

Two 1024² HR tiles (4 windows each, stride 256): tile 1 is train, tile 2 holds 2 val and 2 test
windows. The HR images are smooth blobs (the ROI, CELL2 >= 4, covers part of each window); each
LR acquisition is the exact s×s area mean of HR, zero registration shifts, so SR is learnable.
"""

from __future__ import annotations

import numpy as np
import pytest

from srcaco2.srdata.schema import MARKERS, SCALES, STRIDE, WINDOW_SIZE

HR_SIZE = 1024
CHUNK = 256
PIXEL_SIZE_UM = {"hr": 0.1, "x2": 0.2, "x4": 0.4, "x8": 0.8}


def _blobs(rng: np.random.Generator, n: int) -> np.ndarray:
    """Smooth bright spots (Gaussian-blurred impulses, sigma 6 px) on a black background, 0..255."""
    from scipy.ndimage import gaussian_filter

    img = np.zeros((HR_SIZE, HR_SIZE), np.float32)
    ys, xs = rng.integers(0, HR_SIZE, n), rng.integers(0, HR_SIZE, n)
    np.add.at(img, (ys, xs), rng.uniform(40, 200, n).astype(np.float32) * 2 * np.pi * 36)
    return np.clip(gaussian_filter(img, 6.0), 0, 255)


def make_trainer_store(path: str, *, seed: int = 0, val_fold_lines: tuple[int, int] | None = None) -> str:
    """Write the store described in the module docstring at `path` (`val_fold_lines`: the official
    fold lines of its two val windows; default none, i.e. no official order)."""
    from srcaco2.srdata.array_store import write_store_from_arrays

    rng = np.random.default_rng(seed)
    images: dict[int, dict[int, np.ndarray]] = {}
    cols: dict[str, list] = {k: [] for k in ("tile", "y0", "x0", "split", "official_patch_id")}
    for k, t in enumerate((1, 2)):
        hr = np.stack([np.round(_blobs(rng, 260)) for _ in MARKERS]).astype(np.uint8)
        images[t] = {1: hr}
        for s in SCALES:
            lr = hr.reshape(3, HR_SIZE // s, s, HR_SIZE // s, s).astype(np.float64).mean(axis=(2, 4))
            images[t][s] = np.round(lr).astype(np.uint8)
        starts = range(0, HR_SIZE - WINDOW_SIZE, STRIDE)
        for n, (y0, x0) in enumerate((y, x) for y in starts for x in starts):
            cols["tile"].append(t)
            cols["y0"].append(y0)
            cols["x0"].append(x0)
            cols["split"].append(0 if k == 0 else (1 if n < 2 else 2))
            cols["official_patch_id"].append(n)
    windows = {k: np.asarray(v) for k, v in cols.items()}
    if val_fold_lines is not None:
        lines = np.full(len(cols["tile"]), -1, np.int64)
        lines[np.flatnonzero(windows["split"] == 1)] = val_fold_lines
        windows["fold_line"] = lines
    windows["roi_fraction"] = np.full(len(cols["tile"]), 0.5, np.float32)  # accepted True, shifts 0
    write_store_from_arrays(
        path,
        images,
        chunk=CHUNK,
        windows=windows,
        pixel_size_um=PIXEL_SIZE_UM,
        roi={"threshold": 4, "min_fraction": 0.2, "method": "threshold", "marker": "CELL2"},
        source={"kind": "test", "seed": seed},
        n_levels=1,
    )
    return path


@pytest.fixture(scope="session")
def trainer_store(tmp_path_factory: pytest.TempPathFactory) -> str:
    """The tiny learnable store (read only)."""
    return make_trainer_store(str(tmp_path_factory.mktemp("trainer_store") / "s.zarr"))


TINY_OVERRIDES = [
    "data.h_size=32", "data.batch_size=2", "data.samples_per_epoch=8", "model.overrides.num_features=4",
    "model.overrides.num_trunk_layers=1", "train.tensorboard=false", "eval.val_windows=1",
]  # fmt: skip
"""A VDSR of width 4 and 3 conv layers, 2 crops of 32² per step, 4 steps per epoch."""


def tiny_config(store: str, *extra: str):
    """The paper recipe for VDSR ×4 CELL2 on `store`, shrunk by `TINY_OVERRIDES` and `extra`."""
    from srcaco2.trainers.config import apply_overrides
    from srcaco2.trainers.recipes import recipe_config

    return apply_overrides(recipe_config("vdsr", 4, "CELL2", store=store), TINY_OVERRIDES + list(extra))


@pytest.fixture
def tiny():
    """`tiny_config` as a fixture (test modules cannot import each other)."""
    return tiny_config


@pytest.fixture
def tiny_overrides() -> list[str]:
    """`TINY_OVERRIDES` (for CLI tests that pass them as --set)."""
    return list(TINY_OVERRIDES)


@pytest.fixture
def trainer_store_factory():
    """`make_trainer_store` as a fixture (test modules cannot import the conftest)."""
    return make_trainer_store
