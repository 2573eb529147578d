"""Data-parallel training on 2 CPU processes (torchrun, gloo): both ranks end with the same weights."""

from __future__ import annotations

import json
import os
import subprocess
import sys
from pathlib import Path

import pytest
import torch


def _free_port() -> int:
    import socket

    with socket.socket() as s:
        s.bind(("127.0.0.1", 0))
        return s.getsockname()[1]


WORKER = Path(__file__).with_name("_ddp_worker.py")


@pytest.mark.slow
def test_two_cpu_ranks_agree(trainer_store, tmp_path, tiny_overrides):
    out = tmp_path / "run"
    out.mkdir()
    overrides = tiny_overrides + ["train.max_steps=3", "eval.every=2"]
    cmd = [sys.executable, "-m", "torch.distributed.run", "--nproc_per_node", "2"]
    cmd += ["--master_port", str(_free_port()), str(WORKER), trainer_store, str(out), json.dumps(overrides)]
    env = dict(os.environ, PYTHONPATH=str(Path(__file__).parents[2]), OMP_NUM_THREADS="1")
    proc = subprocess.run(cmd, env=env, capture_output=True, text=True, timeout=300)
    assert proc.returncode == 0, proc.stderr[-3000:]
    w0 = torch.load(out / "rank0.weights")
    w1 = torch.load(out / "rank1.weights")
    for k in w0:
        torch.testing.assert_close(w0[k], w1[k], rtol=0, atol=0)
    losses = torch.load(out / "rank0.losses")
    assert len(losses) == 3 and losses == torch.load(out / "rank1.losses")  # all-reduced mean loss
    from srcaco2.trainers.checkpoints import load_checkpoint

    ck = load_checkpoint(out / "last.pt")
    assert ck["meta"]["step"] == 3 and ck["training_state"]["loader"]["world_size"] == 2
    assert (out / "best.pt").exists()
    for k, v in ck["model"].items():
        torch.testing.assert_close(v, w0[k], rtol=0, atol=0)
