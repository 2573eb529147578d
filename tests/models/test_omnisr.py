"""OmniSR: layout vs the reference JSON, tiny forward/backward, zero padding, size limits."""

from __future__ import annotations

import pytest
import torch
import torch.nn.functional as F

from srcaco2.trainers.models.registry import build_model, model_info

TINY = model_info("omnisr").tiny_overrides(2)  # the registry's tiny config (one home)


pytestmark = pytest.mark.usefixtures("one_thread")


def _lr(shape: tuple[int, ...], seed: int = 0) -> torch.Tensor:
    return torch.rand(shape, generator=torch.Generator().manual_seed(seed))


@pytest.mark.parametrize("scale", [2, 4, 8])
def test_layout_matches_reference(scale: int, check_reference_layout) -> None:
    check_reference_layout("omnisr", scale)  # every state_dict row, counts, frozen, buffers


def test_rel_pos_indices_values() -> None:
    model = build_model("omnisr", 2, **TINY)
    idx = model.get_buffer("residual_layer.0.residual_layer.0.layer.2.fn.rel_pos_indices")
    # token (i1, j1) vs (i2, j2) in an 8x8 window -> (i1 - i2 + 7) * 15 + (j1 - j2 + 7)
    assert idx[0, 0] == 7 * 15 + 7 and idx[0, 63] == 0 and idx[63, 0] == 14 * 15 + 14
    assert idx[1, 0] == 7 * 15 + 8 and idx[8, 0] == 8 * 15 + 7
    assert idx.min() == 0 and idx.max() == 224


def test_registry_metadata() -> None:
    info = model_info("omnisr")
    assert info.family == "post-upsampling" and not info.multi_output and info.pre_upsampling is None


@pytest.mark.parametrize("scale", [2, 4, 8])
def test_tiny_forward_backward(scale: int, check_tiny_forward_backward) -> None:
    check_tiny_forward_backward("omnisr", scale, TINY, (1, 1, 12, 12))


def test_eval_deterministic_and_zero_padding() -> None:
    torch.manual_seed(0)
    model = build_model("omnisr", 2, **TINY).eval()
    x = _lr((2, 1, 13, 10), seed=1)
    with torch.no_grad():
        a, b = model(x), model(x)
        padded = model(F.pad(x, (0, 6, 0, 3)))  # zero padding to 16x16 is what forward does
    assert a.shape == (2, 1, 26, 20)
    assert torch.equal(a, b)
    torch.testing.assert_close(a, padded[..., :26, :20], rtol=0, atol=0)


def test_grid_and_window_attention_differ() -> None:
    """Window (block) and grid token groupings see different pixels: swapping them changes outputs."""
    torch.manual_seed(0)
    model = build_model("omnisr", 2, **TINY).eval()
    x = _lr((1, 1, 16, 16), seed=2)
    with torch.no_grad():
        ref = model(x)
        layer = model.residual_layer[0].residual_layer[0].layer
        layer[1].grid, layer[3].grid = True, True
        assert not torch.allclose(model(x), ref)


def test_too_small_input_raises() -> None:
    model = build_model("omnisr", 2, **TINY).eval()
    with pytest.raises(ValueError, match="at least 9x9"):
        model(torch.zeros(1, 1, 8, 20))
    with torch.no_grad():
        assert model(torch.zeros(1, 1, 9, 9)).shape == (1, 1, 18, 18)


def test_state_dict_roundtrip_full_size(check_round_trip) -> None:
    check_round_trip("omnisr", 2, _lr((1, 1, 12, 12), seed=5))


def test_bad_overrides() -> None:
    with pytest.raises(ValueError, match="allowed names"):
        build_model("omnisr", 2, embed_dim=8)
    with pytest.raises(ValueError, match="divisible by 4"):
        build_model("omnisr", 2, num_feat=18)
