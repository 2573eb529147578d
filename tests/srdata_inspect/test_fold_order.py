"""The official fold-list order (``fold_line``): reference facts, import, validation choice, export."""

from __future__ import annotations

from pathlib import Path

import numpy as np
import zarr

from srcaco2.srdata.datasets import WindowDataset
from srcaco2.srdata.export_patches import export_patches
from srcaco2.srdata.import_patches import import_patches
from srcaco2.srdata.patches import fold_dir_name
from srcaco2.srdata.schema import MARKERS, SCALES, split_code
from srcaco2.srdata.split import fold_order, official_fold_lines, official_patches
from srcaco2.srdata.store import Store


def test_official_validation_windows_are_the_first_fold_lines():
    ref = official_patches()
    val = ref["split"] == "val"
    lines = ref["fold_line"][val]
    # every split's fold_line is a permutation of its line numbers
    for split in ("train", "val", "test"):
        sel = ref["split"] == split
        assert sorted(ref["fold_line"][sel].tolist()) == list(range(int(sel.sum())))
    first = ref["tile"][val][lines < 128]
    counts = {int(t): int((first == t).sum()) for t in np.unique(first)}
    assert counts == {7: 46, 11: 37, 19: 45}  # not the first 128 windows in tile/row order (all tile 7)
    rows = np.flatnonzero(val)
    got = official_fold_lines(ref["tile"][rows], ref["row0"][rows], ref["col0"][rows])
    np.testing.assert_array_equal(got, lines)
    assert official_fold_lines(np.array([7]), np.array([1]), np.array([1]))[0] == -1


def test_fold_order_puts_unlisted_windows_last_in_tile_row_order():
    index = {
        "tile": np.array([1, 1, 2, 2, 3]),
        "y0": np.array([0, 256, 0, 0, 0]),
        "x0": np.array([0, 0, 256, 0, 0]),
        "fold_line": np.array([-1, 1, 0, -1, -1]),
    }
    ordered, official = fold_order(index, np.arange(5))
    assert ordered.tolist() == [2, 1, 0, 3, 4] and not official
    ordered, official = fold_order(index, np.array([1, 2]))
    assert ordered.tolist() == [2, 1] and official
    no_column = {k: v for k, v in index.items() if k != "fold_line"}
    assert fold_order(no_column, np.arange(5))[0].tolist() == [0, 1, 3, 2, 4]


def _rewrite_val_lists(folds: Path, order: list[int]) -> dict[str, str]:
    """Reorder every val fold list with the same permutation (the official lists agree)."""
    texts = {}
    for s in SCALES:
        for m in MARKERS:
            for name in ("h_l.txt", "l_h.txt"):
                path = folds / fold_dir_name("val", s, m) / name
                lines = path.read_text().splitlines()
                text = "".join(lines[k] + "\n" for k in order)
                path.write_text(text)
                texts[str(path.relative_to(folds))] = text
    return texts


def test_import_keeps_fold_order_validation_and_export_follow_it(shared_store, tmp_path):
    release = tmp_path / "release"
    export_patches(shared_store, release, workers=2)
    val_list = release / "folds" / fold_dir_name("val", 4, "CELL2") / "h_l.txt"
    n_val = len(val_list.read_text().splitlines())
    assert n_val >= 3
    order = list(np.random.default_rng(5).permutation(n_val))
    while order == sorted(order):
        order = order[1:] + order[:1]
    texts = _rewrite_val_lists(release / "folds", order)

    store = str(tmp_path / "imported.zarr")
    import_patches(release, store, chunk=512, pixel_size_um=0.1, workers=2)
    index = Store.of_root(zarr.open_group(store, mode="r")).index()
    val = np.flatnonzero(index["split"] == split_code("val"))
    assert sorted(index["fold_line"][val].tolist()) == list(range(n_val))
    assert (index["fold_line"][index["split"] < 0] == -1).all()
    # the listed line of each window is its fold_line
    first_line = (release / "folds" / fold_dir_name("val", 2, "CELL0") / "h_l.txt").read_text().splitlines()
    by_line = {int(index["fold_line"][r]): r for r in val}
    for k, line in enumerate(first_line):
        r = by_line[k]
        assert f"-{int(index['tile'][r])}_" in line.split(",")[0]
        assert f"_{int(index['y0'][r])}_{int(index['y0'][r]) + 640}_{int(index['x0'][r])}_" in line

    # validation takes the first N lines of the fold list, not the first N in tile/row order
    ds = WindowDataset(store, "val", scale=4, marker="CELL2", max_windows=2)
    assert index["fold_line"][ds.rows].tolist() == [0, 1]

    # export writes the fold lists back in that order, byte for byte
    again = tmp_path / "again"
    export_patches(store, again, workers=2)
    for rel, text in texts.items():
        assert (again / "folds" / rel).read_text() == text
