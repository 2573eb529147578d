"""Cross-network checks: every registered network at tiny widths (`srcaco2.trainers.models.tiny`).

Per network and scale: odd input sizes and the smallest accepted size, bf16 autocast on CPU,
train-mode forward/backward (multi-output lists, final last), the computed receptive halo against
autograd, and tiled inference (`srcaco2.trainers.predict.predict_tiled`) against whole-image inference:
exact (±1 in 8 bits) for local networks with halo >= the receptive radius, small and seam-free
for global / window-attention networks; and a control showing that the seam measure does catch
unblended tiles.
"""

from __future__ import annotations

import math

import numpy as np
import pytest
import torch

from srcaco2.trainers.models import MODEL_NAMES, build_model, model_info
from srcaco2.trainers.models.tiny import (
    GLOBAL_MODELS,
    TINY_OVERRIDES,
    min_input_size,
    receptive_halo,
    tiny_overrides,
)
from srcaco2.trainers.predict import predict_tiled
from srcaco2.trainers.tiling import input_grid, plan_tiling, tile_starts

SCALES = (2, 4)
CASES = [(n, s) for n in MODEL_NAMES for s in SCALES]
LOCAL = [n for n in MODEL_NAMES if n not in GLOBAL_MODELS]
# Parameters that exist (for strict checkpoint loading) but that forward never uses.
_UNUSED = {
    "act": lambda s, ov: {f"cnn_branch.{ov['n_resgroups']}.weight", f"cnn_branch.{ov['n_resgroups']}.bias"},
    "prosr": lambda s, ov: {
        f"init_conv_{k}.conv.1.{p}" for k in range(1, int(math.log2(s))) for p in ("weight", "bias")
    },
}


pytestmark = pytest.mark.usefixtures("one_thread")


def _build(name: str, scale: int, seed: int = 0) -> torch.nn.Module:
    torch.manual_seed(seed)
    return build_model(name, scale, **tiny_overrides(name, scale))


def _reseed(model: torch.nn.Module, name: str, seed: int = 0) -> None:
    """NLSN draws LSH rotations in every forward: pin them to a generator."""
    if name == "nlsn":
        model.generator = torch.Generator().manual_seed(seed)


def _lr(h: int, w: int, seed: int = 0) -> torch.Tensor:
    """Smooth-ish random LR image (1, 1, h, w) in [0, 1]: noise plus a gradient."""
    g = torch.Generator().manual_seed(seed)
    ramp = torch.linspace(0, 1, w)[None, :] * torch.linspace(0.3, 1, h)[:, None]
    return (0.6 * ramp + 0.4 * torch.rand(h, w, generator=g))[None, None]


def test_every_registered_network_has_a_tiny_configuration() -> None:
    assert set(TINY_OVERRIDES) == set(MODEL_NAMES)
    a, b = tiny_overrides("prosr", 4), tiny_overrides("prosr", 4)
    a["level_config"].append([1])
    assert b["level_config"] == [[2], [2]]  # fresh copies


# ---------------------------------------------------------------------------------------- shapes
@pytest.mark.parametrize(("name", "scale"), CASES)
def test_odd_sizes_and_smallest_input(name: str, scale: int) -> None:
    model = _build(name, scale).eval()
    n0 = min_input_size(name, tiny_overrides(name, scale))
    sizes = [(23, 29), (n0, n0 + 2)]
    for h, w in sizes:
        _reseed(model, name)
        with torch.no_grad():
            out = model(_lr(h, w))
        assert isinstance(out, torch.Tensor) and out.shape == (1, 1, scale * h, scale * w), (h, w)
        assert torch.isfinite(out).all(), (h, w)


@pytest.mark.parametrize("name", [n for n in MODEL_NAMES if min_input_size(n, TINY_OVERRIDES[n]) > 1])
def test_below_smallest_input_is_a_clear_value_error(name: str) -> None:
    model = _build(name, 2).eval()
    n0 = min_input_size(name, tiny_overrides(name, 2))
    _reseed(model, name)
    with torch.no_grad(), pytest.raises(ValueError, match=r"\d+x\d+"):
        model(_lr(n0 - 1, n0 - 1))


def test_min_input_size_of_the_benchmark_networks() -> None:
    got = {n: min_input_size(n) for n in MODEL_NAMES}
    assert got["nlsn"] == 12 and got["act"] == 6 and got["omnisr"] == 9 and got["swinir"] == 3
    assert got["prosr"] == 2 and got["vdsr"] == 1 and got["dbpn"] == 1


# ------------------------------------------------------------------------------------------- AMP
@pytest.mark.parametrize(("name", "scale"), CASES)
def test_bf16_autocast_is_finite_and_close_to_fp32(name: str, scale: int) -> None:
    model = _build(name, scale).eval()
    x = _lr(23, 29)
    _reseed(model, name)
    with torch.no_grad():
        ref = model(x)
    _reseed(model, name)
    with torch.no_grad(), torch.autocast("cpu", dtype=torch.bfloat16):
        low = model(x)
    assert low.shape == ref.shape and torch.isfinite(low).all()
    err = (low.float() - ref).abs().mean().item()
    assert err <= 0.02 * ref.abs().mean().item() + 1e-3, err
    if any(True for _ in model.parameters()):
        assert not torch.equal(low.float(), ref)  # autocast did run the convs in bf16


# ------------------------------------------------------------------------------- train + backward
@pytest.mark.parametrize(("name", "scale"), CASES)
def test_train_forward_backward(name: str, scale: int) -> None:
    model = _build(name, scale).train()
    info = model_info(name)
    h, w = 11, 13
    x = _lr(h, w, seed=1)
    _reseed(model, name)
    out = model(x)
    if info.multi_output:
        assert isinstance(out, list)
        ov = tiny_overrides(name, scale)
        if name == "srfbn":
            sizes = [(scale * h, scale * w)] * ov["num_steps"]
        else:  # one output per x2 pyramid level
            sizes = [(2**k * h, 2**k * w) for k in range(1, int(math.log2(scale)) + 1)]
        assert [tuple(o.shape) for o in out] == [(1, 1, *hw) for hw in sizes]
        model.eval()
        with torch.no_grad():
            final = model(x)
        torch.testing.assert_close(final, out[-1].detach(), rtol=1e-5, atol=1e-5)  # final last
    else:
        assert isinstance(out, torch.Tensor) and out.shape == (1, 1, scale * h, scale * w)
        out = [out]
    params = {n: p for n, p in model.named_parameters() if p.requires_grad}
    if not params:
        assert name == "bicubic"
        return
    sum(o.square().mean() for o in out).backward()
    unused = _UNUSED.get(name, lambda s, ov: set())(scale, tiny_overrides(name, scale))
    assert {n for n, p in params.items() if p.grad is None} == unused
    grads = [p.grad for n, p in params.items() if n not in unused]
    assert all(torch.isfinite(g).all() for g in grads)
    assert sum(bool(g.abs().sum() > 0) for g in grads) >= 0.8 * len(grads)


# ------------------------------------------------------------------------------- receptive halo
def _measured_radius(model: torch.nn.Module, scale: int, n: int, grid: int = 1) -> int:
    """Largest autograd support radius of the output pixels of one LR pixel, over `grid` phases."""
    radius = 0
    c0 = (n // 2) // grid * grid
    for c in range(c0, c0 + grid):
        x = torch.rand(1, 1, n, n, generator=torch.Generator().manual_seed(2), requires_grad=True)
        model(x)[0, 0, c * scale : (c + 1) * scale, c * scale : (c + 1) * scale].sum().backward()
        support = (x.grad[0, 0] != 0).nonzero()
        radius = max(radius, int((support - c).abs().max()))
    return radius


@pytest.mark.parametrize(("name", "scale"), [(n, s) for n in LOCAL for s in (2, 4, 8)])
def test_receptive_halo_equals_autograd_support(name: str, scale: int) -> None:
    """The reach declared at registration (computed layer by layer) is the measured one, exactly:
    at the worst phase of the window grid for SwinIR (crops start on the grid)."""
    ov = tiny_overrides(name, scale)
    r = receptive_halo(name, scale, ov)
    assert isinstance(r, int) and r >= 1
    model = _build(name, scale)
    model.train() if name == "srcnn" else model.eval()  # SRCNN's eval input is rounded (zero grad)
    grid = model_info(name).input_grid
    assert _measured_radius(model, scale, 2 * r + 7 + 2 * grid, grid) == r


def test_receptive_halo_of_the_benchmark_networks() -> None:
    assert all(receptive_halo(n, 4) is None for n in GLOBAL_MODELS)
    # bicubic: 4 taps; VDSR: 20 HR convs -> 10 LR px at x2 plus the bicubic taps
    assert receptive_halo("bicubic", 8) == 2 and receptive_halo("vdsr", 2) == 12
    assert receptive_halo("edsr_liif", 2) == 2 * 16 + 3 + 1
    deeper = receptive_halo("drrn", 2, {"num_residual_units": 30})
    assert deeper > receptive_halo("drrn", 2) > receptive_halo("drrn", 4)


# --------------------------------------------------------------------------------------- tiling
def _to_unit(model: torch.nn.Module, x: torch.Tensor, name: str) -> tuple[object, np.ndarray]:
    """Wrap `model` with a fixed affine map that puts its whole-image output in [0, 1].

    Random tiny networks give outputs far outside [0, 1] (8-bit quantisation would clip them
    all); an affine map of the output changes nothing about locality. Returns the wrapped model
    and its whole-image 8-bit result (C, s*h, s*w).
    """
    _reseed(model, name, 7)
    with torch.no_grad():
        whole = model(x)
    lo, hi = torch.quantile(whole.flatten(), 0.01).item(), torch.quantile(whole.flatten(), 0.99).item()
    span = max(hi - lo, 1e-12)

    def wrapped(batch: torch.Tensor) -> torch.Tensor:
        return (model(batch) - lo) / span

    ref = np.round(np.clip(((whole - lo) / span)[0].numpy(), 0, 1) * 255).astype(np.uint8)
    assert ref.std() > 20  # the comparison is not vacuous
    return wrapped, ref


def _seam_jumps(
    tiled: np.ndarray, ref: np.ndarray, cuts_y: list[int], cuts_x: list[int]
) -> tuple[float, float]:
    """Mean |jump| of the 8-bit error across tile-border lines vs across all other lines.

    ``d = tiled - ref``; a seam is a step of ``d`` between the two HR pixels on either side of a
    core border (``cuts``, HR px). Blended tiles change ``d`` smoothly; cut-and-paste tiles jump.
    """
    d = tiled.astype(np.float64)[0] - ref.astype(np.float64)[0]
    jx, jy = np.abs(np.diff(d, axis=1)), np.abs(np.diff(d, axis=0))  # jump into column/row i+1
    sx, sy = np.zeros(jx.shape[1], bool), np.zeros(jy.shape[0], bool)
    sx[[c - 1 for c in cuts_x]] = True
    sy[[c - 1 for c in cuts_y]] = True
    seam = np.concatenate([jx[:, sx].ravel(), jy[sy].ravel()]).mean()
    rest = np.concatenate([jx[:, ~sx].ravel(), jy[~sy].ravel()]).mean()
    return float(seam), float(rest)


def _cuts(n: int, tile: int, overlap: int, scale: int) -> list[int]:
    starts = tile_starts(n, tile, overlap)
    return sorted({scale * c for x in starts for c in (x, x + tile) if 0 < c < n})


_SLOW_TILING = {("dbpn", 2), ("dbpn", 4), ("dbpn", 8), ("srfbn", 8), ("edsr_liif", 8), ("swinir", 8)}


@pytest.mark.parametrize(
    ("name", "scale"),
    [
        pytest.param(n, s, marks=[pytest.mark.slow] if (n, s) in _SLOW_TILING else [])
        for n in MODEL_NAMES
        for s in (2, 4, 8)
    ],
)
def test_tiled_equals_whole_image_at_default_settings(name: str, scale: int) -> None:
    """`plan_tiling`'s defaults (the registry's receptive halo and grid; whole-image context for a
    global network) make tiled inference equal to whole-image inference within 1 grey level, on
    images of several tiles per axis whose crops are smaller than the image."""
    ov = tiny_overrides(name, scale)
    info = model_info(name)
    halo = info.receptive_halo(scale, ov)
    grid = info.input_grid
    tile = -(-max(8, (halo or 0) // 2, info.min_input_size(ov)) // grid) * grid
    plan = plan_tiling(name, scale, overrides=ov, tile=tile, overlap=2)
    assert plan.halo == halo and plan.align == grid and plan.exact
    n = 2 * (halo or 0) + 3 * tile + 3
    h, w = n, n + 2
    assert len(tile_starts(h, tile, 2)) >= 3 and len(tile_starts(w, tile, 2)) >= 3
    model = _build(name, scale).eval()
    x = _lr(h, w, seed=3)
    wrapped, ref = _to_unit(model, x, name)
    _reseed(model, name, 7)
    tiled = predict_tiled(
        wrapped, x[0], scale, tile=plan.tile, overlap=plan.overlap, halo=plan.halo, align=plan.align,
        batch_size=4,
    )  # fmt: skip
    diff = np.abs(tiled.astype(int) - ref.astype(int))
    assert diff.max() <= 1, (diff.max(), (diff > 1).mean())
    assert (diff > 0).mean() < 0.01
    if plan.halo and scale == 2:  # control: without the halo, tiles are not exact
        cut = predict_tiled(wrapped, x[0], scale, tile=plan.tile, overlap=plan.overlap, halo=0,
                            align=plan.align)  # fmt: skip
        assert np.abs(cut.astype(int) - ref.astype(int)).max() > 1


def _has_seam(seam: float, rest: float) -> bool:
    """The criterion of the tiling tests: jumps across core borders clearly above those elsewhere."""
    return seam > 1.5 * rest + 0.5


@pytest.mark.parametrize("name", ["vdsr", "dfcan"])
def test_seam_measure_catches_unblended_tiles(name: str) -> None:
    """Control: cores cut and pasted (no halo, no overlap) leave seams that the criterion sees;
    with blending (and, for the local VDSR, its receptive halo) the same tiling has none."""
    scale, tile, h, w = 2, 10, 31, 37
    model = _build(name, scale).eval()
    x = _lr(h, w, seed=4)
    wrapped, ref = _to_unit(model, x, name)
    cut = predict_tiled(wrapped, x[0], scale, tile=tile, overlap=0, halo=0)
    assert _has_seam(*_seam_jumps(cut, ref, _cuts(h, tile, 0, scale), _cuts(w, tile, 0, scale)))
    halo = receptive_halo(name, scale, tiny_overrides(name, scale)) or 6
    good = predict_tiled(wrapped, x[0], scale, tile=tile, overlap=4, halo=halo)
    assert not _has_seam(*_seam_jumps(good, ref, _cuts(h, tile, 4, scale), _cuts(w, tile, 4, scale)))
    if name == "vdsr":
        assert np.abs(good.astype(int) - ref.astype(int)).max() <= 1


# Window-attention networks see their window / token grid at a phase that depends on where a crop
# starts; `predict_tiled(align=input_grid(name))` starts every crop on that grid (without it ACT and
# GRL tiles disagreed with the whole image by a mean of ~4-36 gray levels although blending left no
# seam — see test_unaligned_crops_disagree_for_grid_networks).
_MAD_LIMIT = 4.0  # 8-bit gray levels, mean over the image (random tiny weights, halo 8, overlap 8)


@pytest.mark.parametrize(
    ("name", "scale"),
    [(n, s) for n in sorted(GLOBAL_MODELS) for s in SCALES],
)
def test_tiled_close_to_whole_image_without_seams_for_global_networks(name: str, scale: int) -> None:
    tile, overlap, halo = 16, 8, 8
    h, w = 37, 43
    model = _build(name, scale).eval()
    x = _lr(h, w, seed=5)
    wrapped, ref = _to_unit(model, x, name)
    _reseed(model, name, 7)
    tiled = predict_tiled(
        wrapped, x[0], scale, tile=tile, overlap=overlap, halo=halo, batch_size=1, align=input_grid(name)
    )
    seam, rest = _seam_jumps(tiled, ref, _cuts(h, tile, overlap, scale), _cuts(w, tile, overlap, scale))
    assert not _has_seam(seam, rest), (seam, rest)
    mad = np.abs(tiled.astype(float) - ref).mean()
    assert mad < _MAD_LIMIT, mad


@pytest.mark.parametrize("name", ["act", "grl"])
def test_unaligned_crops_disagree_for_grid_networks(name: str) -> None:
    """The control of the test above: without `align`, crops see the grid at other phases."""
    scale, tile, overlap, halo, h, w = 2, 16, 8, 8, 37, 43
    model = _build(name, scale).eval()
    x = _lr(h, w, seed=5)
    wrapped, ref = _to_unit(model, x, name)
    tiled = predict_tiled(wrapped, x[0], scale, tile=tile, overlap=overlap, halo=halo, batch_size=1)
    assert np.abs(tiled.astype(float) - ref).mean() > _MAD_LIMIT


@pytest.mark.parametrize("name", ["act", "grl", "omnisr", "swinir"])
def test_grid_aligned_tiles_match_whole_image_for_window_networks(name: str) -> None:
    """Crop origins on multiples of 24 (= lcm of the 8x8 windows and ACT's 3x3 tokens): tile=32,
    overlap=8, halo=24 on an 80x80 image gives cores at 0, 24, 48 and crops at 0, 0, 24."""
    scale, tile, overlap, halo, n = 2, 32, 8, 24, 80
    assert [max(x - halo, 0) % 24 for x in tile_starts(n, tile, overlap)] == [0, 0, 0]
    model = _build(name, scale).eval()
    x = _lr(n, n, seed=5)
    wrapped, ref = _to_unit(model, x, name)
    tiled = predict_tiled(wrapped, x[0], scale, tile=tile, overlap=overlap, halo=halo, batch_size=1)
    seam, rest = _seam_jumps(tiled, ref, _cuts(n, tile, overlap, scale), _cuts(n, tile, overlap, scale))
    assert not _has_seam(seam, rest), (seam, rest)
    assert np.abs(tiled.astype(float) - ref).mean() < 1.0
