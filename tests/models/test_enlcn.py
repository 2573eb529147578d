"""ENLCN: reference layout, tiny forward/backward, ENLCA kernelised attention, determinism."""

from __future__ import annotations

import io
import math

import pytest
import torch
import torch.nn.functional as F

from trainers.models.enlcn import ENLCA, gaussian_orthogonal_random_matrix
from trainers.models.registry import build_model, model_info, reference_layout

TINY = dict(n_feats=8, n_resblock=2)


def _layout(model: torch.nn.Module) -> list[list[object]]:
    buffers = {n for n, _ in model.named_buffers()}
    return [
        [k, list(v.shape), str(v.dtype).removeprefix("torch."), "buffer" if k in buffers else "param"]
        for k, v in model.state_dict().items()
    ]


@pytest.mark.parametrize("scale", [2, 4, 8])
def test_layout_matches_reference(scale: int) -> None:
    ref = reference_layout("enlcn", scale)
    with torch.device("meta"):
        model = build_model("enlcn", scale)
    assert _layout(model) == ref["state_dict"]  # includes the 5 projection_matrix buffers
    assert sum(p.numel() for p in model.parameters()) == ref["param_count"]
    assert sum(v.numel() for v in model.state_dict().values()) == ref["state_dict_tensor_elements"]
    frozen = sorted(n for n, p in model.named_parameters() if not p.requires_grad)
    assert frozen == sorted(ref["params_requires_grad_false"])
    assert model_info("enlcn").family == "post-upsampling"


def test_overrides_are_checked() -> None:
    with pytest.raises(ValueError, match="allowed overrides: .*n_resblock"):
        build_model("enlcn", 2, n_resblocks=2)  # the original's name is singular


@pytest.mark.parametrize("scale", [2, 4, 8])
def test_tiny_forward_backward(scale: int) -> None:
    torch.manual_seed(0)
    model = build_model("enlcn", scale, **TINY)
    x = torch.rand(2, 1, 7, 9, requires_grad=True)
    y = model(x)  # training mode: still a tensor (the contrastive loss is dropped)
    assert isinstance(y, torch.Tensor) and y.shape == (2, 1, 7 * scale, 9 * scale)
    y.square().mean().backward()
    for name, p in model.named_parameters():
        if p.requires_grad:
            assert p.grad is not None and torch.isfinite(p.grad).all(), name
    assert all(b.grad is None for b in model.buffers())


def test_enlca_matches_explicit_formula() -> None:
    torch.manual_seed(0)
    block = ENLCA(8, reduction=4, res_scale=0.3).double()
    x = torch.randn(2, 8, 5, 6, dtype=torch.float64)
    n, _, h, w = x.shape
    p = block.attn_fn.projection_matrix  # (128, 2)
    assert p.shape == (128, 2)

    def phi(u: torch.Tensor) -> torch.Tensor:  # u (n, L, d)
        return (torch.exp(u @ p.T - u.square().sum(-1, keepdim=True) / 2) + 1e-4) / math.sqrt(128)

    q = F.normalize(block.conv_match1(x), dim=1, eps=5e-5).flatten(2).transpose(1, 2) * math.sqrt(6)
    k = F.normalize(block.conv_match2(x), dim=1, eps=5e-5).flatten(2).transpose(1, 2) * math.sqrt(6)
    v = block.conv_assembly(x).flatten(2).transpose(1, 2)
    fq, fk = phi(q), phi(k)
    num = fq @ (fk.transpose(1, 2) @ v)
    den = fq @ fk.sum(1).unsqueeze(-1)
    expected = (num / den).transpose(1, 2).reshape(n, -1, h, w) * 0.3 + x
    torch.testing.assert_close(block(x), expected, rtol=1e-10, atol=1e-10)


def test_projection_is_scaled_orthogonal_blocks() -> None:
    torch.manual_seed(0)
    proj = gaussian_orthogonal_random_matrix(128, 64)
    assert proj.shape == (128, 64) and proj.dtype == torch.float32
    rows = proj / proj.norm(dim=1, keepdim=True)
    for block in (rows[:64], rows[64:]):
        torch.testing.assert_close(block @ block.T, torch.eye(64), atol=1e-4, rtol=0)
    tail = gaussian_orthogonal_random_matrix(5, 2)  # 2 full blocks + 1 truncated
    assert tail.shape == (5, 2)


def test_eval_is_deterministic_and_projection_is_not_redrawn() -> None:
    torch.manual_seed(0)
    model = build_model("enlcn", 2, **TINY).eval()
    before = model.body[0].attn_fn.projection_matrix.clone()
    x = torch.rand(1, 1, 8, 8)
    with torch.no_grad():
        a = model(x)
        torch.manual_seed(99)
        b = model(x)
    assert torch.equal(a, b)
    assert torch.equal(before, model.body[0].attn_fn.projection_matrix)


def test_full_size_state_dict_round_trip() -> None:
    # Full size (41.2M parameters): strict load into a fresh instance, every tensor identical
    # (outputs are compared at tiny size below; the full-size forward is slow on a shared CPU).
    torch.manual_seed(0)
    a = build_model("enlcn", 2)
    buf = io.BytesIO()
    torch.save(a.state_dict(), buf)
    buf.seek(0)
    with torch.device("meta"):
        b = build_model("enlcn", 2)
    b.load_state_dict(torch.load(buf, weights_only=True), strict=True, assign=True)
    sa, sb = a.state_dict(), b.state_dict()
    assert list(sa) == list(sb)
    assert all(torch.equal(sa[k], sb[k]) for k in sa)


def test_tiny_round_trip_gives_identical_outputs() -> None:
    torch.manual_seed(0)
    a = build_model("enlcn", 2, **TINY).eval()
    buf = io.BytesIO()
    torch.save(a.state_dict(), buf)
    buf.seek(0)
    torch.manual_seed(1)  # different projections and weights before loading
    b = build_model("enlcn", 2, **TINY).eval()
    assert not torch.equal(a.body[0].attn_fn.projection_matrix, b.body[0].attn_fn.projection_matrix)
    b.load_state_dict(torch.load(buf, weights_only=True), strict=True)
    x = torch.rand(1, 1, 6, 7)
    with torch.no_grad():
        ya, yb = a(x), b(x)
    assert ya.shape == (1, 1, 12, 14)
    assert torch.equal(ya, yb)
