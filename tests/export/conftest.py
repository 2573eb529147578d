"""Fixtures of the export tests: tiny seeded networks saved as checkpoints of ours."""

from __future__ import annotations

import os
from pathlib import Path

import pytest

os.environ.setdefault("BIOIMAGEIO_PERFORM_IO_CHECKS", "false")  # offline: no URL is ever fetched


def _fit_briefly(net, scale: int, steps: int = 25) -> None:
    """A few Adam steps towards bicubic on a real-sample crop: random tiny weights of some networks
    output ~0 everywhere, which bioimageio's test refuses as a test tensor (and tests nothing)."""
    import numpy as np
    import torch
    import torch.nn.functional as F

    from srcaco2.srdata.real_sample import load_real_sample

    lr = torch.from_numpy(load_real_sample()[scale][:24, :24].astype(np.float32) / 255.0)[None, None]
    target = F.interpolate(lr, scale_factor=scale, mode="bicubic", align_corners=False)
    opt = torch.optim.Adam(net.parameters(), lr=2e-3)
    net.train()
    for _ in range(steps):
        out = net(lr)
        out = out if isinstance(out, torch.Tensor) else out[-1]
        loss = (out - target).abs().mean()
        opt.zero_grad()
        loss.backward()
        opt.step()
    net.eval()


def tiny_checkpoint(folder: Path, method: str, scale: int = 4, *, seed: int = 0) -> Path:
    """``folder/best.pt``: `method`'s tiny variant at `scale`, seeded random weights, CELL2."""
    import torch

    from srcaco2.trainers.checkpoints import save_checkpoint
    from srcaco2.trainers.models import build_model, model_info

    ov = model_info(method).tiny_overrides(scale)
    torch.manual_seed(seed)
    net = build_model(method, scale, **ov)
    _fit_briefly(net, scale)
    meta = {"method": method, "scale": scale, "marker": "CELL2", "overrides": ov, "step": 7, "epoch": 1}
    folder.mkdir(parents=True, exist_ok=True)
    config = {"recipe": "default", "data": {"store": "/data/caco2.zarr", "marker": "CELL2", "scale": scale}}
    return save_checkpoint(folder / "best.pt", model_state=net.state_dict(), config=config, meta=meta)


@pytest.fixture()
def make_checkpoint(tmp_path: Path):
    """``make_checkpoint(method, scale=4) -> Path`` of a tiny seeded checkpoint under tmp_path."""
    return lambda method, scale=4: tiny_checkpoint(tmp_path / f"run_{method}_x{scale}", method, scale)
