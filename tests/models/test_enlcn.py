"""ENLCN: reference layout, tiny forward/backward, ENLCA kernelised attention, determinism."""

from __future__ import annotations

import io
import math

import pytest
import torch
import torch.nn.functional as F

from srcaco2.trainers.models.enlcn import ENLCA, gaussian_orthogonal_random_matrix
from srcaco2.trainers.models.registry import build_model, model_info

TINY = model_info("enlcn").tiny_overrides(2)  # the registry's tiny config (one home)


@pytest.mark.parametrize("scale", [2, 4, 8])
def test_layout_matches_reference(scale: int, check_reference_layout) -> None:
    check_reference_layout("enlcn", scale)  # every state_dict row, counts, frozen, buffers
    assert model_info("enlcn").family == "post-upsampling"


def test_overrides_are_checked() -> None:
    with pytest.raises(ValueError, match="allowed overrides: .*n_resblock"):
        build_model("enlcn", 2, n_resblocks=2)  # the original's name is singular


@pytest.mark.parametrize("scale", [2, 4, 8])
def test_tiny_forward_backward(scale: int, check_tiny_forward_backward) -> None:
    # training mode: still a tensor (the contrastive loss is dropped); no gradient on the buffers
    check_tiny_forward_backward("enlcn", scale, TINY, (2, 1, 7, 9))


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


def test_full_size_state_dict_round_trip(check_meta_assign_round_trip) -> None:
    # Full size (41.2M parameters): strict load into a fresh instance, every tensor identical
    # (outputs are compared at tiny size below; the full-size forward is slow on a shared CPU).
    check_meta_assign_round_trip("enlcn", 2)


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
