"""EDSR-LIIF: reference layout, tiny forward/backward, LIIF query semantics, chunked decoding."""

from __future__ import annotations

import pytest
import torch

from srcaco2.trainers.models.edsr_liif import make_coord
from srcaco2.trainers.models.registry import build_model, model_info

TINY = model_info("edsr_liif").tiny_overrides(2)  # the registry's tiny config (one home)


@pytest.mark.parametrize("scale", [2, 4, 8])
def test_layout_matches_reference(scale: int, check_reference_layout) -> None:
    check_reference_layout("edsr_liif", scale)  # every state_dict row, counts, frozen, buffers
    assert model_info("edsr_liif").pre_upsampling is None


def test_overrides_are_checked() -> None:
    with pytest.raises(ValueError, match="allowed overrides: .*cell_decode"):
        build_model("edsr_liif", 2, depth=3)
    with pytest.raises(ValueError, match="builder arguments"):
        build_model("edsr_liif", 2, in_chans=3)


@pytest.mark.parametrize("scale", [2, 4, 8])
def test_tiny_forward_backward(scale: int, check_tiny_forward_backward) -> None:
    check_tiny_forward_backward("edsr_liif", scale, TINY, (2, 1, 5, 6))


def test_make_coord_is_pixel_centres() -> None:
    c = make_coord((2, 4))
    assert c.shape == (8, 2)
    torch.testing.assert_close(c[:, 0], torch.tensor([-0.5] * 4 + [0.5] * 4))
    torch.testing.assert_close(c[:4, 1], torch.tensor([-0.75, -0.25, 0.25, 0.75]))


def test_chunked_decoding_equals_one_pass() -> None:
    torch.manual_seed(0)
    model = build_model("edsr_liif", 4, **TINY).eval()
    x = torch.rand(2, 1, 5, 7)
    with torch.no_grad():
        model.query_chunk = 10**9
        one_pass = model(x)
        model.query_chunk = 37  # does not divide 20*28
        chunked = model(x)
    torch.testing.assert_close(chunked, one_pass, rtol=1e-6, atol=1e-7)


def test_local_ensemble_weights_sum_to_one() -> None:
    # With a constant MLP the area-weighted blend of the 4 neighbours must return the constant.
    torch.manual_seed(0)
    model = build_model("edsr_liif", 2, **TINY).eval()
    last = model.imnet.layers[-1]
    with torch.no_grad():
        last.weight.zero_()
        last.bias.fill_(0.37)
        y = model(torch.rand(1, 1, 4, 5))
    torch.testing.assert_close(y, torch.full_like(y, 0.37))


def test_without_ensemble_each_hr_pixel_reads_its_lr_pixel() -> None:
    # local_ensemble/feat_unfold/cell_decode off: HR pixel (i, j) decodes the feature of LR pixel
    # (i // s, j // s) with its offset from that pixel's centre, in LR pixel units.
    torch.manual_seed(0)
    s, h, w = 4, 3, 5
    model = build_model(
        "edsr_liif", s, **TINY, local_ensemble=False, feat_unfold=False, cell_decode=False
    ).eval()
    x = torch.rand(1, 1, h, w)
    with torch.no_grad():
        y = model(x)
        feat = model.encoder(x)[0]  # (c, h, w)
        ii, jj = torch.meshgrid(torch.arange(h * s), torch.arange(w * s), indexing="ij")
        fy, fx = ii // s, jj // s
        rel_y = ((ii + 0.5) / (h * s) - (fy + 0.5) / h) * 2 * h
        rel_x = ((jj + 0.5) / (w * s) - (fx + 0.5) / w) * 2 * w
        inp = torch.cat([feat[:, fy, fx].permute(1, 2, 0), torch.stack([rel_y, rel_x], -1).float()], -1)
        expected = model.imnet(inp)[..., 0]
    torch.testing.assert_close(y[0, 0], expected, rtol=1e-5, atol=1e-6)


def test_weights_do_not_depend_on_scale() -> None:
    torch.manual_seed(0)
    a = build_model("edsr_liif", 2, **TINY).eval()
    b = build_model("edsr_liif", 8, **TINY).eval()
    b.load_state_dict(a.state_dict(), strict=True)
    x = torch.rand(1, 1, 4, 4)
    with torch.no_grad():
        assert a(x).shape == (1, 1, 8, 8) and b(x).shape == (1, 1, 32, 32)


def test_full_size_round_trip_gives_identical_outputs(check_round_trip) -> None:
    ya, _, _ = check_round_trip("edsr_liif", 2, torch.rand(1, 1, 6, 5), repeat=True)  # strict, deterministic
    assert ya.shape == (1, 1, 12, 10)


@pytest.mark.parametrize("scale", [2, 4])
def test_local_ensemble_with_value_decoder_is_bilinear_interpolation(scale: int) -> None:
    # An MLP that returns feature channel 0 turns the 4-neighbour blend into bilinear interpolation
    # (align_corners=False, edge-clamped) iff each neighbour is weighted by its DIAGONALLY OPPOSITE
    # area; unswapped areas would weight the farthest neighbour most.
    torch.manual_seed(0)
    model = build_model(
        "edsr_liif", scale, n_feats=3, n_resblocks=1, hidden_list=[2], feat_unfold=False, cell_decode=False
    ).eval()
    first, last = model.imnet.layers[0], model.imnet.layers[-1]
    with torch.no_grad():
        for lin in (first, last):
            lin.weight.zero_()
            lin.bias.zero_()
        first.weight[0, 0] = 1.0  # hidden 0 = feature channel 0 (positive, so ReLU passes it)
        last.weight[0, 0] = 1.0
    h, w = 5, 7
    feat = torch.rand(1, 3, h, w) * 0.9 + 0.1
    coord = make_coord((scale * h, scale * w)).unsqueeze(0)
    cell = torch.full_like(coord, 2.0 / (scale * h))
    with torch.no_grad():
        y = model.query_rgb(feat, coord, cell).view(scale * h, scale * w)
    expected = torch.nn.functional.interpolate(
        feat[:, :1], scale_factor=scale, mode="bilinear", align_corners=False
    )[0, 0]
    torch.testing.assert_close(y, expected, rtol=0, atol=1e-5)
