"""Fixtures of the export tests: tiny seeded networks saved as checkpoints of ours."""

from __future__ import annotations

import os
from pathlib import Path

import pytest

from srcaco2.benchmarks.export_bioimageio import fit_briefly

os.environ.setdefault("BIOIMAGEIO_PERFORM_IO_CHECKS", "false")  # offline: no URL is ever fetched


def tiny_checkpoint(folder: Path, method: str, scale: int = 4, *, seed: int = 0) -> Path:
    """``folder/best.pt``: `method`'s tiny variant at `scale`, seeded random weights, CELL2."""
    import torch

    from srcaco2.trainers.checkpoints import save_checkpoint
    from srcaco2.trainers.models import build_model, model_info

    ov = model_info(method).tiny_overrides(scale)
    torch.manual_seed(seed)
    net = build_model(method, scale, **ov)
    fit_briefly(net, scale)
    meta = {"method": method, "scale": scale, "marker": "CELL2", "overrides": ov, "step": 7, "epoch": 1}
    folder.mkdir(parents=True, exist_ok=True)
    config = {"recipe": "default", "data": {"store": "/data/caco2.zarr", "marker": "CELL2", "scale": scale}}
    return save_checkpoint(folder / "best.pt", model_state=net.state_dict(), config=config, meta=meta)


@pytest.fixture()
def make_checkpoint(tmp_path: Path):
    """``make_checkpoint(method, scale=4) -> Path`` of a tiny seeded checkpoint under tmp_path."""
    return lambda method, scale=4: tiny_checkpoint(tmp_path / f"run_{method}_x{scale}", method, scale)
