"""The CNN-family networks (bicubic, srcnn, vdsr, drrn, memnet, dfcan, mslapsrn, dbpn, srfbn, prosr).

Layouts against ``trainers/models/reference``, tiny forward/backward, train/eval outputs, the
interpolation rules and the quirks the benchmark's networks have (in-place ReLU, sigmoid, FFT in
fp32, bilinear / bicubic residual bases).
"""

from __future__ import annotations

import cv2
import numpy as np
import pytest
import torch
import torch.nn.functional as F

from srcaco2.trainers.models import build_model
from srcaco2.trainers.models._interp import antialiased_bicubic, opencv_bicubic_uint8, torch_bicubic
from srcaco2.trainers.models.dfcan import fft_power_spectrum

MINE = ["srcnn", "vdsr", "drrn", "memnet", "dfcan", "mslapsrn", "dbpn", "srfbn", "prosr"]
MULTI = {"srfbn", "prosr", "mslapsrn"}
LEVELS = {2: 1, 4: 2, 8: 3}


def _tiny(name: str, scale: int) -> dict:
    """Small widths so that a CPU forward + backward takes milliseconds."""
    return {
        "srcnn": dict(num_features=8, num_map_features=4),
        "vdsr": dict(num_features=8, num_trunk_layers=2),
        "drrn": dict(num_features=8, num_residual_units=3),
        "memnet": dict(num_features=8, num_memory_blocks=2, num_residual_blocks=2),
        "dfcan": dict(num_features=8, num_groups=1, num_blocks=2, reduction_features=2),
        "mslapsrn": dict(num_features=8, num_convs=2),
        "dbpn": dict(base_filter=4, feat=8, num_stages=2),
        "srfbn": dict(num_features=8, num_steps=3, num_groups=2),
        "prosr": dict(num_init_features=8, growth_rate=4, bn_size=2, level_config=[[2]] * LEVELS[scale]),
    }[name]


def _lr(h: int = 12, w: int = 12, seed: int = 0) -> torch.Tensor:
    g = torch.Generator().manual_seed(seed)
    return torch.randint(0, 256, (1, 1, h, w), generator=g).float() / 255.0


@pytest.mark.parametrize("scale", [2, 4, 8])
@pytest.mark.parametrize("name", MINE)
def test_meta_layout_matches_reference(name: str, scale: int, check_reference_layout) -> None:
    check_reference_layout(name, scale)  # every state_dict row, counts, frozen parameters, buffers


@pytest.mark.parametrize("scale", [2, 4, 8])
@pytest.mark.parametrize("name", MINE)
def test_tiny_forward_backward(name: str, scale: int) -> None:
    torch.manual_seed(0)
    model = build_model(name, scale, **_tiny(name, scale)).train()
    h, w = 4, 3
    lr = _lr(h, w)
    out = model(lr)
    if name in MULTI:
        assert isinstance(out, list)
        n = {"srfbn": 3}.get(name, LEVELS[scale])  # srfbn: one per step; others: one per x2 level
        assert len(out) == n
        sizes = [tuple(o.shape[-2:]) for o in out]
        if name == "srfbn":
            assert sizes == [(h * scale, w * scale)] * n
        else:
            assert sizes == [(h * 2**k, w * 2**k) for k in range(1, n + 1)]
        loss = sum(o.square().mean() for o in out)
        final = out[-1]
    else:
        final = out
        loss = out.square().mean()
    assert final.shape == (1, 1, h * scale, w * scale)
    loss.backward()
    unused = {f"init_conv_{k}." for k in range(1, LEVELS[scale])} if name == "prosr" else set()
    grads = [
        p.grad for n, p in model.named_parameters() if p.requires_grad and not n.startswith(tuple(unused))
    ]
    assert grads and all(g is not None and torch.isfinite(g).all() for g in grads)
    assert any(g.abs().sum() > 0 for g in grads)

    model.eval()
    with torch.no_grad():
        a, b = model(lr), model(lr)
    assert isinstance(a, torch.Tensor) and a.shape == (1, 1, h * scale, w * scale)
    assert torch.equal(a, b)
    assert torch.allclose(a, final.detach(), atol=1e-5) or name in {"srcnn", "memnet"}


def _roundtrip(name: str, scale: int = 2) -> None:
    torch.manual_seed(1)
    src = build_model(name, scale).eval()
    with torch.no_grad():  # small random values everywhere (incl. BN statistics): finite outputs
        for key, t in src.state_dict().items():
            if key.endswith("running_var"):
                t.uniform_(0.5, 1.5)
            elif t.is_floating_point():
                t.copy_(torch.randn_like(t) * 0.02)
    dst = build_model(name, scale)
    dst.load_state_dict(src.state_dict(), strict=True)
    dst.eval()
    lr = _lr(3, 3, seed=3)
    with torch.no_grad():
        a = src(lr)
        assert torch.isfinite(a).all() and a.shape == (1, 1, 3 * scale, 3 * scale)
        assert torch.equal(a, dst(lr))


@pytest.mark.parametrize("name", MINE)
def test_full_size_state_dict_roundtrip(name: str) -> None:
    _roundtrip(name)


# --------------------------------------------------------------------------- interpolation rules
def test_opencv_uint8_rule_matches_cv2() -> None:
    rng = np.random.default_rng(0)
    for s in (2, 4, 8):
        lr8 = rng.integers(0, 256, (13, 17), dtype=np.uint8)
        ref = cv2.resize(lr8, (17 * s, 13 * s), interpolation=cv2.INTER_CUBIC)
        ours = opencv_bicubic_uint8(torch.from_numpy(lr8)[None, None].float() / 255, s)
        ours8 = torch.round(ours[0, 0] * 255).to(torch.uint8).numpy()
        assert np.mean(ours8 != ref) < 1e-4  # rounding ties only
        assert np.abs(ours8.astype(int) - ref).max() <= 1


def test_torch_bicubic_matches_cv2_float() -> None:
    rng = np.random.default_rng(1)
    lr = rng.random((9, 11), dtype=np.float32)
    ref = np.clip(cv2.resize(lr, (44, 36), interpolation=cv2.INTER_CUBIC), 0, 1)
    ours = torch_bicubic(torch.from_numpy(lr)[None, None], 4)[0, 0].numpy()
    np.testing.assert_allclose(ours, ref, atol=1e-5)


def test_bicubic_baseline_is_antialiased_a_minus_half() -> None:
    lr = _lr(10, 14)
    model = build_model("bicubic", 4)
    out = model(lr)
    assert out.shape == (1, 1, 40, 56) and out.min() >= 0 and out.max() <= 1
    expected = F.interpolate(lr, scale_factor=4, mode="bicubic", antialias=True).clamp(0, 1)
    assert torch.equal(out, expected)
    assert (out - torch_bicubic(lr, 4)).abs().max() > 1e-3  # not the a=-0.75 kernel
    flat = antialiased_bicubic(torch.full((1, 1, 5, 5), 0.4), 2)
    assert torch.allclose(flat, torch.full((1, 1, 10, 10), 0.4), atol=1e-6)
    assert list(model.state_dict()) == []


# ---------------------------------------------------------------------------------- quirks
def test_srcnn_eval_input_is_uint8_rounded_train_is_not() -> None:
    model = build_model("srcnn", 2, num_features=4, num_map_features=3)
    lr = _lr(6, 6)
    model.eval()
    x = model.upsample(lr)
    assert torch.equal(x, torch.round(x * 255) / 255)
    with torch.no_grad():
        expected = model.reconstruction(model.map(model.features(opencv_bicubic_uint8(lr, 2))))
        assert torch.equal(model(lr), expected)
    model.train()
    xt = model.upsample(lr)
    assert torch.equal(xt, torch_bicubic(lr, 2)) and not torch.equal(xt, x)


@pytest.mark.parametrize("name", ["vdsr", "drrn", "memnet"])
def test_pre_upsampling_global_residual_on_clamped_bicubic(name: str) -> None:
    model = build_model(name, 4, **_tiny(name, 4)).eval()
    last = [m for m in model.modules() if isinstance(m, torch.nn.Conv2d)][-1]
    with torch.no_grad():
        last.weight.zero_()
        lr = _lr(5, 7)
        assert torch.equal(model(lr), torch_bicubic(lr, 4))


def test_drrn_skip_is_the_rectified_trunk_input() -> None:
    """The original's in-place ReLU rectifies the trunk input x, so every recursion adds relu(x)."""
    model = build_model("drrn", 2, num_features=6, num_residual_units=3).eval()
    lr = _lr(5, 5)
    unit = model.trunk.residual_unit
    with torch.no_grad():
        up = torch_bicubic(lr, 2)
        x = model.conv1(up)
        out = x.clone()
        for _ in range(3):
            out = unit[3](F.relu(unit[1](F.relu(out)))) + F.relu(x)
        expected = model.conv2(out) + up
        assert torch.allclose(model(lr), expected, atol=1e-6)
        wrong = x.clone()
        for _ in range(3):
            wrong = unit[3](F.relu(unit[1](F.relu(wrong)))) + x
        assert not torch.allclose(model.conv2(wrong) + up, expected, atol=1e-4)


def test_memnet_runs_each_recursive_unit_num_residual_blocks_times() -> None:
    model = build_model("memnet", 2, num_features=4, num_memory_blocks=1, num_residual_blocks=3).eval()
    calls = []
    model.dense_memory_blocks[0].recursive_unit[0].register_forward_hook(lambda *a: calls.append(1))
    model(_lr(4, 4))
    assert len(calls) == 3
    assert model.dense_memory_blocks[0].gate_unit[2].in_channels == (3 + 1) * 4


def test_dfcan_spectrum_shift_and_fp32_under_autocast() -> None:
    for h, w in [(6, 8), (5, 7)]:
        x = torch.rand(2, 3, h, w, dtype=torch.float64)
        amp = (torch.fft.fftn(x, dim=(2, 3)).abs() + 1e-8) ** 0.8
        shift = torch.fft.fftshift if h % 2 == 0 else torch.fft.ifftshift
        assert torch.allclose(fft_power_spectrum(x), shift(amp, dim=(2, 3)))
    with torch.autocast("cpu", dtype=torch.bfloat16):
        f = fft_power_spectrum(torch.rand(1, 2, 5, 6).to(torch.bfloat16))
    assert f.dtype == torch.float32
    model = build_model("dfcan", 2, **_tiny("dfcan", 2)).eval()
    with torch.no_grad(), torch.autocast("cpu", dtype=torch.bfloat16):
        out = model(_lr(5, 7))
    assert torch.isfinite(out.float()).all()
    out = model(_lr(5, 7))
    assert out.min() > 0 and out.max() < 1  # sigmoid output


def test_srfbn_base_is_bilinear_and_runs_on_cpu() -> None:
    model = build_model("srfbn", 4, **_tiny("srfbn", 4)).eval()
    with torch.no_grad():
        model.conv_out[0].weight.zero_()
        model.conv_out[0].bias.zero_()
        lr = _lr(6, 5)
        expected = F.interpolate(lr, scale_factor=4, mode="bilinear", align_corners=False)
        assert torch.allclose(model(lr), expected, atol=1e-7)


def test_prosr_levels_add_clamped_bicubic_and_use_only_last_init_conv() -> None:
    model = build_model("prosr", 8, **_tiny("prosr", 8))
    with torch.no_grad():
        for k in (1, 2, 3):
            getattr(model, f"reconst_{k}").final_conv.conv[1].weight.zero_()
            getattr(model, f"reconst_{k}").final_conv.conv[1].bias.zero_()
        lr = _lr(4, 6)
        outs = model.train()(lr)
        for k, o in enumerate(outs, start=1):
            assert torch.equal(o, torch_bicubic(lr, 2**k))
        model.eval()
        before = model(lr)
        model.init_conv_1.conv[1].weight.add_(1.0)  # unused at x8
        assert torch.equal(model(lr), before)
    assert isinstance(model.init_conv_3.conv[0], torch.nn.ReflectionPad2d)
    with pytest.raises(ValueError, match="at least 2x2"):
        model(_lr(1, 5))


def test_mslapsrn_is_single_channel_and_levels_do_not_share_weights() -> None:
    with pytest.raises(ValueError, match="single-channel"):
        build_model("mslapsrn", 2, in_channels=3)
    model = build_model("mslapsrn", 8)
    assert model.laplacian_pyramid_conv1[0].cl[0].weight is not model.laplacian_pyramid_conv4[0].cl[0].weight


def test_dbpn_units_are_shared_across_stages() -> None:
    a = build_model("dbpn", 2, base_filter=4, feat=8, num_stages=1)
    b = build_model("dbpn", 2, base_filter=4, feat=8, num_stages=3)
    na, nb = (sum(p.numel() for p in m.parameters()) for m in (a, b))
    assert nb - na == 2 * 4 * 9  # only output_conv's input widens (3 * 4 instead of 4 channels)


def test_unknown_override_names_allowed_ones() -> None:
    with pytest.raises(ValueError, match="num_residual_units"):
        build_model("drrn", 2, n_feats=3)
