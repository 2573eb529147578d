"""What the loader returns: pixel content, registration, ROI-biased sampling."""

from __future__ import annotations

import cv2
import numpy as np
import pytest

from srcaco2.srdata import transforms
from srcaco2.srdata.loader import CropDataset, WindowDataset, make_loader
from srcaco2.srdata.schema import MARKERS, SCALES, read_hr_patch, read_lr_patch
from srcaco2.srdata.store import image_path, open_root, roi_path


def _u8(t) -> np.ndarray:
    return np.rint(t.numpy() * 255).astype(np.uint8)


@pytest.mark.parametrize("scale", [2, 4, 8])
def test_lr_is_area_mean_of_hr_all_modes(store, scale, area_mean_fn):
    area_mean = area_mean_fn
    ld = make_loader(store, "train", scale, "CELL2", 8, 64, samples_per_epoch=64, seed=scale)
    modes = set()
    n = 0
    for batch in ld:
        hr, lr = _u8(batch["hr"]), _u8(batch["lr"])
        assert np.array_equal(lr, area_mean(hr, scale))
        assert np.all(batch["y0"].numpy() % scale == 0) and np.all(batch["x0"].numpy() % scale == 0)
        n += len(hr)
    assert n == 64
    plan = ld.dataset.plan(0)
    modes = set(plan.mode.tolist())
    assert modes == set(range(8))


def test_unaligned_mode_is_offset(store, area_mean_fn):
    area_mean = area_mean_fn
    ds = CropDataset(store, "train", 4, "CELL2", h_size=64, n_total=200, aligned=False, augment=False)
    offsets = set()
    for p in range(200):
        hr, lr, _, (t, y0, x0, _) = ds.sample(0, p)
        offsets.add((y0 % 4, x0 % 4))
        # LR crop at floor(y/s): equals the area mean of the HR crop shifted back to the grid
        root = open_root(store)
        gy, gx = y0 - y0 % 4, x0 - x0 % 4
        ref = root[image_path(t, 1)][2, gy : gy + 64, gx : gx + 64]
        assert np.array_equal(lr[0], area_mean(ref, 4))
    assert len(offsets) > 4


def test_eval_windows_equal_schema_reads(store):
    root = open_root(store)
    for scale in SCALES:
        ds = WindowDataset(store, "train", scale, markers=["CELL0", "CELL1", "CELL2"])
        ld = make_loader(
            store, "train", scale, batch_size=3, mode="eval", markers=["CELL0", "CELL1", "CELL2"]
        )
        from srcaco2.srdata.store import Store

        idx = Store.of_root(root).index()
        got = []
        for batch in ld:
            for b in range(len(batch["hr"])):
                row = int(batch["window"][b])
                t, y0, x0 = int(idx["tile"][row]), int(idx["y0"][row]), int(idx["x0"][row])
                assert (int(batch["tile"][b]), int(batch["y0"][b]), int(batch["x0"][b])) == (
                    t,
                    y0 + 64,
                    x0 + 64,
                )
                for c in range(len(MARKERS)):
                    dy, dx = idx["shift"][row, c, SCALES.index(scale)]
                    lr_ref = read_lr_patch(root[image_path(t, scale)][c], y0, x0, int(dy), int(dx), scale)
                    hr_ref = read_hr_patch(root[image_path(t, 1)][c], y0, x0)
                    assert np.array_equal(_u8(batch["lr"][b, c]), lr_ref)
                    assert np.array_equal(_u8(batch["hr"][b, c]), hr_ref)
                assert np.array_equal(
                    batch["roi"][b, 0].numpy(), read_hr_patch(root[roi_path(t)], y0, x0) == 1
                )
                got.append(row)
        rows = np.flatnonzero(idx["accepted"] & (idx["split"] == 0))
        assert got == rows.tolist()  # index order, accepted rows only
        single = ds[1]
        assert single["hr"].shape == (3, 512, 512) and single["window"] == rows[1]
    # the zero fill of a shift that leaves the window
    lr = WindowDataset(store, "val", 2, "CELL0")[0]["lr"]
    assert float(lr[0, -3:, :].max()) == 0.0


def test_max_windows_and_multi_marker_eval(store):
    one = make_loader(store, "train", 4, "CELL1", 2, mode="eval", max_windows=3)
    two = make_loader(store, "train", 4, markers=["CELL1", "CELL2"], batch_size=2, mode="eval", max_windows=3)
    a = list(one)
    b = list(two)
    assert sum(len(x["hr"]) for x in a) == 3 and len(one) == 2
    for x, y in zip(a, b):
        assert y["hr"].shape[1] == 2 and np.array_equal(x["hr"][:, 0], y["hr"][:, 0])
        assert np.array_equal(x["lr"][:, 0], y["lr"][:, 0])
    tr = make_loader(store, "train", 4, markers=["CELL0", "CELL2"], batch_size=2, h_size=32)
    batch = next(iter(tr))
    assert batch["lr"].shape == (2, 2, 8, 8) and batch["hr"].shape == (2, 2, 32, 32)


def test_interpolated_low(store):
    ds = CropDataset(
        store, "train", 4, "CELL2", h_size=64, n_total=50, augment=False, use_interpolated_low=True
    )
    root = open_root(store)
    noisy = 0
    for p in range(50):
        hr, lr, _, (t, y0, x0, row) = ds.sample(0, p)
        k = int(ds.plan(0).window[p])
        py, px = y0 - int(ds.y0[k]) - 64, x0 - int(ds.x0[k]) - 64
        patch = read_hr_patch(root[image_path(t, 1)][2], int(ds.y0[k]), int(ds.x0[k]))
        clean = transforms.interpolated_low(patch[None], 4)[0, py // 4 : py // 4 + 16, px // 4 : px // 4 + 16]
        dark = clean < 7
        assert np.array_equal(lr[0][dark], clean[dark])
        noisy += int((lr[0][~dark] != clean[~dark]).sum())
    assert noisy > 0


def test_crop_centres_follow_roi_weights(store):
    from scipy.stats import chisquare

    n, h, s = 12000, 64, 4
    ds = CropDataset(store, "train", s, "CELL2", h_size=h, n_total=n, max_windows=1, augment=False)
    root = open_root(store)
    t, y0, x0 = int(ds.tile[0]), int(ds.y0[0]), int(ds.x0[0])
    lr = read_lr_patch(root[image_path(t, s)][2], y0, x0, 0, 0, s)
    up = cv2.resize(lr, (512, 512), interpolation=cv2.INTER_CUBIC) >= 4
    pos = np.arange(0, 512 - h, s)
    w = np.exp(5.0 * up[np.ix_(pos + h // 2, pos + h // 2)]) + 1.0
    assert 0.05 < (w > 2).mean() < 0.95  # both classes present, else the test says nothing
    nb = 8  # 8 x 8 spatial bins of the top-left grid
    bins = np.arange(len(pos)) * nb // len(pos)
    expected = np.zeros((nb, nb))
    np.add.at(expected, (bins[:, None], bins[None, :]), w / w.sum())
    counts = np.zeros((nb, nb))
    roi_hits = 0
    for p in range(n):
        _, _, _, (_, cy, cx, _) = ds.sample(0, p)
        i, j = (cy - y0 - 64) // s, (cx - x0 - 64) // s
        counts[bins[i], bins[j]] += 1
        roi_hits += w[i, j] > 2
    assert chisquare(counts.ravel(), expected.ravel() * n).pvalue > 1e-4
    flat = np.full(nb * nb, n / nb**2)  # the same draws are clearly not uniform
    assert chisquare(counts.ravel(), flat).pvalue < 1e-4
    p_roi = (w * (w > 2)).sum() / w.sum()
    assert abs(roi_hits / n - p_roi) < 4 * np.sqrt(p_roi * (1 - p_roi) / n)
