"""ACT: reference layout, tiny forward/backward, unused cnn_branch conv, token-size quirk."""

from __future__ import annotations

import pytest
import torch

from srcaco2.trainers.models.registry import build_model, model_info

TINY = model_info("act").tiny_overrides(2)  # the registry's tiny config (one home)


@pytest.mark.parametrize("scale", [2, 4, 8])
def test_layout_matches_reference(scale: int, check_reference_layout) -> None:
    check_reference_layout("act", scale)  # every state_dict row, counts, frozen, buffers
    assert model_info("act").family == "post-upsampling"


def test_overrides_are_checked() -> None:
    with pytest.raises(ValueError, match="allowed overrides: .*token_size"):
        build_model("act", 2, embed_dim=12)
    with pytest.raises(ValueError, match="n_fusionblocks"):
        build_model("act", 2, **dict(TINY, n_layers=2))


@pytest.mark.parametrize("scale", [2, 4, 8])
def test_tiny_forward_backward(scale: int, check_tiny_forward_backward) -> None:
    unused = {"cnn_branch.2.weight", "cnn_branch.2.bias"}  # the final conv of cnn_branch
    check_tiny_forward_backward("act", scale, TINY, (2, 1, 7, 8), unused=unused)


def test_final_cnn_branch_conv_does_not_affect_output() -> None:
    torch.manual_seed(0)
    model = build_model("act", 2, **TINY).eval()
    x = torch.rand(1, 1, 9, 7)
    with torch.no_grad():
        a = model(x)
        model.cnn_branch[-1].weight.normal_()
        model.cnn_branch[-1].bias.normal_()
        b = model(x)
        model.fusion_cnn[0][0].bias.add_(0.5)  # a used layer does change it
        c = model(x)
    assert torch.equal(a, b)
    assert not torch.allclose(a, c)


def _token_half_of_fusion_input(model: torch.nn.Module, x: torch.Tensor) -> torch.Tensor:
    seen: list[torch.Tensor] = []
    hook = model.fusion_block[0].register_forward_pre_hook(lambda _m, args: seen.append(args[0].clone()))
    try:
        with torch.no_grad():
            model(x)
    finally:
        hook.remove()
    return seen[0][:, model.n_feats :]  # f = cat(cnn, fold(tokens))


@pytest.mark.parametrize(("h", "w"), [(8, 7), (10, 11), (9, 12)])
def test_token_branch_is_zero_on_rows_cols_beyond_a_multiple_of_3(h: int, w: int) -> None:
    # docs/protocol.md#quirks item 11: no padding to a multiple of the token size; F.unfold(k=3, s=3) drops
    # the last h % 3 rows / w % 3 cols and F.fold writes zeros there.
    torch.manual_seed(0)
    model = build_model("act", 2, **TINY).eval()
    tok = _token_half_of_fusion_input(model, torch.rand(1, 1, h, w))
    h3, w3 = h - h % 3, w - w % 3
    assert torch.count_nonzero(tok[..., h3:, :]) == 0
    assert torch.count_nonzero(tok[..., :, w3:]) == 0
    inner = tok[..., :h3, :w3]
    assert torch.count_nonzero(inner) == inner.numel()


def test_too_small_input_raises() -> None:
    model = build_model("act", 2, **TINY)
    with pytest.raises(ValueError, match="at least 6x6"):
        model(torch.rand(1, 1, 5, 9))


def test_full_size_round_trip_gives_identical_outputs(check_round_trip) -> None:
    ya, _, _ = check_round_trip("act", 2, torch.rand(1, 1, 6, 7), repeat=True)  # strict, deterministic
    assert ya.shape == (1, 1, 12, 14)
