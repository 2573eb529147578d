"""Training loss: MSE − 5·SSIM(19, zero same padding), multi-output averaging, fp32 accumulation."""

from __future__ import annotations

import math

import pytest
import torch
import torch.nn.functional as F

from srcaco2.trainers.config import LossConfig
from srcaco2.trainers.losses import SRLoss, image_loss, resized_target


def _ssim_same_ref(x: torch.Tensor, y: torch.Tensor, window: int = 19, sigma: float = 1.5) -> torch.Tensor:
    """Independent float64 SSIM: Gaussian over offsets k - w//2, zero padding w//2, 5 convolutions."""
    x, y = x.double(), y.double()
    k = torch.tensor(
        [math.exp(-((i - window // 2) ** 2) / (2 * sigma**2)) for i in range(window)], dtype=torch.float64
    )
    k = k / k.sum()
    w = (k[:, None] * k[None, :])[None, None]
    blur = lambda a: F.conv2d(a, w, padding=window // 2)  # noqa: E731
    mx, my = blur(x), blur(y)
    sxx, syy, sxy = blur(x * x) - mx**2, blur(y * y) - my**2, blur(x * y) - mx * my
    c1, c2 = 0.01**2, 0.03**2
    smap = ((2 * mx * my + c1) * (2 * sxy + c2)) / ((mx**2 + my**2 + c1) * (sxx + syy + c2))
    return smap.mean(dim=(1, 2, 3)).mean()


@pytest.fixture
def pair():
    g = torch.Generator().manual_seed(3)
    hr = torch.rand(2, 1, 33, 41, generator=g)
    sr = (hr + 0.1 * torch.randn(2, 1, 33, 41, generator=g)).requires_grad_(True)
    return sr, hr


def test_value_matches_reference(pair):
    sr, hr = pair
    loss, parts = SRLoss(LossConfig())(sr, hr)
    ref = F.mse_loss(sr.double(), hr.double()) - 5.0 * _ssim_same_ref(sr, hr)
    assert loss.dtype == torch.float32
    assert loss.item() == pytest.approx(ref.item(), abs=2e-5)
    assert float(parts["ssim"]) == pytest.approx(float(_ssim_same_ref(sr.detach(), hr)), abs=2e-6)
    loss.backward()
    assert sr.grad is not None and torch.isfinite(sr.grad).all()


def test_gradient_matches_reference(pair):
    sr, hr = pair
    loss, _ = image_loss(sr, hr)
    (g,) = torch.autograd.grad(loss, sr)
    sr64 = sr.detach().double().requires_grad_(True)
    ref = F.mse_loss(sr64, hr.double()) - 5.0 * _ssim_same_ref(sr64, hr)
    (g_ref,) = torch.autograd.grad(ref, sr64)
    torch.testing.assert_close(g.double(), g_ref, rtol=1e-3, atol=1e-7)


def test_weights_and_window_are_used(pair):
    sr, hr = pair
    only_mse, _ = SRLoss(LossConfig(ssim_weight=0.0))(sr, hr)
    assert only_mse.item() == pytest.approx(F.mse_loss(sr, hr).item(), rel=1e-6)
    w11, _ = SRLoss(LossConfig(ssim_window=11))(sr, hr)
    w19, _ = SRLoss(LossConfig())(sr, hr)
    assert w11.item() != pytest.approx(w19.item(), abs=1e-6)


def test_bf16_outputs_are_scored_in_fp32(pair):
    sr, hr = pair
    loss16, _ = SRLoss(LossConfig())(sr.detach().bfloat16(), hr)
    assert loss16.dtype == torch.float32
    ref, _ = SRLoss(LossConfig())(sr.detach().bfloat16().float(), hr)
    assert float(loss16) == ref.item()


def test_srfbn_style_mean_over_steps(pair):
    sr, hr = pair[0].detach(), pair[1]
    crit = SRLoss(LossConfig())
    outs = [sr * 0.5, sr * 0.9, sr]
    loss, parts = crit(outs, hr)
    expect = sum(float(crit(o, hr)[0]) for o in outs) / 3
    assert loss.item() == pytest.approx(expect, rel=1e-6)
    assert float(parts["mse"]) == pytest.approx(float(F.mse_loss(sr, hr)), rel=1e-6)  # final output's parts


def test_progressive_targets_are_resized_hr():
    g = torch.Generator().manual_seed(5)
    hr = torch.rand(2, 1, 32, 32, generator=g)
    outs = [
        torch.rand(2, 1, 8, 8, generator=g),
        torch.rand(2, 1, 16, 16, generator=g),
        torch.rand(2, 1, 32, 32, generator=g),
    ]
    crit = SRLoss(LossConfig())
    loss, _ = crit(outs, hr)
    t8 = F.interpolate(hr, size=(8, 8), mode="bicubic", align_corners=True).clamp(0, 1)
    t16 = F.interpolate(hr, size=(16, 16), mode="bicubic", align_corners=True).clamp(0, 1)
    expect = (float(crit(outs[2], hr)[0]) + float(crit(outs[0], t8)[0]) + float(crit(outs[1], t16)[0])) / 3
    assert loss.item() == pytest.approx(expect, rel=1e-6)
    assert resized_target(hr, (32, 32)) is hr
    assert float(resized_target(hr * 1.2, (16, 16)).max()) <= 1.0


@pytest.mark.skipif(
    not (torch.cuda.is_available() or __import__("os").environ.get("TRITON_INTERPRET") == "1"),
    reason="the fused Triton loss needs CUDA or TRITON_INTERPRET=1 (tests/conftest.py sets it on CPU)",
)
def test_fused_triton_loss_equals_torch_path():
    g = torch.Generator().manual_seed(9)
    hr = torch.rand(2, 1, 20, 70, generator=g)  # 2 × 2 kernel tiles per image
    sr = (hr + 0.1 * torch.randn(2, 1, 20, 70, generator=g)).bfloat16()  # a bf16 network output
    dev = "cuda" if torch.cuda.is_available() else "cpu"
    cfg = LossConfig(ssim_window=5)
    srk = sr.to(dev).requires_grad_(True)
    loss, parts = SRLoss(cfg, backend="triton")(srk, hr.to(dev))
    (gk,) = torch.autograd.grad(loss, srk)
    srt = sr.clone().requires_grad_(True)
    ref, ref_parts = SRLoss(cfg, backend="torch")(srt, hr)
    (gt,) = torch.autograd.grad(ref, srt)
    assert loss.dtype == torch.float32 and gk.dtype == torch.bfloat16
    assert loss.item() == pytest.approx(ref.item(), abs=1e-4)
    for k in ("mse", "ssim"):
        assert float(parts[k]) == pytest.approx(float(ref_parts[k]), abs=2e-5)
    atol = 3e-2 * gt.float().abs().max().item()
    torch.testing.assert_close(gk.float().cpu(), gt.float(), rtol=0, atol=atol)
