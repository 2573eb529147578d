"""SwinIR: layout vs the reference JSON, tiny forward/backward, eval mirror padding, mask buffers."""

from __future__ import annotations

import numpy as np
import pytest
import torch

from srcaco2.trainers.models.registry import build_model, model_info

TINY = {"embed_dim": 12, "depths": [2, 2], "num_heads": [2, 2], "img_size": 16}


pytestmark = pytest.mark.usefixtures("one_thread")


def _lr(shape: tuple[int, ...], seed: int = 0) -> torch.Tensor:
    return torch.rand(shape, generator=torch.Generator().manual_seed(seed))


@pytest.mark.parametrize("scale", [2, 4, 8])
def test_layout_matches_reference(scale: int, check_reference_layout) -> None:
    _, ref = check_reference_layout("swinir", scale)  # every state_dict row, counts, frozen, buffers
    assert ref["non_persistent_buffers"] == []


def test_registry_metadata() -> None:
    info = model_info("swinir")
    assert info.family == "post-upsampling" and not info.multi_output and info.pre_upsampling is None


@pytest.mark.parametrize("scale", [2, 4, 8])
def test_tiny_forward_backward(scale: int, check_tiny_forward_backward) -> None:
    check_tiny_forward_backward("swinir", scale, TINY, (1, 1, 12, 12))


def test_eval_is_deterministic_and_any_size() -> None:
    torch.manual_seed(0)
    model = build_model("swinir", 2, **TINY).eval()
    for h, w in [(16, 16), (13, 7), (3, 5)]:
        x = _lr((2, 1, h, w), seed=h)
        with torch.no_grad():
            a, b = model(x), model(x)
        assert a.shape == (2, 1, 2 * h, 2 * w)
        assert torch.equal(a, b)


def _mirror_pad_np(x: np.ndarray, ws: int) -> np.ndarray:
    """The benchmark's evaluation padding, written independently with numpy."""
    h, w = x.shape[-2:]
    ph, pw = (h // ws + 1) * ws - h, (w // ws + 1) * ws - w
    x = np.concatenate([x, x[..., ::-1, :][..., :ph, :]], axis=-2)
    return np.concatenate([x, x[..., :, ::-1][..., :, :pw]], axis=-1)


@pytest.mark.parametrize("hw", [(16, 16), (11, 13)])
def test_eval_mirror_padding(hw: tuple[int, int]) -> None:
    torch.manual_seed(0)
    model = build_model("swinir", 4, **TINY, drop_path_rate=0.0).eval()  # no stochastic depth in train()
    x = _lr((1, 1, *hw), seed=3)
    padded = torch.from_numpy(_mirror_pad_np(x.numpy(), 8).copy())
    assert padded.shape[-2] % 8 == 0 and padded.shape[-2] > hw[0]  # 8 extra rows even when divisible
    with torch.no_grad():
        expected = model.forward_network(padded)[..., : 4 * hw[0], : 4 * hw[1]]
        got = model(x)
        bare = model.forward_network(x)
    torch.testing.assert_close(got, expected, rtol=0, atol=0)
    assert not torch.allclose(got, bare)  # the padding changes border outputs: it is really applied
    model.train()
    with torch.no_grad():
        torch.testing.assert_close(model(x), bare, rtol=0, atol=0)  # train mode: no mirror padding


def test_stored_mask_used_only_at_img_size() -> None:
    torch.manual_seed(0)
    model = build_model("swinir", 2, **TINY, drop_path_rate=0.0).train()
    masks = [n for n, _ in model.named_buffers() if n.endswith("attn_mask")]
    assert masks == [
        "layers.0.residual_group.blocks.1.attn_mask",
        "layers.1.residual_group.blocks.1.attn_mask",
    ]
    mask = model.get_buffer(masks[0])
    assert mask.shape == (4, 64, 64) and set(mask.unique().tolist()) == {-100.0, 0.0}
    x16, x24 = _lr((1, 1, 16, 16), 1), _lr((1, 1, 24, 24), 2)
    with torch.no_grad():
        ref16, ref24 = model(x16), model(x24)
        for n in masks:
            model.get_buffer(n).zero_()
        assert not torch.allclose(model(x16), ref16)  # the stored buffer is what 16x16 inputs use
        torch.testing.assert_close(model(x24), ref24, rtol=0, atol=0)  # other sizes recompute it


def test_state_dict_roundtrip_full_size(check_round_trip) -> None:
    check_round_trip("swinir", 2, _lr((1, 1, 8, 8), seed=5))


def test_bad_overrides() -> None:
    with pytest.raises(ValueError, match="allowed names"):
        build_model("swinir", 2, n_feats=8)
    with pytest.raises(ValueError, match="pixelshuffledirect"):
        build_model("swinir", 2, upsampler="pixelshuffle")
    with pytest.raises(ValueError, match="divisible"):
        build_model("swinir", 2, embed_dim=10, num_heads=[3, 3], depths=[1, 1])
