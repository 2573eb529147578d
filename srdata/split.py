"""Train/val/test split by tile and the official SR-CACO-2 window ids (docs/protocol.md#split to #counts).

On the real data (tiles 1..22 at the official sizes) the split is the official one (train 15,
val 3, test 4 tiles) and every accepted window gets the patch id of the released data set from
``srdata/data/official_patches.csv``. Other inputs get a deterministic split by tile:
the sorted tile ids are permuted by ``numpy.random.default_rng(seed)`` (seed 0), the first
``n_test = max(1, round(4 n / 22))`` tiles are test, the next ``n_val = max(1, round(3 n / 22))``
val, the rest train (n >= 3 tiles, so val and test are never empty); 2 tiles: train + test;
1 tile: train.
"""

from __future__ import annotations

import functools
from typing import Any, Literal

import numpy as np

from srcaco2.srdata.schema import split_code

__all__ = [
    "OFFICIAL_SPLIT",
    "is_official_set",
    "official_patches",
    "tile_split",
    "official_patch_ids",
    "official_fold_lines",
    "fold_order",
]

OFFICIAL_SPLIT: dict[str, tuple[int, ...]] = {
    "train": (1, 2, 3, 4, 5, 6, 8, 12, 13, 15, 16, 17, 18, 21, 22),
    "val": (7, 11, 19),
    "test": (9, 10, 14, 20),
}
"""The published tile split (docs/protocol.md#split)."""

# official HR extents lie in (8832, 9344] (docs/protocol.md#raw-tile-files, #counts)
_OFFICIAL_HR_RANGE = (8832, 9344)


def is_official_set(extent: dict[int, tuple[int, int]]) -> bool:
    """True for the real data: tile ids exactly 1..22, HR extents in the official size range."""
    if sorted(extent) != list(range(1, 23)):
        return False
    lo, hi = _OFFICIAL_HR_RANGE
    return all(lo < h <= hi and lo < w <= hi for h, w in extent.values())


@functools.lru_cache(maxsize=1)
def official_patches() -> dict[str, np.ndarray]:
    """The 9,937 official windows: columns split (str), tile, patch, row0, row1, col0, col1, fold_line (int).

    ``fold_line`` is the 0-based line of the window in its split's official fold lists (the same line
    for all 9 marker × scale lists of a split): the order in which the benchmark validated (its first
    128 val lines) and listed patches.
    """
    from importlib import resources

    text = resources.files("srcaco2.srdata").joinpath("data/official_patches.csv").read_text()
    lines = text.strip().splitlines()
    header = lines[0].split(",")
    rows = [ln.split(",") for ln in lines[1:]]
    out: dict[str, np.ndarray] = {}
    for k, name in enumerate(header):
        col = [r[k] for r in rows]
        out[name] = np.array(col) if name == "split" else np.array(col, dtype=np.int64)
    return out


def tile_split(
    tiles: list[Any], *, mode: Literal["official", "auto"] = "auto", official: bool = False, seed: int = 0
) -> dict[Any, int]:
    """Split code (0 train, 1 val, 2 test) per tile.

    Parameters
    ----------
    tiles : list of int
        Tile ids of the store.
    mode : {"auto", "official"}
        ``auto``: the official split when `official` is True, else the seeded rule of the module
        docstring. ``official``: always the official lists (every tile must be in 1..22).
    official : bool
        Whether the input is the real data set (`is_official_set`).
    seed : int
        Seed of the permutation for non-official inputs.

    Raises
    ------
    ValueError
        ``mode="official"`` with a tile id outside the official 22.
    """
    if mode not in ("official", "auto"):
        raise ValueError(f"split mode must be 'official' or 'auto', got {mode!r}")
    if mode == "official" or official:
        lookup = {t: split_code(name) for name, ts in OFFICIAL_SPLIT.items() for t in ts}
        bad = sorted(set(tiles) - set(lookup))
        if bad:
            raise ValueError(
                f"tiles {bad} are not SR-CACO-2 tiles (1..22); the official split needs the official "
                "tile ids: "
                "use --split auto for other data"
            )
        return {int(t): lookup[int(t)] for t in tiles}
    ids = sorted(tiles)
    n = len(ids)
    order = [ids[k] for k in np.random.default_rng(seed).permutation(n)]
    if n >= 3:
        n_test, n_val = max(1, round(4 * n / 22)), max(1, round(3 * n / 22))
    elif n == 2:
        n_test, n_val = 1, 0
    else:
        n_test, n_val = 0, 0
    out = {}
    for k, t in enumerate(order):
        out[t] = (
            split_code("test")
            if k < n_test
            else split_code("val")
            if k < n_test + n_val
            else split_code("train")
        )
    return out


def _official_column(column: str, tile: np.ndarray, y0: np.ndarray, x0: np.ndarray) -> np.ndarray:
    ref = official_patches()
    lookup = {
        (int(t), int(r), int(c)): int(v)
        for t, r, c, v in zip(ref["tile"], ref["row0"], ref["col0"], ref[column], strict=True)
    }
    return np.array(
        [lookup.get((int(t), int(y), int(x)), -1) for t, y, x in zip(tile, y0, x0, strict=True)],
        dtype=np.int32,
    )


def official_patch_ids(tile: np.ndarray, y0: np.ndarray, x0: np.ndarray) -> np.ndarray:
    """Official patch id for each window (match by tile, row0 = y0, col0 = x0), -1 if none.

    Parameters
    ----------
    tile, y0, x0 : (N,) int
        Window tiles and HR corners.

    Returns
    -------
    (N,) int32
    """
    return _official_column("patch", tile, y0, x0)


def official_fold_lines(tile: np.ndarray, y0: np.ndarray, x0: np.ndarray) -> np.ndarray:
    """Line of each window in the official fold lists of its split (0-based), -1 if not official.

    Parameters
    ----------
    tile, y0, x0 : (N,) int
        Window tiles and HR corners.

    Returns
    -------
    (N,) int32
    """
    return _official_column("fold_line", tile, y0, x0)


def fold_order(index: dict[str, np.ndarray], rows: np.ndarray) -> tuple[np.ndarray, bool]:
    """`rows` of the window table in the official fold-list order.

    Windows with a ``fold_line`` (>= 0) come first, by fold line; the others follow in
    (tile, y0, x0) order. Stores without fold lines (non-official data, or built before the
    column existed) get plain (tile, y0, x0) order.

    Parameters
    ----------
    index : dict of str to ndarray
        The window table (`srcaco2.srdata.schema.read_index`); ``fold_line`` may be absent.
    rows : (N,) int
        Row numbers to order.

    Returns
    -------
    ordered : (N,) int64
        The same rows, reordered.
    official : bool
        True when every row has a fold line (the order is exactly the official one).
    """
    rows = np.asarray(rows, dtype=np.int64)
    line = np.asarray(index.get("fold_line", np.full(len(index["tile"]), -1)))[rows].astype(np.int64)
    missing = line < 0
    keys = (index["x0"][rows], index["y0"][rows], index["tile"][rows], np.where(missing, 0, line), missing)
    ordered = rows[np.lexsort(keys)]
    return ordered, bool(len(rows)) and not bool(missing.any())
