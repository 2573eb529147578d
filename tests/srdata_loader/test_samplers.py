"""Pure sampling and transform functions."""

from __future__ import annotations

import numpy as np
import pytest

from srcaco2.srdata import samplers, transforms
from srcaco2.srdata.cache import ArrayLRU


def test_crop_positions_range_and_alignment():
    p = samplers.crop_positions(128, 4)
    assert p[0] == 0 and p[-1] == 512 - 128 - 4 and np.all(p % 4 == 0) and len(p) == 96
    q = samplers.crop_positions(128, 4, aligned=False)
    assert q[-1] == 512 - 128 - 1 and len(q) == 384  # [0, 512 - h - 1] as docs/protocol.md#training-crops


def test_crop_weights_at_centre():
    roi = np.zeros((512, 512), bool)
    roi[100, 200] = True  # centre of the crop with top-left (100 - 32, 200 - 32) for h = 64
    w = samplers.crop_weights(roi, 64, 4)
    pos = samplers.crop_positions(64, 4)
    i, j = np.argwhere(w > 2)[0]
    assert (pos[i], pos[j]) == (68, 168)
    assert w.max() == pytest.approx(np.exp(5) + 1) and (w > 2).sum() == 1 and w.min() == 2.0
    assert np.all(samplers.crop_weights(roi, 64, 4, roi_bias=False) == 1.0)


def test_cdf_and_sampling_never_pick_zero_weight():
    w = np.array([[0.0, 1.0], [0.0, 3.0]])
    cdf = samplers.crop_cdf(w)
    assert cdf.dtype == np.float64 and cdf[-1] == 1.0
    pos = np.array([0, 4])
    assert samplers.sample_crop(cdf, 0.0, pos) == (0, 4)
    assert samplers.sample_crop(cdf, 0.2499, pos) == (0, 4)
    assert samplers.sample_crop(cdf, 0.25, pos) == (4, 4)
    assert samplers.sample_crop(cdf, np.nextafter(1.0, 0), pos) == (4, 4)
    with pytest.raises(ValueError):
        samplers.crop_cdf(np.zeros((2, 2)))


def test_epoch_plan_deterministic_and_prefix_stable():
    a = samplers.epoch_plan(10, 25, seed=3, epoch=1)
    b = samplers.epoch_plan(10, 25, seed=3, epoch=1)
    c = samplers.epoch_plan(10, 27, seed=3, epoch=1)
    d = samplers.epoch_plan(10, 25, seed=3, epoch=2)
    assert np.array_equal(a.window, b.window) and np.array_equal(a.u, b.u)
    assert np.array_equal(c.window[:25], a.window) and np.array_equal(c.mode[:25], a.mode)
    assert not np.array_equal(a.window, d.window)
    assert sorted(a.window[:10]) == list(range(10)) and sorted(a.window[10:20]) == list(range(10))


def test_shard_positions():
    r = [samplers.shard_positions(10, k, 3, pad=True) for k in range(3)]
    assert {len(x) for x in r} == {4}
    assert sorted(np.concatenate(r)) == list(range(12))
    e = [samplers.shard_positions(10, k, 3, pad=False) for k in range(3)]
    assert sorted(np.concatenate(e)) == list(range(10))
    with pytest.raises(ValueError):
        samplers.shard_positions(10, 3, 3, pad=True)


def test_dihedral_modes_distinct_and_match_spec():
    x = np.arange(12).reshape(1, 3, 4)
    outs = [transforms.dihedral(x, m) for m in range(8)]
    assert len({o.tobytes() + bytes(o.shape) for o in outs}) == 8
    assert np.array_equal(outs[1], np.flipud(np.rot90(x[0]))[None])
    assert np.array_equal(outs[3], np.rot90(x[0], 3)[None])
    assert np.array_equal(outs[7], np.flipud(np.rot90(x[0], 3))[None])
    with pytest.raises(ValueError):
        transforms.dihedral(x, 8)


def test_lru_bounded():
    c = ArrayLRU(1000)
    for i in range(10):
        c.put(i, np.zeros(300, np.uint8))
    assert c.nbytes <= c.max_memory_bytes() and len(c) == 3 and c.evictions == 7
    assert c.get(9) is not None and c.get(0) is None
    assert "ArrayLRU(" in repr(c)
