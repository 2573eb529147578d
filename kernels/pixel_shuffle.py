"""Pixel shuffle (depth-to-space) with an optional fused epilogue (bias, activation, clamp) in Triton.

Motivation
----------
Every upsampler of the benchmark's networks ends with ``conv → (+bias) → pixel_shuffle → activation``
(and evaluation clamps to [0, 1]). In eager torch that is one read + write per op; fused, it is one.

Bytes moved per output element (b = bytes per element)
------------------------------------------------------
- Eager ``F.pixel_shuffle``: read b + write b (2b; floor of any out-of-place copy). Separate bias, act,
  clamp: + 2b each → 8b for bias + activation + clamp.
- Kernel: 2b for the plain shuffle and for the fused epilogue (the per-channel bias and the PReLU
  weights are a few bytes, cached). Expected speed-up of the fused path ≈ 4× at equal bandwidth.
- Access pattern: the output is written in its own memory order (NCHW or channels_last), fully
  coalesced; the reads gather r² channel planes (NCHW: runs of W/r·… contiguous pixels per channel
  row; channels_last: stride r² within a pixel's channels), each input sector used by the same or a
  neighbouring program, so L2 keeps the read traffic at ≈ b per element.

Launch layout and instruction budget (``python -m srcaco2.benchmarks.kernels --compile-only``)
--------------------------------------------------------------------------------
3-D grid; a program writes a (BR × BW) block: NCHW, BR output rows × BW output columns of one (b, c)
plane; channels_last, BR output columns × BW channels of one output row. The runtime divisions (b, c
or b, oh) happen once per program, the divisions by r (a constexpr: shift / multiply-high) once per
block row or column, so each of the 16 elements per thread (4 warps) costs an add, an address, a
load and a quarter of a 128-bit store. Measured on sm_90 (static SASS / elements per thread): 9.6–14.4
instructions per element for the plain copy (every r, width and layout; budget ≤ 16, met), 128-bit
stores everywhere. The epilogue adds its own arithmetic and is not held to 16: bias + ReLU + clamp
≈ 20, PReLU ≈ 18, GELU (erf) ≈ 45 in bf16 — still far fewer than the 3 extra passes it replaces.
(The former 1-D kernel divided every element's flat index: ≈ 88 instructions per element.)

The copy path moves raw bits (floats are viewed as same-width integers), so the result equals
``torch.nn.functional.pixel_shuffle`` bit for bit for every dtype (NaN payloads and ``-0.0`` included).
The epilogue computes in float32 (float64 for float64) and rounds once, so for half types it may differ
from separate ops (which round after each op) by one rounding step.
"""

from __future__ import annotations

import functools
from typing import Any, Literal

import torch
import torch.nn.functional as F
from torch import nn

from srcaco2.kernels._dispatch import device_guard, jit_kernels, resolve_backend

__all__ = ["pixel_shuffle", "PixelShuffle", "ACTIVATIONS"]

Activation = Literal["relu", "leaky_relu", "gelu", "sigmoid", "prelu"]
ACTIVATIONS = (None, "relu", "leaky_relu", "gelu", "sigmoid", "prelu")
_ACT_CODE = {None: 0, "relu": 1, "leaky_relu": 2, "gelu": 3, "sigmoid": 4, "prelu": 5}
_BITS = {1: torch.uint8, 2: torch.int16, 4: torch.int32, 8: torch.int64}
_DTYPES = (
    torch.bool,
    torch.uint8,
    torch.int8,
    torch.int16,
    torch.int32,
    torch.int64,
    torch.float16,
    torch.bfloat16,
    torch.float32,
    torch.float64,
)
tl: Any = None  # triton.language, bound on first kernel use by srcaco2.kernels._dispatch.jit_kernels


# --------------------------------------------------------------------------------------------- 1. reference
def _reference(
    x: torch.Tensor,
    r: int,
    bias: torch.Tensor | None,
    activation: str | None,
    negative_slope: float,
    weight: torch.Tensor | None,
    clamp: tuple[float, float] | None,
) -> torch.Tensor:
    """Separate torch ops (the spec): each reads and writes the whole tensor once."""
    if bias is not None:
        x = x + bias.view(1, -1, 1, 1).to(x.dtype)  # read b, write b (before the shuffle: conv bias)
    out = F.pixel_shuffle(x, r)  # read b, write b
    if activation == "relu":
        out = F.relu(out)
    elif activation == "leaky_relu":
        out = F.leaky_relu(out, negative_slope)
    elif activation == "gelu":
        out = F.gelu(out)
    elif activation == "sigmoid":
        out = torch.sigmoid(out)
    elif activation == "prelu":
        out = F.prelu(out, weight.to(out.dtype))
    if clamp is not None:
        out = out.clamp(clamp[0], clamp[1])  # read b, write b
    return out


# ------------------------------------------------------------------------------------------------ 2. kernel
def _kernel_pixel_shuffle(
    x_ptr,
    o_ptr,
    b_ptr,
    p_ptr,
    COUT,
    OH,
    OW,
    sxb,
    sxc,
    sxh,
    sxw,
    slope,
    lo,
    hi,
    R: tl.constexpr,
    CL: tl.constexpr,
    BR: tl.constexpr,
    BW: tl.constexpr,
    I64: tl.constexpr,
    HAS_BIAS: tl.constexpr,
    ACT: tl.constexpr,
    PRELU_N: tl.constexpr,
    CLAMP: tl.constexpr,
    ACC: tl.constexpr,
):
    # A program writes a (BR, BW) block of output rows; runtime divisions happen once per program, and
    # the divisions by R (a constexpr: shifts, or a multiply-high for 3) once per block row / column.
    if CL:  # channels_last: one output row (b, oh); block = BR columns ow × BW channels (contiguous)
        row = tl.program_id(0)
        oh = row % OH
        b = row // OH
        ih = oh // R
        i = oh - ih * R
        ow = tl.program_id(1) * BR + tl.arange(0, BR)
        c = tl.program_id(2) * BW + tl.arange(0, BW)
        iw = ow // R
        cin = c[None, :] * (R * R) + (i * R + (ow - iw * R))[:, None]
        live = (ow < OW)[:, None] & (c < COUT)[None, :]
        if I64:
            src = cin.to(tl.int64) * sxc + (iw.to(tl.int64) * sxw)[:, None]
        else:
            src = cin * sxc + (iw * sxw)[:, None]
        dst = (ow * COUT)[:, None] + c[None, :]
        c_out = c[None, :]
        base_in = b.to(tl.int64) * sxb + ih.to(tl.int64) * sxh
        base_out = row.to(tl.int64) * OW * COUT
    else:  # NCHW: one (b, c) plane; block = BR output rows × BW columns (contiguous: vector stores)
        bc = tl.program_id(0)
        c = bc % COUT
        b = bc // COUT
        oh = tl.program_id(1) * BR + tl.arange(0, BR)
        ow = tl.program_id(2) * BW + tl.arange(0, BW)
        ih = oh // R
        iw = ow // R
        i = oh - ih * R
        j = ow - iw * R
        live = (oh < OH)[:, None] & (ow < OW)[None, :]
        cin = (c * (R * R) + i * R)[:, None] + j[None, :]
        if I64:
            src = (i.to(tl.int64) * (R * sxc) + ih.to(tl.int64) * sxh)[:, None] + (
                j.to(tl.int64) * sxc + iw.to(tl.int64) * sxw
            )[None, :]
        else:
            src = (i * (R * sxc) + ih * sxh)[:, None] + (j * sxc + iw * sxw)[None, :]
        dst = (oh * OW)[:, None] + ow[None, :]
        c_out = c
        base_in = b.to(tl.int64) * sxb + (c * (R * R)).to(tl.int64) * sxc
        base_out = bc.to(tl.int64) * OH * OW
    v = tl.load(x_ptr + base_in + src, mask=live)
    if HAS_BIAS or ACT > 0 or CLAMP:
        v = v.to(ACC)
        if HAS_BIAS:
            v += tl.load(b_ptr + cin, mask=live, other=0.0).to(ACC)
        if ACT == 1:
            v = tl.where(v < 0, 0.0, v)  # keeps NaN, like torch.relu
        if ACT == 2:
            v = tl.where(v > 0, v, v * slope)
        if ACT == 3:
            v = 0.5 * v * (1.0 + tl.erf(v * 0.7071067811865476))
        if ACT == 4:
            v = 1.0 / (1.0 + tl.exp(-v))
        if ACT == 5:
            if PRELU_N == 1:
                a = tl.load(p_ptr).to(ACC)
            else:
                a = tl.load(p_ptr + c_out, mask=c_out < COUT, other=0.0).to(ACC)
            v = tl.where(v > 0, v, a * v)
        if CLAMP:
            v = tl.where(v < lo, lo, v)
            v = tl.where(v > hi, hi, v)
        v = v.to(o_ptr.dtype.element_ty)
    tl.store(o_ptr + base_out + dst, v, mask=live)


@functools.cache
def _jitted() -> Any:
    return jit_kernels(globals(), "_kernel_pixel_shuffle")[0]


# ---------------------------------------------------------------------------------------------- 3. launcher
_WARPS = 4
_PER_THREAD = 16  # output elements per thread: four 128-bit stores (fp32), the per-program work amortised


def _pow2(n: int) -> int:
    return 1 << max(0, (n - 1).bit_length())


def config(cout: int, oh: int, ow: int, channels_last: bool) -> tuple[int, int, int]:
    """(BR, BW, num_warps): the (rows, columns) block of a program; 16 elements per thread at 4 warps.

    NCHW: BR output rows × BW output columns (BW the power of two ≥ OW, ≤ 512). channels_last: BR
    output columns × BW channels (BW the power of two ≥ C_out, ≤ 64).
    """
    total = _WARPS * 32 * _PER_THREAD
    if channels_last:
        bw = min(64, _pow2(cout))
        br = min(max(1, total // bw), _pow2(ow))
    else:
        bw = min(512, _pow2(ow))
        br = min(max(1, total // bw), _pow2(oh))
    warps = max(1, min(_WARPS, br * bw // (32 * 4)))  # at least 4 elements (one 128-bit store) per thread
    return br, bw, warps


def _launch(x, r, bias, activation, negative_slope, weight, clamp, kernel=None):
    """Allocate the output (keeping channels_last) and run the kernel over its blocks (3-D grid)."""
    import triton.language as tlang

    b, cin, h, w = x.shape
    cout = cin // (r * r)
    cl = x.dim() == 4 and not x.is_contiguous() and x.is_contiguous(memory_format=torch.channels_last)
    fmt = torch.channels_last if cl else torch.contiguous_format
    out = torch.empty((b, cout, h * r, w * r), dtype=x.dtype, device=x.device, memory_format=fmt)
    if out.numel() == 0:
        return out
    fused = bias is not None or activation is not None or clamp is not None
    xs, os_ = (x, out) if fused else (x.view(_BITS[x.element_size()]), out.view(_BITS[x.element_size()]))
    acc = tlang.float64 if x.dtype == torch.float64 else tlang.float32
    lo, hi = clamp if clamp is not None else (0.0, 0.0)
    oh, ow = h * r, w * r
    cl = cl and cout > 1  # one output channel: channels_last memory is NCHW memory (and stores vectorise)
    br, bw, warps = config(cout, oh, ow, cl)
    sxb, sxc, sxh, sxw = x.stride()
    # per-element source offsets in int32 unless they can reach 2**31 (plane bases are int64)
    span = ((cin - 1) * sxc + (h - 1) * sxh if cl else (r * r - 1) * sxc + (h - 1) * sxh) + (w - 1) * sxw
    if cl:
        grid = (b * oh, _cdiv(ow, br), _cdiv(cout, bw))
    else:
        grid = (b * cout, _cdiv(oh, br), _cdiv(ow, bw))
    if max(grid[1:]) > 65535:
        raise ValueError(
            f"pixel_shuffle: output {tuple(out.shape)} too large for one launch "
            f"(grid {grid}, at most 65535 blocks along y and z); split the batch"
        )
    kern = kernel if kernel is not None else _jitted()
    with device_guard(x):
        kern[grid](
            xs,
            os_,
            bias if bias is not None else xs,
            weight if weight is not None else xs,
            cout,
            oh,
            ow,
            sxb,
            sxc,
            sxh,
            sxw,
            float(negative_slope),
            float(lo),
            float(hi),
            R=r,
            CL=cl,
            BR=br,
            BW=bw,
            I64=span >= 2**31,
            HAS_BIAS=bias is not None,
            ACT=_ACT_CODE[activation],
            PRELU_N=(weight.numel() if weight is not None else 0),
            CLAMP=clamp is not None,
            ACC=acc,
            num_warps=warps,
        )
    return out


def _cdiv(a: int, b: int) -> int:
    return -(-a // b)


# --------------------------------------------------------------------- 4. custom op (autograd, fake impl)
@torch.library.custom_op("srcaco2::pixel_shuffle", mutates_args=())
def _pixel_shuffle_op(
    x: torch.Tensor,
    r: int,
    bias: torch.Tensor | None,
    activation: str,
    negative_slope: float,
    weight: torch.Tensor | None,
    lo: float,
    hi: float,
    has_clamp: bool,
) -> torch.Tensor:
    """The Triton kernel as a torch custom op (``activation`` "" for none); opaque to torch.compile."""
    return _launch(x, r, bias, activation or None, negative_slope, weight, (lo, hi) if has_clamp else None)


@_pixel_shuffle_op.register_fake
def _(x, r, bias, activation, negative_slope, weight, lo, hi, has_clamp):
    b, cin, h, w = x.shape
    cl = not x.is_contiguous() and x.is_contiguous(memory_format=torch.channels_last)
    return torch.empty(
        (b, cin // (r * r), h * r, w * r),
        dtype=x.dtype,
        device=x.device,
        memory_format=torch.channels_last if cl else torch.contiguous_format,
    )


def _ps_setup(ctx, inputs, output):
    x, r, bias, activation, negative_slope, weight, lo, hi, has_clamp = inputs
    ctx.save_for_backward(x, bias, weight)
    ctx.cfg = (r, activation or None, negative_slope, (lo, hi) if has_clamp else None)


def _ps_backward(ctx, grad):
    """Plain: ``pixel_unshuffle(grad)``. Epilogue: the pre-activation is recomputed in float32 (float64)
    and the pointwise derivatives applied as torch's own backward formulas do (clamp passes where
    lo <= out <= hi; relu where pre > 0; leaky/prelu slope where pre <= 0; exact-erf gelu)."""
    x, bias, weight = ctx.saved_tensors
    r, activation, slope, clamp = ctx.cfg
    nones = (None,) * 9
    if bias is None and activation is None and clamp is None:
        return (F.pixel_unshuffle(grad, r),) + nones[1:]
    dt = torch.float64 if x.dtype == torch.float64 else torch.float32
    pre = x.to(dt) if bias is None else x.to(dt) + bias.to(dt).view(1, -1, 1, 1)
    v = F.pixel_shuffle(pre, r)
    d = grad.to(dt)
    wv = None
    if activation == "prelu":
        wv = weight.to(dt).view(1, -1, 1, 1) if weight.numel() > 1 else weight.to(dt).view(())
    if clamp is not None:
        out = _activate(v, activation, slope, wv)
        d = d * ((out >= clamp[0]) & (out <= clamp[1])).to(dt)
    gw = None
    if activation == "relu":
        d = d * (v > 0).to(dt)
    elif activation == "leaky_relu":
        d = torch.where(v > 0, d, d * slope)
    elif activation == "gelu":
        cdf = 0.5 * (1.0 + torch.erf(v * 0.7071067811865476))
        d = d * (cdf + v * torch.exp(-0.5 * v * v) * 0.3989422804014327)  # Φ(v) + v·φ(v)
    elif activation == "sigmoid":
        sg = torch.sigmoid(v)
        d = d * sg * (1.0 - sg)
    elif activation == "prelu":
        neg = torch.where(v > 0, torch.zeros_like(v), v * d)
        gw = (neg.sum(dim=(0, 2, 3)) if weight.numel() > 1 else neg.sum().reshape(1)).to(weight.dtype)
        d = torch.where(v > 0, d, d * wv)
    gpre = F.pixel_unshuffle(d, r)
    gb = gpre.sum(dim=(0, 2, 3)).to(bias.dtype) if bias is not None else None
    return gpre.to(x.dtype), None, gb, None, None, gw, None, None, None


def _activate(v, activation, slope, wv):
    if activation == "relu":
        return F.relu(v)
    if activation == "leaky_relu":
        return F.leaky_relu(v, slope)
    if activation == "gelu":
        return F.gelu(v)
    if activation == "sigmoid":
        return torch.sigmoid(v)
    if activation == "prelu":
        return torch.where(v > 0, v, wv * v)
    return v


_pixel_shuffle_op.register_autograd(_ps_backward, setup_context=_ps_setup)


# ------------------------------------------------------------------------------------------- 5. dispatcher
def _check(x, r, bias, activation, weight, clamp) -> None:
    if not isinstance(x, torch.Tensor):
        raise TypeError(f"pixel_shuffle: x must be a torch.Tensor, got {type(x).__name__}")
    if x.ndim != 4:
        raise ValueError(f"pixel_shuffle: x must be (B, C·r², H, W) (4 dims), got shape {tuple(x.shape)}")
    if isinstance(r, bool) or not isinstance(r, int) or r < 1:
        raise ValueError(f"pixel_shuffle: r must be an int >= 1, got {r!r}")
    if x.shape[1] % (r * r):
        raise ValueError(
            f"pixel_shuffle: channels must be divisible by r²={r * r}, got C={x.shape[1]}; "
            f"the conv before the shuffle needs C_out·{r * r} channels"
        )
    if x.dtype not in _DTYPES:
        raise TypeError(f"pixel_shuffle: x.dtype must be one of {_DTYPES}, got {x.dtype}")
    if activation not in ACTIVATIONS:
        raise ValueError(f"pixel_shuffle: activation must be one of {ACTIVATIONS}, got {activation!r}")
    fused = bias is not None or activation is not None or clamp is not None
    if fused and not x.is_floating_point():
        raise TypeError(f"pixel_shuffle: bias/activation/clamp need a floating x, got {x.dtype}")
    if bias is not None and (
        not isinstance(bias, torch.Tensor) or bias.shape != (x.shape[1],) or bias.device != x.device
    ):
        raise ValueError(
            f"pixel_shuffle: bias must be a ({x.shape[1]},) tensor (one per input channel) on "
            f"{x.device}, got {getattr(bias, 'shape', bias)!r}"
        )
    cout = x.shape[1] // (r * r)
    if (activation == "prelu") != (weight is not None):
        raise ValueError("pixel_shuffle: weight is required with activation='prelu' and only with it")
    if weight is not None and (
        not isinstance(weight, torch.Tensor)
        or weight.ndim != 1
        or weight.numel() not in (1, cout)
        or weight.device != x.device
    ):
        raise ValueError(
            f"pixel_shuffle: prelu weight must be a (1,) or ({cout},) tensor on {x.device}, "
            f"got {getattr(weight, 'shape', weight)!r}"
        )
    if clamp is not None and (len(clamp) != 2 or not clamp[0] <= clamp[1]):
        raise ValueError(f"pixel_shuffle: clamp must be (lo, hi) with lo <= hi, got {clamp!r}")


def pixel_shuffle(
    x: torch.Tensor,
    r: int,
    *,
    bias: torch.Tensor | None = None,
    activation: Activation | None = None,
    negative_slope: float = 0.01,
    weight: torch.Tensor | None = None,
    clamp: tuple[float, float] | None = None,
    backend: str = "auto",
) -> torch.Tensor:
    """(B, C·r², H, W) → (B, C, r·H, r·W), then optional bias, activation and clamp in the same pass.

    Parameters
    ----------
    x : (B, C·r², H, W) tensor, any of bool, uint8, int8..int64, float16, bfloat16, float32, float64;
        any strides. A channels_last input gives a channels_last output (as torch does).
    r : int >= 1, the upscale factor.
    bias : (C·r²,) float tensor, optional
        Added per *input* channel (the bias of the conv before the shuffle).
    activation : {None, "relu", "leaky_relu", "gelu", "sigmoid", "prelu"}
        Applied after the shuffle; "gelu" is the exact (erf) GELU.
    negative_slope : float, default 0.01, for "leaky_relu".
    weight : (1,) or (C,) float tensor, the PReLU slopes (per *output* channel); only with "prelu".
    clamp : (lo, hi), optional, applied last.
    backend : {"auto", "triton", "torch"}, see ``srcaco2.kernels._dispatch``.

    Returns
    -------
    (B, C, r·H, r·W) tensor of x's dtype. Without epilogue it equals ``F.pixel_shuffle(x, r)`` bit for
    bit; the gradient is ``F.pixel_unshuffle(grad, r)``.

    Raises
    ------
    TypeError
        Non-tensor or unsupported dtype, or an epilogue on an integer/bool tensor.
    ValueError
        Wrong ndim, r < 1, channels not divisible by r², bad bias/weight/clamp/activation.

    Examples
    --------
    >>> x = torch.arange(16.0).view(1, 4, 2, 2)
    >>> pixel_shuffle(x, 2)[0, 0]
    tensor([[ 0.,  4.,  1.,  5.],
            [ 8., 12.,  9., 13.],
            [ 2.,  6.,  3.,  7.],
            [10., 14., 11., 15.]])
    """
    _check(x, r, bias, activation, weight, clamp)
    extra = tuple(t for t in (bias, weight) if t is not None)
    if resolve_backend(backend, x, *extra, op="pixel_shuffle") == "torch":
        return _reference(x, r, bias, activation, negative_slope, weight, clamp)
    lo, hi = (float(clamp[0]), float(clamp[1])) if clamp is not None else (0.0, 0.0)
    return _pixel_shuffle_op(
        x, r, bias, activation or "", float(negative_slope), weight, lo, hi, clamp is not None
    )


class PixelShuffle(nn.Module):
    """Drop-in for `torch.nn.PixelShuffle` (no parameters, so state_dict layouts are unchanged).

    Uses the Triton kernel on CUDA tensors and ``F.pixel_shuffle`` elsewhere (see :func:`pixel_shuffle`).
    ``activation="relu"`` fuses a following ``nn.ReLU`` (ProSR's upsampler) into the same pass; so do
    "gelu" and "sigmoid" (a pointwise activation commutes with the shuffle: DFCAN's GELU before it).
    """

    def __init__(
        self, upscale_factor: int, activation: Literal["relu", "gelu", "sigmoid"] | None = None
    ) -> None:
        super().__init__()
        if activation not in (None, "relu", "gelu", "sigmoid"):
            raise ValueError(
                f"PixelShuffle: activation must be None, 'relu', 'gelu' or 'sigmoid' (the "
                f"parameter-free ones), got {activation!r}"
            )
        self.upscale_factor = int(upscale_factor)
        self.activation = activation

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        return pixel_shuffle(x, self.upscale_factor, activation=self.activation)

    def extra_repr(self) -> str:
        act = f", activation={self.activation!r}" if self.activation else ""
        return f"upscale_factor={self.upscale_factor}{act}"
