"""srcaco2.kernels.pixel_shuffle: bit-exact equality with torch for every dtype and layout, fused epilogue ==
separate ops, backward == pixel_unshuffle, the module, and bad input (Triton under the interpreter on CPU)."""

from __future__ import annotations

import pytest
import torch
import torch.nn.functional as F
from torch import nn

from srcaco2.kernels._dispatch import interpreter_enabled
from srcaco2.kernels.pixel_shuffle import ACTIVATIONS, PixelShuffle, pixel_shuffle

needs_interp = pytest.mark.skipif(
    not (interpreter_enabled() or torch.cuda.is_available()),
    reason="the Triton path needs CUDA or TRITON_INTERPRET=1 (tests/conftest.py sets it on CPU machines)",
)
DEV = "cuda" if torch.cuda.is_available() else "cpu"
DTYPES = [
    torch.float32,
    torch.float16,
    torch.bfloat16,
    torch.float64,
    torch.uint8,
    torch.int8,
    torch.int16,
    torch.int32,
    torch.int64,
    torch.bool,
]
# fused epilogue vs separate ops: the kernel rounds once, separate half-precision ops round after each op
EPI_TOL = {torch.float32: 2e-6, torch.float64: 1e-12, torch.float16: 2e-3, torch.bfloat16: 1.6e-2}


def _input(dtype: torch.dtype, shape: tuple[int, ...], seed: int) -> torch.Tensor:
    g = torch.Generator().manual_seed(seed)
    x = torch.randn(shape, generator=g, dtype=torch.float64) * 50
    if dtype.is_floating_point:
        x = x.to(dtype)
        flat = x.view(-1)
        flat[:4] = torch.tensor([float("nan"), -0.0, float("inf"), -float("inf")], dtype=dtype)
        return x
    if dtype == torch.bool:
        return x > 0
    return x.round().clamp(torch.iinfo(dtype).min, torch.iinfo(dtype).max).to(dtype)


def _same_bits(a: torch.Tensor, b: torch.Tensor) -> bool:
    if a.dtype.is_floating_point:
        ints = {2: torch.int16, 4: torch.int32, 8: torch.int64}[a.element_size()]
        a, b = a.contiguous().view(ints), b.contiguous().view(ints)
    return a.shape == b.shape and torch.equal(a, b)


@needs_interp
@pytest.mark.parametrize("dtype", DTYPES, ids=str)
@pytest.mark.parametrize("r", [2, 3, 4])
@pytest.mark.parametrize("layout", ["nchw", "channels_last"])
def test_bit_exact_with_torch(dtype, r, layout):
    x = _input(dtype, (2, 2 * r * r, 3, 5), seed=r)
    if layout == "channels_last":
        x = x.to(memory_format=torch.channels_last)
    got = pixel_shuffle(x.to(DEV), r, backend="triton").cpu()
    want = F.pixel_shuffle(x, r)
    assert got.dtype == dtype
    assert _same_bits(got, want)
    if layout == "channels_last":
        assert got.is_contiguous(memory_format=torch.channels_last)
        assert want.is_contiguous(memory_format=torch.channels_last)


@needs_interp
def test_non_contiguous_and_empty_inputs():
    x = _input(torch.float32, (2, 9, 7, 12), seed=0)[..., ::2]  # stride 2 along W
    assert _same_bits(pixel_shuffle(x.to(DEV), 3, backend="triton").cpu(), F.pixel_shuffle(x, 3))
    xt = _input(torch.float16, (1, 8, 6, 5), seed=1).transpose(2, 3)  # (1, 8, 5, 6), column-major planes
    assert _same_bits(pixel_shuffle(xt.to(DEV), 2, backend="triton").cpu(), F.pixel_shuffle(xt, 2))
    empty = torch.zeros(0, 8, 3, 3)
    assert pixel_shuffle(empty.to(DEV), 2, backend="triton").shape == (0, 2, 6, 6)


@needs_interp
def test_backward_is_pixel_unshuffle():
    x = torch.randn(2, 12, 4, 5, generator=torch.Generator().manual_seed(0)).to(DEV).requires_grad_(True)
    out = pixel_shuffle(x, 2, backend="triton")
    up = torch.randn(out.shape, generator=torch.Generator().manual_seed(1)).to(DEV)
    (gx,) = torch.autograd.grad(out, x, up)
    assert torch.equal(gx, F.pixel_unshuffle(up, 2))


@needs_interp
@pytest.mark.parametrize("activation", ACTIVATIONS)
@pytest.mark.parametrize("dtype", [torch.float32, torch.float16, torch.bfloat16], ids=str)
def test_fused_epilogue_equals_separate_ops(activation, dtype):
    g = torch.Generator().manual_seed(3)
    x = torch.randn(2, 8, 3, 5, generator=g).to(dtype)
    bias = torch.randn(8, generator=g).to(dtype)
    weight = torch.rand(2, generator=g).to(dtype) if activation == "prelu" else None
    kw = {"bias": bias, "activation": activation, "weight": weight, "clamp": (-0.8, 0.9)}
    leaves = [t.clone().requires_grad_(True) for t in (x, bias) + ((weight,) if weight is not None else ())]
    dev = [t.detach().to(DEV).requires_grad_(True) for t in leaves]
    got = pixel_shuffle(
        dev[0],
        2,
        backend="triton",
        bias=dev[1],
        activation=activation,
        weight=dev[2] if weight is not None else None,
        clamp=kw["clamp"],
    )
    want = F.pixel_shuffle(x + bias.view(1, -1, 1, 1), 2)
    act = {
        None: lambda t: t,
        "relu": F.relu,
        "leaky_relu": F.leaky_relu,
        "gelu": F.gelu,
        "sigmoid": torch.sigmoid,
        "prelu": lambda t: F.prelu(t, weight),
    }[activation]
    want = act(want).clamp(-0.8, 0.9)
    assert got.dtype == dtype
    torch.testing.assert_close(got.cpu(), want, rtol=0, atol=EPI_TOL[dtype])
    # gradients of the fused op (recomputed in torch) against autograd through the separate ops
    up = torch.randn(got.shape, generator=g).to(dtype)
    ref = pixel_shuffle(
        leaves[0],
        2,
        backend="torch",
        bias=leaves[1],
        activation=activation,
        weight=leaves[2] if weight is not None else None,
        clamp=kw["clamp"],
    )
    for a, b in zip(torch.autograd.grad(got, dev, up.to(DEV)), torch.autograd.grad(ref, leaves, up)):
        torch.testing.assert_close(a.cpu(), b, rtol=0, atol=EPI_TOL[dtype] * max(1.0, b.abs().max().item()))


def test_module_has_no_parameters_and_matches_torch():
    m = PixelShuffle(3)
    assert list(m.parameters()) == [] and m.state_dict() == {}
    assert repr(m) == "PixelShuffle(upscale_factor=3)"
    x = torch.randn(1, 18, 4, 3, generator=torch.Generator().manual_seed(0))
    assert torch.equal(m(x), nn.PixelShuffle(3)(x))
    assert torch.equal(pixel_shuffle(x, 3), F.pixel_shuffle(x, 3))  # auto on CPU: the torch path


@pytest.mark.parametrize(
    ("args", "kwargs", "exc", "match"),
    [
        ((torch.zeros(8, 3, 3), 2), {}, ValueError, r"4 dims"),
        ((torch.zeros(1, 6, 3, 3), 2), {}, ValueError, r"divisible by r²=4, got C=6"),
        ((torch.zeros(1, 4, 3, 3), 0), {}, ValueError, "r must be an int >= 1"),
        ((torch.zeros(1, 4, 3, 3), 2.0), {}, ValueError, "r must be an int >= 1"),
        ((torch.zeros(1, 4, 3, 3, dtype=torch.complex64), 2), {}, TypeError, "dtype must be one of"),
        ((torch.zeros(1, 4, 3, 3, dtype=torch.int32), 2), {"activation": "relu"}, TypeError, "floating"),
        ((torch.zeros(1, 4, 3, 3), 2), {"activation": "tanh"}, ValueError, "'relu', 'leaky_relu'"),
        ((torch.zeros(1, 4, 3, 3), 2), {"bias": torch.zeros(1)}, ValueError, r"\(4,\) tensor"),
        ((torch.zeros(1, 4, 3, 3), 2), {"activation": "prelu"}, ValueError, "weight is required"),
        (
            (torch.zeros(1, 8, 3, 3), 2),
            {"activation": "prelu", "weight": torch.ones(3)},
            ValueError,
            r"\(1,\) or \(2,\)",
        ),
        ((torch.zeros(1, 4, 3, 3), 2), {"clamp": (1.0, 0.0)}, ValueError, "lo <= hi"),
        (([[1.0]], 2), {}, TypeError, "torch.Tensor"),
    ],
)
def test_bad_input(args, kwargs, exc, match):
    with pytest.raises(exc, match=match):
        pixel_shuffle(*args, **kwargs)


@needs_interp
@pytest.mark.parametrize(
    ("shape", "r", "layout"),
    [
        ((2, 8, 40, 300), 2, "nchw"),  # OW 600: 2 programs along W (512 columns), 20 along H (4 rows)
        ((1, 18, 50, 7), 3, "nchw"),  # OH 150, OW 21: 2 programs along H
        ((1, 65 * 4, 3, 20), 2, "channels_last"),  # C_out 65: 2 programs along C; OW 40: 2 along W
    ],
)
def test_spans_several_programs(shape, r, layout):
    from srcaco2.kernels.pixel_shuffle import config

    x = _input(torch.float32, shape, seed=7)
    if layout == "channels_last":
        x = x.to(memory_format=torch.channels_last)
    b, c, h, w = shape
    br, bw, _ = config(c // (r * r), h * r, w * r, layout == "channels_last")
    grid = (
        (-(-w * r // br), -(-c // (r * r) // bw))
        if layout == "channels_last"
        else (-(-h * r // br), -(-w * r // bw))
    )
    assert max(grid) >= 2
    assert _same_bits(pixel_shuffle(x.to(DEV), r, backend="triton").cpu(), F.pixel_shuffle(x, r))
    bias = torch.randn(c, generator=torch.Generator().manual_seed(1))
    got = pixel_shuffle(
        x.to(DEV), r, bias=bias.to(DEV), activation="relu", clamp=(0.0, 1.5), backend="triton"
    )
    want = F.pixel_shuffle(x + bias.view(1, -1, 1, 1), r).relu().clamp(0.0, 1.5)
    torch.testing.assert_close(got.cpu(), want, rtol=0, atol=2e-6, equal_nan=True)


def test_module_fuses_relu_like_a_following_relu():
    x = torch.randn(2, 16, 5, 6, generator=torch.Generator().manual_seed(4))
    m = PixelShuffle(2, activation="relu")
    assert repr(m) == "PixelShuffle(upscale_factor=2, activation='relu')"
    assert torch.equal(m(x), nn.ReLU()(nn.PixelShuffle(2)(x)))
    g = PixelShuffle(2, activation="gelu")
    assert torch.equal(g(x), F.pixel_shuffle(F.gelu(x), 2))  # GELU before or after: the same values
    with pytest.raises(ValueError, match="parameter-free"):
        PixelShuffle(2, activation="prelu")
