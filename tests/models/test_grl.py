"""GRL: layout vs the reference JSON, shared buffers, tiny forward/backward, internal padding."""

from __future__ import annotations

import pytest
import torch
import torch.nn.functional as F

from srcaco2.trainers.models._grl_blocks import BUFFER_NAMES, table_index_mask
from srcaco2.trainers.models.registry import build_model, model_info

TINY = model_info("grl").tiny_overrides(2)  # the registry's tiny config (one home)


pytestmark = pytest.mark.usefixtures("one_thread")


def _lr(shape: tuple[int, ...], seed: int = 0) -> torch.Tensor:
    return torch.rand(shape, generator=torch.Generator().manual_seed(seed))


@pytest.mark.parametrize("scale", [2, 4, 8])
def test_layout_matches_reference(scale: int, check_reference_layout) -> None:
    _, ref = check_reference_layout("grl", scale)  # every state_dict row, counts, frozen, buffers
    assert ref["non_persistent_buffers"] == []
    assert [row[0] for row in ref["state_dict"][: len(BUFFER_NAMES)]] == list(BUFFER_NAMES)


def test_registry_metadata() -> None:
    info = model_info("grl")
    assert info.family == "post-upsampling" and not info.multi_output and info.pre_upsampling is None


def test_shared_buffer_values() -> None:
    tim = table_index_mask((32, 32), 8, (8, 8), 2)
    # log-spaced coordinates: the centre is 0, the corners +-1 (|coord| max normalised to 8 -> log2(9)/3)
    tw = tim["table_w"]
    assert tw[0, 7, 7].abs().max() == 0
    torch.testing.assert_close(tw[0, 14, 14], torch.full((2,), torch.log2(torch.tensor(9.0)).item() / 3))
    assert tim["index_w"].min() == 0 and tim["index_w"].max() == 15 * 15 - 1
    assert tim["index_w"][0, 0] == 7 * 15 + 7
    # window token (0, 0) vs anchor token (0, 0) -> centre of the 11x11 anchor table after offset (3, 3)
    assert tim["index_sh_w2a"][0, 0] == 3 * 11 + 3 and tim["index_sh_w2a"].max() <= 120
    assert tim["index_sh_a2w"].shape == (16, 64) and tim["index_sh_a2w"].max() <= 120
    assert tim["mask_w"].shape == (16, 64, 64)
    assert set(tim["mask_w"].unique().tolist()) == {-100.0, 0.0}
    assert tim["mask_w"][0].abs().max() == 0  # the top-left window never straddles the shift boundary
    assert tim["mask_sh_a2w"].shape == (16, 16, 64) and tim["mask_sh_w2a"].shape == (16, 64, 16)


def test_tiny_forward_backward_x2(check_tiny_forward_backward) -> None:
    check_tiny_forward_backward("grl", 2, TINY, (1, 1, 12, 12))


@pytest.mark.parametrize("scale", [4, 8])
def test_tiny_eval_shapes(scale: int) -> None:
    torch.manual_seed(0)
    model = build_model("grl", scale, **TINY).eval()
    x = _lr((1, 1, 9, 14), seed=scale)
    with torch.no_grad():
        a, b = model(x), model(x)
    assert a.shape == (1, 1, 9 * scale, 14 * scale)
    assert torch.equal(a, b)


def test_reflect_padding_and_zero_fallback() -> None:
    torch.manual_seed(0)
    model = build_model("grl", 2, **TINY).eval()
    x = _lr((1, 1, 13, 10), seed=1)
    tiny = _lr((1, 1, 3, 4), seed=2)  # pad 5 >= 3 rows: reflect is impossible, the original pads zeros
    with torch.no_grad():
        torch.testing.assert_close(
            model(x), model(F.pad(x, (0, 6, 0, 3), "reflect"))[..., :26, :20], rtol=0, atol=0
        )
        torch.testing.assert_close(model(tiny), model(F.pad(tiny, (0, 4, 0, 5)))[..., :6, :8], rtol=0, atol=0)


def test_stored_buffers_used_only_at_img_size() -> None:
    torch.manual_seed(0)
    model = build_model("grl", 2, **TINY).eval()
    x16, x24 = _lr((1, 1, 16, 16), 1), _lr((1, 1, 24, 24), 2)
    with torch.no_grad():
        ref16, ref24 = model(x16), model(x24)
        model.mask_w.zero_()
        assert not torch.allclose(model(x16), ref16)
        torch.testing.assert_close(model(x24), ref24, rtol=0, atol=0)


def test_state_dict_roundtrip_full_size(check_round_trip) -> None:
    check_round_trip("grl", 8, _lr((1, 1, 8, 8), seed=5))


def test_bad_overrides() -> None:
    with pytest.raises(ValueError, match="allowed names"):
        build_model("grl", 2, num_heads=[3])
    with pytest.raises(ValueError, match="pixelshuffle"):
        build_model("grl", 2, upsampler="pixelshuffledirect")
