"""srcaco2.kernels._dispatch: backend choice rules; kernel modules import without importing Triton."""

from __future__ import annotations

import subprocess
import sys

import pytest
import torch

from srcaco2.kernels._dispatch import resolve_backend


def test_resolve_backend_rules(monkeypatch):
    x = torch.zeros(1)
    assert resolve_backend("torch", x, op="t") == "torch"
    assert resolve_backend("auto", x, op="t") == "torch"  # CPU tensors
    monkeypatch.setenv("TRITON_INTERPRET", "1")
    assert resolve_backend("triton", x, op="t") == "triton"
    monkeypatch.setenv("TRITON_INTERPRET", "0")
    with pytest.raises(RuntimeError, match="TRITON_INTERPRET=1"):
        resolve_backend("triton", x, op="t")
    with pytest.raises(ValueError, match=r"\('auto', 'triton', 'torch'\)"):
        resolve_backend("gpu", x, op="t")
    with pytest.raises(RuntimeError, match="needs CUDA tensors"):
        resolve_backend("triton", torch.zeros(1, device="meta"), op="t")


def test_import_is_light():
    code = (
        "import sys, srcaco2.kernels.ssim, srcaco2.kernels.pixel_shuffle, srcaco2.kernels._dispatch; "
        "print('triton' in sys.modules)"
    )
    out = subprocess.run([sys.executable, "-c", code], capture_output=True, text=True, check=True)
    assert out.stdout.strip() == "False"
