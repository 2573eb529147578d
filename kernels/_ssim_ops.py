"""Launchers of the SSIM kernels and their torch custom ops (``srcaco2::ssim*``, ``srcaco2::mse_ssim_loss*``).

Part 3/4 of ``srcaco2.kernels.ssim`` (its docstring has the maths and the byte counts): the Gaussian taps
(cached
per window, sigma, dtype and device, so no host→device copy runs per call), the launch configuration,
and the custom ops that make the kernels opaque, shape-known nodes for ``torch.compile`` (fake
implementations give the output shapes; the autograd formulas call the backward ops).

Launch configuration (``BH × BW`` = 16 × 64 for maps ≥ 64 wide, 4 warps, taps loop unrolled 4×)
------------------------------------------------------------------------------------------------
Compiled for sm_90 (``python -m srcaco2.benchmarks.kernels --compile-only``): the forward, fully unrolled
over the
19 taps, kept all 38 shifted loads in flight and took 180 registers (2 resident blocks/SM); unrolled
4× it takes ≈ 93 registers (5 blocks/SM, 20 warps), no spills. Tiles 16 × 32 take ≈ 56 registers but
replicate the horizontal pass over 4 warps (a 32-wide row on 128 threads); 32 × 64 needs > 160.
"valid" padding with partials (a gradient through the evaluation SSIM; never in training) stores 3-4
maps whose rows (W − w + 1 wide) are not 16-byte aligned: at 16 rows it took 137-154 registers
(3 blocks/SM), so its forward uses 8-row tiles (64-72 registers, 7-8 blocks/SM).
"""

from __future__ import annotations

import functools
import math
from typing import Any

import torch

from srcaco2.kernels import _ssim_triton
from srcaco2.kernels._dispatch import device_guard, jit_kernels

__all__: list[str] = []

BH = 16  # output rows per program: (BH + w − 1)(1 + w/BH) FMAs per pixel is flat around 8..32
NUM_WARPS = 4
UNROLL = 4  # taps per unrolled step of the horizontal loop: registers vs loads in flight
BH_VALID_PARTIALS = 8  # forward tile rows for "valid" padding with partials (gradient of the metric)


FLOAT_DTYPES = (torch.float16, torch.bfloat16, torch.float32, torch.float64)
"""Input dtypes of the SSIM kernels and the fused loss."""


def check_image_pair(op: str, names: tuple[str, str], a: Any, b: Any, *, same_dtype: bool) -> None:
    """Validate the two (B, C, H, W) float images of `op` (``ssim``, ``mse_ssim_loss``), one message each.

    Same shape and device, non-empty, dtypes in `FLOAT_DTYPES` (equal too when `same_dtype`).
    """
    for name, t in zip(names, (a, b), strict=True):
        if not isinstance(t, torch.Tensor):
            raise TypeError(f"{op}: {name} must be a torch.Tensor, got {type(t).__name__}")
        if t.ndim != 4:
            raise ValueError(f"{op}: {name} must be (B, C, H, W) (4 dims), got shape {tuple(t.shape)}")
        if t.dtype not in FLOAT_DTYPES:
            raise TypeError(f"{op}: {name}.dtype must be one of {FLOAT_DTYPES}, got {t.dtype}")
    na, nb = names
    if a.shape != b.shape:
        raise ValueError(f"{op}: {na} and {nb} shapes differ: {tuple(a.shape)} vs {tuple(b.shape)}")
    if same_dtype and a.dtype != b.dtype:
        raise TypeError(f"{op}: {na} and {nb} dtypes differ: {a.dtype} vs {b.dtype}; cast one of them")
    if a.device != b.device:
        raise ValueError(f"{op}: {na} and {nb} devices differ: {a.device} vs {b.device}")
    if a.numel() == 0:
        raise ValueError(f"{op}: empty input of shape {tuple(a.shape)}")


def check_window_sigma(op: str, window: Any, sigma: Any) -> None:
    """The Gaussian window of `op`: an odd int in 3..31 and a finite sigma > 0."""
    if isinstance(window, bool) or not isinstance(window, int) or window % 2 == 0 or not 3 <= window <= 31:
        raise ValueError(f"{op}: window must be an odd int in 3..31, got {window!r}")
    if not (isinstance(sigma, (int, float)) and math.isfinite(sigma) and sigma > 0):
        raise ValueError(f"{op}: sigma must be a finite number > 0, got {sigma!r}")


def compute_dtype(dtype: torch.dtype) -> torch.dtype:
    """float64 for float64 inputs, float32 otherwise (half inputs are accumulated in float32)."""
    return torch.float64 if dtype == torch.float64 else torch.float32


@functools.lru_cache(maxsize=64)
def gaussian_taps(window: int, sigma: float, dtype: torch.dtype, device: torch.device) -> torch.Tensor:
    """(window,) normalised Gaussian over offsets k − ⌊w/2⌋ (float64 maths, then cast), cached.

    Cached per (window, sigma, dtype, device): the kernels read the taps from device memory, and a
    fresh host→device copy per call would be a blocking copy. Never modify the returned tensor.
    """
    k = torch.arange(window, dtype=torch.float64) - window // 2
    g = torch.exp(-(k**2) / (2.0 * sigma**2))
    return (g / g.sum()).to(dtype=dtype, device=device)


def taps(window: int, sigma: float, dtype: torch.dtype, device: torch.device) -> torch.Tensor:
    """:func:`gaussian_taps` with the device normalised (``cuda`` → ``cuda:<current>``) for the cache."""
    if device.type == "cuda" and device.index is None:
        device = torch.device("cuda", torch.cuda.current_device())
    return gaussian_taps(int(window), float(sigma), dtype, device)


def denominator(mask: torch.Tensor | None, shape: torch.Size, dtype: torch.dtype) -> torch.Tensor | None:
    """Σ mask per image (B,); an empty mask counts as 1 (its masked mean is then 0)."""
    if mask is None:
        return None
    den = mask.to(dtype).expand(shape).sum(dim=(1, 2, 3))
    return torch.where(den == 0, torch.ones_like(den), den)


def map_hw(h: int, w: int, window: int, pad: int) -> tuple[int, int]:
    """(H', W') of the SSIM map: (H, W) for "same" (pad > 0), (H − w + 1, W − w + 1) for "valid"."""
    return (h, w) if pad else (h - window + 1, w - window + 1)


# ----------------------------------------------------------------------------------------------- kernels
@functools.cache
def _jitted() -> tuple[Any, Any]:
    return jit_kernels(vars(_ssim_triton), "_kernel_ssim_fwd", "_kernel_ssim_bwd")


def blocks(w_out: int) -> tuple[int, int]:
    """(BH, BW) for a map (or image) ``w_out`` wide: BW the power of two ≥ w_out clipped to 16..64."""
    bw = max(16, min(64, 1 << max(0, (w_out - 1).bit_length())))
    return BH, bw


def _acc(dtype: torch.dtype) -> Any:
    import triton.language as tlang

    return tlang.float64 if dtype == torch.float64 else tlang.float32


def launch_forward(x, y, mask, window, sigma, pad, data_range, store_map, n_partials, mse=False, kernel=None):
    """Run the forward kernel.

    Returns (map (B, C, H', W') or None, per-tile Σ S (B·C, tiles), partials (n, B·C, H', W') or None,
    per-tile Σ (x − y)² (B·C, tiles) or None). ``mse`` needs ``pad > 0`` ("same": tiles cover the image).
    ``kernel`` replaces the jitted forward (``srcaco2.kernels._compile.Recorder``).
    """
    fwd = kernel if kernel is not None else _jitted()[0]
    b, c, h, w = x.shape
    ho, wo = map_hw(h, w, window, pad)
    dt = compute_dtype(x.dtype)
    bh, bw = blocks(wo)
    if pad == 0 and n_partials:  # "valid" + partials: unaligned rows of 3-4 stored maps; see docstring
        bh = BH_VALID_PARTIALS
    nth, ntw = math.ceil(ho / bh), math.ceil(wo / bw)
    g = taps(window, sigma, dt, x.device)
    sums = torch.empty((b * c, nth * ntw), dtype=dt, device=x.device)
    sse = torch.empty((b * c, nth * ntw), dtype=dt, device=x.device) if mse else sums
    smap = torch.empty((b, c, ho, wo), dtype=dt, device=x.device) if store_map else sums
    parts = torch.empty((n_partials, b * c, ho, wo), dtype=dt, device=x.device) if n_partials else sums
    if mask is not None and mask.dtype == torch.bool:
        mask = mask.view(torch.uint8)
    m = mask.expand(b, c, ho, wo) if mask is not None else sums
    ms = m.stride() if mask is not None else (0, 0, 0, 0)
    c1, c2 = (0.01 * data_range) ** 2, (0.03 * data_range) ** 2
    with device_guard(x):
        fwd[(ntw * nth * b * c,)](
            x,
            y,
            g,
            m,
            smap,
            parts,
            sums,
            sse,
            c,
            h,
            w,
            ho,
            wo,
            ntw,
            nth,
            *x.stride(),
            *y.stride(),
            *ms,
            c1,
            c2,
            PAD=pad,
            WIN=window,
            BH=bh,
            BW=bw,
            HAS_MASK=mask is not None,
            STORE_MAP=store_map,
            NPART=n_partials,
            MSE=mse,
            UNROLL=UNROLL,
            ACC=_acc(x.dtype),
            num_warps=NUM_WARPS,
        )
    return (smap if store_map else None), sums, (parts if n_partials else None), (sse if mse else None)


def launch_backward(x, y, parts, wmap, scale, window, sigma, pad, need_x, need_y, kmse=None, kernel=None):
    """Run the backward kernel: (dx or None, dy or None), x's / y's dtype, contiguous.

    ``scale``: (B,) weights of Σ_p S_p per image, or a (1,) weight for the whole batch; ``kmse``: a
    (1,) tensor, the weight of (x − y) in dx (fused loss), or None.
    """
    bwd = kernel if kernel is not None else _jitted()[1]
    b, c, h, w = x.shape
    ho, wo = parts.shape[-2:]
    dt = compute_dtype(x.dtype)
    bh, bw = blocks(w)
    nth, ntw = math.ceil(h / bh), math.ceil(w / bw)
    g = taps(window, sigma, dt, x.device)
    gx = torch.empty((b, c, h, w), dtype=x.dtype, device=x.device) if need_x else parts
    gy = torch.empty((b, c, h, w), dtype=y.dtype, device=y.device) if need_y else parts
    ws = wmap.stride() if wmap is not None else (0, 0, 0, 0)
    with device_guard(x):
        bwd[(ntw * nth * b * c,)](
            x,
            y,
            g,
            parts,
            (wmap if wmap is not None else parts),
            scale,
            (kmse if kmse is not None else scale),
            gx,
            gy,
            c,
            h,
            w,
            ho,
            wo,
            ntw,
            nth,
            *x.stride(),
            *y.stride(),
            *ws,
            1 if scale.numel() > 1 else 0,
            PADT=window - 1 - pad,
            WIN=window,
            BH=bh,
            BW=bw,
            HAS_W=wmap is not None,
            GRAD_X=need_x,
            GRAD_Y=need_y,
            MSE=kmse is not None,
            UNROLL=UNROLL,
            ACC=_acc(x.dtype),
            num_warps=NUM_WARPS,
        )
    return (gx if need_x else None), (gy if need_y else None)


def _empty(like: torch.Tensor, dtype: torch.dtype) -> torch.Tensor:
    return torch.empty((0,), dtype=dtype, device=like.device)


# ------------------------------------------------------------------------------------ custom op: ssim
@torch.library.custom_op("srcaco2::ssim", mutates_args=())
def ssim_op(
    x: torch.Tensor,
    y: torch.Tensor,
    mask: torch.Tensor | None,
    window: int,
    sigma: float,
    pad: int,
    data_range: float,
    per_pixel: bool,
    n_partials: int,
) -> tuple[torch.Tensor, torch.Tensor, torch.Tensor]:
    """(out, partials, den): out = per-image (masked) mean SSIM (B,) or the map (B, C, H', W');
    partials (n_partials, B·C, H', W') (empty when 0); den (B,) the per-image denominators."""
    smap, sums, parts, _ = launch_forward(x, y, mask, window, sigma, pad, data_range, per_pixel, n_partials)
    b, c, h, w = x.shape
    shape = torch.Size((b, c, *map_hw(h, w, window, pad)))
    den = denominator(mask, shape, sums.dtype)
    if den is None:
        den = torch.full((b,), float(math.prod(shape[1:])), dtype=sums.dtype, device=x.device)
    out = smap if per_pixel else sums.view(b, -1).sum(dim=1) / den
    return out, (parts if parts is not None else _empty(x, sums.dtype)), den


@ssim_op.register_fake
def _(x, y, mask, window, sigma, pad, data_range, per_pixel, n_partials):
    b, c, h, w = x.shape
    ho, wo = map_hw(h, w, window, pad)
    dt = compute_dtype(x.dtype)
    out = x.new_empty((b, c, ho, wo) if per_pixel else (b,), dtype=dt)
    parts = x.new_empty((n_partials, b * c, ho, wo) if n_partials else (0,), dtype=dt)
    return out, parts, x.new_empty((b,), dtype=dt)


@torch.library.custom_op("srcaco2::ssim_backward", mutates_args=())
def ssim_backward_op(
    x: torch.Tensor,
    y: torch.Tensor,
    parts: torch.Tensor,
    wmap: torch.Tensor | None,
    scale: torch.Tensor,
    window: int,
    sigma: float,
    pad: int,
    need_x: bool,
    need_y: bool,
) -> tuple[torch.Tensor, torch.Tensor]:
    """(dx, dy) of Σ_b scale_b Σ_p wmap_p S_p (each empty when not needed)."""
    dx, dy = launch_backward(x, y, parts, wmap, scale, window, sigma, pad, need_x, need_y)
    return (dx if dx is not None else _empty(x, x.dtype)), (dy if dy is not None else _empty(y, y.dtype))


@ssim_backward_op.register_fake
def _(x, y, parts, wmap, scale, window, sigma, pad, need_x, need_y):
    return (
        torch.empty_like(x, memory_format=torch.contiguous_format) if need_x else x.new_empty((0,)),
        torch.empty_like(y, memory_format=torch.contiguous_format) if need_y else y.new_empty((0,)),
    )


def _ssim_setup(ctx, inputs, output):
    x, y, _, window, sigma, pad, _, per_pixel, n_partials = inputs
    _, parts, den = output
    ctx.save_for_backward(x, y, parts, den)
    ctx.cfg = (window, sigma, pad, per_pixel, n_partials)


def _ssim_backward(ctx, g_out, g_parts, g_den):
    x, y, parts, den = ctx.saved_tensors
    window, sigma, pad, per_pixel, n_partials = ctx.cfg
    need_x, need_y = ctx.needs_input_grad[0], ctx.needs_input_grad[1]
    none = (None,) * 9
    if g_out is None or not (need_x or need_y):
        return none
    if n_partials == 0 or (need_y and n_partials < 4):
        raise RuntimeError(
            "ssim: the forward saved no partials for this gradient; call it with "
            "x/y requiring grad (the dispatcher sets n_partials from requires_grad)"
        )
    if per_pixel:
        wmap, scale = g_out, torch.ones_like(den)
    else:
        wmap, scale = None, (g_out / den).to(den.dtype)
    dx, dy = ssim_backward_op(x, y, parts, wmap, scale, window, sigma, pad, need_x, need_y)
    return (dx if need_x else None, dy if need_y else None) + none[2:]


ssim_op.register_autograd(_ssim_backward, setup_context=_ssim_setup)


# ------------------------------------------------------------------------- custom op: fused training loss
@torch.library.custom_op("srcaco2::mse_ssim_loss", mutates_args=())
def mse_ssim_loss_op(
    sr: torch.Tensor,
    hr: torch.Tensor,
    window: int,
    sigma: float,
    l2_weight: float,
    ssim_weight: float,
    n_partials: int,
) -> tuple[torch.Tensor, torch.Tensor, torch.Tensor, torch.Tensor]:
    """(loss, mse, ssim, partials): ``l2·mean((sr − hr)²) − λ·mean(SSIM same-padded map)``, one kernel."""
    _, sums, parts, sse = launch_forward(
        sr, hr, None, window, sigma, window // 2, 1.0, False, n_partials, mse=True
    )
    n = float(sr.numel())
    mse = sse.sum() / n
    s = sums.sum() / n
    loss = l2_weight * mse - ssim_weight * s
    return loss, mse, s, (parts if parts is not None else _empty(sr, sums.dtype))


@mse_ssim_loss_op.register_fake
def _(sr, hr, window, sigma, l2_weight, ssim_weight, n_partials):
    b, c, h, w = sr.shape
    dt = compute_dtype(sr.dtype)
    scalar = sr.new_empty((), dtype=dt)
    parts = sr.new_empty((n_partials, b * c, h, w) if n_partials else (0,), dtype=dt)
    return scalar, scalar.clone(), scalar.clone(), parts


@torch.library.custom_op("srcaco2::mse_ssim_loss_backward", mutates_args=())
def mse_ssim_loss_backward_op(
    sr: torch.Tensor,
    hr: torch.Tensor,
    parts: torch.Tensor,
    kssim: torch.Tensor,
    kmse: torch.Tensor,
    window: int,
    sigma: float,
    need_sr: bool,
    need_hr: bool,
) -> tuple[torch.Tensor, torch.Tensor]:
    """(dsr, dhr) = kssim·∂ΣS/∂· + kmse·(±(sr − hr)) (each empty when not needed); kssim, kmse (1,)."""
    dx, dy = launch_backward(
        sr, hr, parts, None, kssim, window, sigma, window // 2, need_sr, need_hr, kmse=kmse
    )
    return (dx if dx is not None else _empty(sr, sr.dtype)), (dy if dy is not None else _empty(hr, hr.dtype))


@mse_ssim_loss_backward_op.register_fake
def _(sr, hr, parts, kssim, kmse, window, sigma, need_sr, need_hr):
    return (
        torch.empty_like(sr, memory_format=torch.contiguous_format) if need_sr else sr.new_empty((0,)),
        torch.empty_like(hr, memory_format=torch.contiguous_format) if need_hr else hr.new_empty((0,)),
    )


def _loss_setup(ctx, inputs, output):
    sr, hr, window, sigma, l2_weight, ssim_weight, n_partials = inputs
    ctx.save_for_backward(sr, hr, output[3])
    ctx.cfg = (window, sigma, l2_weight, ssim_weight, n_partials)


def _loss_backward(ctx, g_loss, g_mse, g_ssim, g_parts):
    sr, hr, parts = ctx.saved_tensors
    window, sigma, l2_weight, ssim_weight, n_partials = ctx.cfg
    need_sr, need_hr = ctx.needs_input_grad[0], ctx.needs_input_grad[1]
    none = (None,) * 7
    if not (need_sr or need_hr):
        return none
    if n_partials == 0 or (need_hr and n_partials < 4):
        raise RuntimeError("mse_ssim_loss: the forward saved no partials for this gradient")
    n = float(sr.numel())
    dt = parts.dtype
    zero = torch.zeros((), dtype=dt, device=sr.device)
    gl, gm, gs = (g.to(dt) if g is not None else zero for g in (g_loss, g_mse, g_ssim))
    kssim = ((gs - ssim_weight * gl) / n).reshape(1)  # d/dΣS
    kmse = (2.0 * (gm + l2_weight * gl) / n).reshape(1)  # d/dΣ(sr − hr)² · 2 (x − y)
    dsr, dhr = mse_ssim_loss_backward_op(sr, hr, parts, kssim, kmse, window, sigma, need_sr, need_hr)
    return (dsr if need_sr else None, dhr if need_hr else None) + none[2:]


mse_ssim_loss_op.register_autograd(_loss_backward, setup_context=_loss_setup)
