"""The kernels as torch custom ops: opcheck (schema, fake tensors, autograd registration), and
``torch.compile(fullgraph=True)`` of a tiny network + the training loss without a graph break, through
the torch path and through the custom ops (Triton under the interpreter on CPU)."""

from __future__ import annotations

import pytest
import torch
from torch import nn

from srcaco2.kernels import _ssim_ops
from srcaco2.kernels._dispatch import interpreter_enabled
from srcaco2.kernels.pixel_shuffle import PixelShuffle, _pixel_shuffle_op
from srcaco2.trainers.config import LossConfig
from srcaco2.trainers.losses import SRLoss

needs_interp = pytest.mark.skipif(
    not (interpreter_enabled() or torch.cuda.is_available()),
    reason="the Triton path needs CUDA or TRITON_INTERPRET=1 (tests/conftest.py sets it on CPU machines)",
)
DEV = "cuda" if torch.cuda.is_available() else "cpu"
CHECKS = ("test_schema", "test_autograd_registration", "test_faketensor")


def _rand(*shape, seed=0, grad=False):
    t = torch.rand(*shape, generator=torch.Generator().manual_seed(seed)).to(DEV)
    return t.requires_grad_(grad)


@needs_interp
def test_opcheck_ssim_ops():
    x, y = _rand(1, 1, 6, 7, seed=1, grad=True), _rand(1, 1, 6, 7, seed=2)
    torch.library.opcheck(_ssim_ops.ssim_op, (x, y, None, 3, 1.5, 1, 1.0, False, 3), test_utils=CHECKS)
    mask = _rand(1, 1, 4, 5, seed=3) > 0.5
    torch.library.opcheck(_ssim_ops.ssim_op, (x, y, mask, 3, 1.5, 0, 1.0, False, 3), test_utils=CHECKS)
    torch.library.opcheck(_ssim_ops.mse_ssim_loss_op, (x, y, 3, 1.5, 1.0, 5.0, 3), test_utils=CHECKS)


@needs_interp
def test_opcheck_pixel_shuffle_op():
    x = _rand(1, 8, 3, 4, seed=4, grad=True) - 0.5
    bias = _rand(8, seed=5, grad=True)
    torch.library.opcheck(_pixel_shuffle_op, (x, 2, None, "", 0.01, None, 0.0, 0.0, False), test_utils=CHECKS)
    torch.library.opcheck(
        _pixel_shuffle_op, (x, 2, bias, "relu", 0.01, None, -0.2, 0.3, True), test_utils=CHECKS
    )


class _Tiny(nn.Module):
    """conv → pixel shuffle ×2 (+ fused ReLU) → conv: the shape of every sub-pixel upsampler."""

    def __init__(self) -> None:
        super().__init__()
        g = torch.Generator().manual_seed(0)
        self.head = nn.Conv2d(1, 8, 3, padding=1)
        self.up = PixelShuffle(2, activation="relu")
        self.tail = nn.Conv2d(2, 1, 3, padding=1)
        for p in self.parameters():
            p.data = torch.randn(p.shape, generator=g) * 0.3

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        return self.tail(self.up(self.head(x)))


def _forward(model, loss_fn, lr, hr):
    loss, parts = loss_fn(model(lr), hr)
    return loss, parts["ssim"]


@pytest.mark.parametrize("path", ["torch", pytest.param("triton", marks=needs_interp)])
def test_compile_fullgraph_network_and_loss(path, monkeypatch):
    import srcaco2.kernels.pixel_shuffle as ps_mod

    if path == "triton":  # route the module through the custom op (CUDA does this with "auto")
        real = ps_mod.pixel_shuffle
        monkeypatch.setattr(ps_mod, "pixel_shuffle", lambda *a, **k: real(*a, **{**k, "backend": "triton"}))
    torch._dynamo.reset()
    lr, hr = _rand(2, 1, 8, 9, seed=6).clamp(0, 1), _rand(2, 1, 16, 18, seed=7)
    loss_fn = SRLoss(LossConfig(ssim_window=5), backend=path)
    eager_model, compiled_model = _Tiny().to(DEV), _Tiny().to(DEV)
    want = _forward(eager_model, loss_fn, lr, hr)
    fwd = torch.compile(_forward, fullgraph=True, backend="aot_eager")  # fullgraph: a graph break raises
    got = fwd(compiled_model, loss_fn, lr, hr)
    want[0].backward()
    got[0].backward()  # the compiled backward graph (custom ops' autograd formulas)
    for a, b in zip(got, want):
        torch.testing.assert_close(a, b, rtol=1e-5, atol=1e-6)
    for pa, pb in zip(compiled_model.parameters(), eager_model.parameters()):
        torch.testing.assert_close(pa.grad, pb.grad, rtol=1e-4, atol=1e-6)
