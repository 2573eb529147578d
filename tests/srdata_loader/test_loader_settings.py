"""`LoaderSettings`: the loader's one settings object, equal to make_loader's keywords."""

from __future__ import annotations

import dataclasses
import inspect

import pytest
import torch

from srcaco2.srdata.loader import LoaderSettings, make_loader


def _batches(loader, n=3):
    out = []
    for i, b in enumerate(loader):
        if i == n:
            break
        out.append(b)
    return out


def test_settings_object_equals_keywords(store):
    settings = LoaderSettings(samples_per_epoch=24, roi_bias=False, augment=False, cache_bytes=2_000_000)
    a = _batches(make_loader(store, "train", 4, "CELL2", 4, 32, seed=3, settings=settings))
    b = _batches(make_loader(store, "train", 4, "CELL2", 4, 32, seed=3, samples_per_epoch=24, roi_bias=False,
                             augment=False, cache_bytes=2_000_000))  # fmt: skip
    c = _batches(make_loader(store, "train", 4, "CELL2", 4, 32, seed=3, settings=settings, augment=True))
    assert len(a) == len(b) == 3
    for x, y in zip(a, b, strict=True):
        assert torch.equal(x["hr"], y["hr"]) and torch.equal(x["lr"], y["lr"])
    assert any(not torch.equal(x["hr"], z["hr"]) for x, z in zip(a, c, strict=True))  # keyword wins


def test_every_setting_is_declared_once():
    """make_loader declares none of the settings again: they live in LoaderSettings only."""
    params = set(inspect.signature(make_loader).parameters)
    fields = {f.name for f in dataclasses.fields(LoaderSettings)}
    assert not params & fields
    assert {"num_workers", "pin_memory", "preload", "cache_bytes", "prefetch_factor"} <= fields


def test_settings_are_checked(store):
    with pytest.raises(TypeError, match=r"unexpected keyword argument\(s\) \['num_worker'\].*num_workers"):
        make_loader(store, "train", 4, "CELL2", 4, 32, num_worker=2)
    for bad, msg in [({"num_workers": -1}, "num_workers=-1 must be >= 0"),
                     ({"prefetch_factor": 0}, "prefetch_factor=0 must be >= 1"),
                     ({"samples_per_epoch": 0}, "samples_per_epoch must be >= 1"),
                     ({"cache_bytes": -5}, "cache_bytes=-5 must be >= 0")]:  # fmt: skip
        with pytest.raises(ValueError, match=msg):
            LoaderSettings(**bad)
        with pytest.raises(ValueError, match=msg):
            make_loader(store, "train", 4, "CELL2", 4, 32, **bad)
