"""srcaco2.kernels.fused_loss: the fused MSE − λ·SSIM(19) loss against an independent float64 formulation (the
benchmark's 5 dense convs + torch MSE), values and gradients, fp32 and bf16 sr, on shapes that span
several kernel tiles in both directions (Triton under the interpreter on CPU); bad input."""

from __future__ import annotations

import pytest
import torch

from srcaco2.kernels._dispatch import interpreter_enabled
from srcaco2.kernels.fused_loss import mse_ssim_loss
from srcaco2.kernels.ssim import ssim_5conv

needs_interp = pytest.mark.skipif(
    not (interpreter_enabled() or torch.cuda.is_available()),
    reason="the Triton path needs CUDA or TRITON_INTERPRET=1 (tests/conftest.py sets it on CPU machines)",
)
DEV = "cuda" if torch.cuda.is_available() else "cpu"
# the SSIM tests' tolerances: values absolute (×λ for the loss), gradients relative to the largest one
TOL = {torch.float32: {"val": 2e-5, "grad": 2e-4}, torch.bfloat16: {"val": 2e-5, "grad": 3e-2}}


def _independent(sr: torch.Tensor, hr: torch.Tensor, window: int, l2: float, lam: float):
    """float64: MSE by torch, SSIM by the benchmark's 5 dense w×w convolutions (zero same padding)."""
    mse = torch.nn.functional.mse_loss(sr, hr)
    s = ssim_5conv(sr, hr, window=window, padding="same")
    return l2 * mse - lam * s, mse, s


def _pair(shape, seed):
    g = torch.Generator().manual_seed(seed)
    hr = torch.rand(shape, generator=g, dtype=torch.float64)
    sr = hr + 0.08 * torch.randn(shape, generator=g, dtype=torch.float64)  # unclamped, as a network's output
    return sr, hr


def _check(shape, dtype, window, seed, l2=1.0, lam=5.0, grad_hr=False):
    sr64, hr64 = _pair(shape, seed)
    sr = sr64.to(dtype).to(DEV).requires_grad_(True)
    hr = hr64.float().to(DEV).requires_grad_(grad_hr)
    loss, mse, s = mse_ssim_loss(sr, hr, l2_weight=l2, ssim_weight=lam, window=window, backend="triton")
    assert loss.dtype == mse.dtype == s.dtype == torch.float32 and loss.shape == ()
    want = [t.requires_grad_(True) for t in (sr.detach().double().cpu(), hr.detach().double().cpu())]
    rl, rm, rs = _independent(*want, window, l2, lam)
    tol = TOL[dtype]
    torch.testing.assert_close(mse.double().cpu(), rm.detach(), rtol=0, atol=tol["val"])
    torch.testing.assert_close(s.double().cpu(), rs.detach(), rtol=0, atol=tol["val"])
    torch.testing.assert_close(loss.double().cpu(), rl.detach(), rtol=0, atol=(l2 + lam) * tol["val"])
    inputs = (sr, hr) if grad_hr else (sr,)
    got = torch.autograd.grad(loss * 0.7, inputs)
    ref = torch.autograd.grad(rl * 0.7, want[: len(inputs)])
    assert got[0].dtype == dtype and got[0].shape == shape
    for g, r in zip(got, ref):
        torch.testing.assert_close(g.double().cpu(), r, rtol=0, atol=tol["grad"] * r.abs().max().item())


@needs_interp
@pytest.mark.parametrize("dtype", [torch.float32, torch.bfloat16], ids=str)
def test_fused_loss_matches_independent_reference_across_tiles(dtype):
    # 20 × 70: 2 tiles of 16 rows × 2 tiles of 64 columns (window 19: the halo crosses every tile border)
    _check((1, 1, 20, 70), dtype, 19, seed=1)


@needs_interp
def test_fused_loss_both_gradients_batch_and_weights():
    _check((2, 2, 19, 67), torch.float32, 5, seed=2, l2=0.5, lam=3.0, grad_hr=True)


@needs_interp
@pytest.mark.slow
def test_fused_loss_training_like_shape():
    _check((1, 1, 67, 131), torch.float32, 19, seed=3)  # 5 × 3 tiles (the interpreter: minutes)


def test_torch_path_matches_independent_reference():
    sr, hr = _pair((2, 1, 23, 29), seed=4)
    got = mse_ssim_loss(sr.float(), hr.float(), backend="torch")
    want = _independent(sr.float().double(), hr.float().double(), 19, 1.0, 5.0)
    for a, b in zip(got, want):
        assert a.dtype == torch.float32
        torch.testing.assert_close(a.double(), b, rtol=0, atol=1e-5)
    loss, mse, s = mse_ssim_loss(hr, hr)
    assert float(mse) == 0.0 and float(s) == pytest.approx(1.0, abs=1e-6)


@pytest.mark.parametrize(
    ("args", "kwargs", "exc", "match"),
    [
        ((torch.zeros(1, 8, 8), torch.zeros(1, 8, 8)), {}, ValueError, r"\(B, C, H, W\)"),
        ((torch.zeros(1, 1, 8, 8), torch.zeros(1, 1, 8, 9)), {}, ValueError, "shapes differ"),
        ((torch.zeros(1, 1, 8, 8, dtype=torch.int32), torch.zeros(1, 1, 8, 8)), {}, TypeError, "dtype"),
        ((torch.zeros(1, 1, 8, 8), torch.zeros(1, 1, 8, 8)), {"window": 4}, ValueError, "odd int"),
        ((torch.zeros(1, 1, 8, 8), torch.zeros(1, 1, 8, 8)), {"sigma": -1.0}, ValueError, "sigma"),
        (
            (torch.zeros(1, 1, 8, 8), torch.zeros(1, 1, 8, 8)),
            {"ssim_weight": float("nan")},
            ValueError,
            "ssim_weight",
        ),
        ((torch.zeros(1, 1, 8, 8), torch.zeros(1, 1, 8, 8)), {"backend": "gpu"}, ValueError, "backend"),
        ((torch.zeros(0, 1, 8, 8), torch.zeros(0, 1, 8, 8)), {}, ValueError, "empty"),
    ],
)
def test_bad_input(args, kwargs, exc, match):
    with pytest.raises(exc, match=match):
        mse_ssim_loss(*args, **kwargs)
