"""Fused SSIM (forward + backward) with a Gaussian window, as a Triton kernel beside its torch reference.

Motivation
----------
The SR-CACO-2 training loss is ``MSE − 5·SSIM`` with a 19-wide Gaussian (σ 1.5) and zero "same"
padding; the evaluation metric is SSIM 11×11 σ 1.5 with *valid* convolution (map (h−10)²). Both are
``S = (2μxμy + C1)(2σxy + C2) / ((μx² + μy² + C1)(σx² + σy² + C2))`` per pixel, with the five local
statistics μx, μy, E[x²], E[y²], E[xy] blurred by the same normalised Gaussian, σ² = E[x²] − μ²,
C1 = (0.01·L)², C2 = (0.03·L)² (L = data range), then a (masked) per-image mean.

Bytes moved per pixel (fp32, b = bytes per input element; w = window)
--------------------------------------------------------------------
- Benchmark formulation (:func:`ssim_5conv`): writes x², y², xy (3×4 B), then 5 dense w×w depthwise
  convs each read one map and write one (5×8 B), then ~10 elementwise ops on the 5 maps (≈ 15 reads +
  8 writes × 4 B) ≈ 150 B/px forward; autograd keeps ≈ 10 maps (40 B/px) for the backward and runs the
  5 transposed convs again: ≈ 300 B/px in all, plus w² FMAs per map and pixel.
- Reference (:func:`_reference`): one stacked (B, 5C) separable blur: ≈ 100 B/px forward.
- Kernel forward: reads x, y once (2b; the (tile + halo) re-reads hit L1/L2), writes the 3 per-pixel
  partials dS/dμx, dS/dE[x²] (= dS/dE[y²]), dS/dE[xy] (+ dS/dμy when y needs a gradient): 2b + 12..16
  B/px; the map itself (4 B/px) only for ``reduction="none"``. Floor: 2b (8 B/px fp32).
- Kernel backward: reads the 3..4 partials and x, y, writes dx (and dy): 12..16 + 2b + b..2b B/px.
  Floor without saved partials: 2b + b (recomputing the statistics costs 2× the forward FLOPs).
- Compute: separable in registers: (BH + w − 1)·(1 + w/BH) ≈ 4w FMAs per statistic and pixel
  instead of w² — the op is compute- not bandwidth-bound at w = 19 on current GPUs.

Gradient (L = Σ_p g_p S_p; G the 1-D Gaussian; ⋆ correlation with zero padding, ⋆ᵀ its transpose)::

    dL/dx = Gᵀ⋆(g·∂S/∂μx) + 2x · Gᵀ⋆(g·∂S/∂E[x²]) + y · Gᵀ⋆(g·∂S/∂E[xy])
    dL/dy = Gᵀ⋆(g·∂S/∂μy) + 2y · Gᵀ⋆(g·∂S/∂E[y²]) + x · Gᵀ⋆(g·∂S/∂E[xy])
    ∂S/∂μx = 2μy(A2 − A1)/(B1B2) − 2μx·S·(1/B1 − 1/B2),  ∂S/∂E[x²] = ∂S/∂E[y²] = −S/B2,
    ∂S/∂E[xy] = 2A1/(B1B2)   (A1 = 2μxμy + C1, A2 = 2σxy + C2, B1 = μx² + μy² + C1, B2 = σx² + σy² + C2)

Gᵀ⋆ is a correlation with the flipped Gaussian and offset ``w − 1 − pad`` (pad = w//2 "same", 0 "valid").
"""

from __future__ import annotations

import functools
import math
from typing import Any, Literal

import torch
import torch.nn.functional as F

from kernels import _ssim_triton
from kernels._dispatch import device_guard, jit_kernels, resolve_backend

__all__ = ["ssim", "ssim_loss", "ssim_5conv"]

Padding = Literal["same", "valid"]
Reduction = Literal["mean", "none", "per_image"]


def _gaussian_1d(window: int, sigma: float, dtype: torch.dtype, device: torch.device) -> torch.Tensor:
    """(window,) normalised Gaussian over offsets k − ⌊w/2⌋, computed in float64 then cast."""
    k = torch.arange(window, dtype=torch.float64) - window // 2
    g = torch.exp(-(k**2) / (2.0 * sigma**2))
    return (g / g.sum()).to(dtype=dtype, device=device)


def _compute_dtype(dtype: torch.dtype) -> torch.dtype:
    return torch.float64 if dtype == torch.float64 else torch.float32


_DTYPES = (torch.float16, torch.bfloat16, torch.float32, torch.float64)
_PADDINGS = ("same", "valid")
_REDUCTIONS = ("mean", "none", "per_image")


def _check(x, y, window, sigma, padding, data_range, reduction, mask) -> None:
    """Validate the arguments of :func:`ssim` with messages that say what is allowed."""
    for name, t in (("x", x), ("y", y)):
        if not isinstance(t, torch.Tensor):
            raise TypeError(f"ssim: {name} must be a torch.Tensor, got {type(t).__name__}")
        if t.ndim != 4:
            raise ValueError(f"ssim: {name} must be (B, C, H, W) (4 dims), got shape {tuple(t.shape)}")
        if t.dtype not in _DTYPES:
            raise TypeError(f"ssim: {name}.dtype must be one of {_DTYPES}, got {t.dtype}")
    if x.shape != y.shape:
        raise ValueError(f"ssim: x and y shapes differ: {tuple(x.shape)} vs {tuple(y.shape)}")
    if x.dtype != y.dtype:
        raise TypeError(f"ssim: x and y dtypes differ: {x.dtype} vs {y.dtype}; cast one of them")
    if x.device != y.device:
        raise ValueError(f"ssim: x and y devices differ: {x.device} vs {y.device}")
    if x.numel() == 0:
        raise ValueError(f"ssim: empty input of shape {tuple(x.shape)}")
    if isinstance(window, bool) or not isinstance(window, int) or window % 2 == 0 or not 3 <= window <= 31:
        raise ValueError(f"ssim: window must be an odd int in 3..31, got {window!r}")
    if not (isinstance(sigma, (int, float)) and math.isfinite(sigma) and sigma > 0):
        raise ValueError(f"ssim: sigma must be a finite number > 0, got {sigma!r}")
    if padding not in _PADDINGS:
        raise ValueError(f"ssim: padding must be one of {_PADDINGS}, got {padding!r}")
    if not (isinstance(data_range, (int, float)) and math.isfinite(data_range) and data_range > 0):
        raise ValueError(f"ssim: data_range must be a finite number > 0, got {data_range!r}")
    if reduction not in _REDUCTIONS:
        raise ValueError(f"ssim: reduction must be one of {_REDUCTIONS}, got {reduction!r}")
    b, c, h, w = x.shape
    if padding == "valid" and (h < window or w < window):
        raise ValueError(f"ssim: padding='valid' needs H, W >= window={window}, got H={h}, W={w}; "
                         "use padding='same' or a smaller window")
    if mask is None:
        return
    ho, wo = (h, w) if padding == "same" else (h - window + 1, w - window + 1)
    if not isinstance(mask, torch.Tensor):
        raise TypeError(f"ssim: mask must be a torch.Tensor or None, got {type(mask).__name__}")
    if reduction == "none":
        raise ValueError("ssim: mask needs reduction 'mean' or 'per_image', got 'none'")
    if mask.ndim != 4 or mask.shape[0] not in (1, b) or mask.shape[1] not in (1, c) or \
            tuple(mask.shape[2:]) != (ho, wo):
        raise ValueError(f"ssim: mask must have shape ({b} or 1, {c} or 1, {ho}, {wo}) (the map of "
                         f"padding={padding!r}), got {tuple(mask.shape)}")
    if mask.device != x.device:
        raise ValueError(f"ssim: mask is on {mask.device}, x on {x.device}")
    if not (mask.dtype == torch.bool or mask.is_floating_point()):
        raise TypeError(f"ssim: mask.dtype must be bool or floating, got {mask.dtype}")


# --------------------------------------------------------------------------------------------- 1. reference
def _reference(x: torch.Tensor, y: torch.Tensor, window: int, sigma: float, padding: str,
               data_range: float) -> torch.Tensor:
    """SSIM map (B, C, H', W') by one separable depthwise blur of the 5 stacked statistics (the spec)."""
    dt = _compute_dtype(x.dtype)
    x, y = x.to(dt), y.to(dt)
    c = x.shape[1]
    g = _gaussian_1d(window, sigma, dt, x.device)
    pad = window // 2 if padding == "same" else 0
    stack = torch.cat([x, y, x * x, y * y, x * y], dim=1)  # (B, 5C, H, W): reads 2, writes 5 maps
    kv = g.view(1, 1, window, 1).expand(5 * c, 1, window, 1)
    kh = g.view(1, 1, 1, window).expand(5 * c, 1, 1, window)
    s = F.conv2d(stack, kv, padding=(pad, 0), groups=5 * c)  # reads 5, writes 5 maps
    s = F.conv2d(s, kh, padding=(0, pad), groups=5 * c)  # reads 5, writes 5 maps
    mux, muy, exx, eyy, exy = s.split(c, dim=1)
    return _ssim_from_stats(mux, muy, exx, eyy, exy, data_range)


def _ssim_from_stats(mux, muy, exx, eyy, exy, data_range: float) -> torch.Tensor:
    c1, c2 = (0.01 * data_range) ** 2, (0.03 * data_range) ** 2
    mux2, muy2, muxy = mux * mux, muy * muy, mux * muy
    a1, a2 = 2 * muxy + c1, 2 * (exy - muxy) + c2
    b1, b2 = mux2 + muy2 + c1, (exx - mux2) + (eyy - muy2) + c2
    return (a1 * a2) / (b1 * b2)  # ≈ 10 elementwise reads + 8 writes over (B, C, H', W')


def ssim_5conv(x: torch.Tensor, y: torch.Tensor, *, window: int = 19, sigma: float = 1.5,
               padding: Padding = "same", data_range: float = 1.0, reduction: Reduction = "mean",
               mask: torch.Tensor | None = None) -> torch.Tensor:
    """The benchmark's literal formulation: 5 dense w×w depthwise convs (μx, μy, E[x²], E[y²], E[xy]).

    Same arguments, checks and result as :func:`ssim` (``backend`` aside); kept for the benchmark
    comparison and as a second, independent spec in the tests.
    """
    _check(x, y, window, sigma, padding, data_range, reduction, mask)
    dt = _compute_dtype(x.dtype)
    xc, yc = x.to(dt), y.to(dt)
    c = x.shape[1]
    g = _gaussian_1d(window, sigma, dt, x.device)
    w2 = torch.outer(g, g).expand(c, 1, window, window)
    pad = window // 2 if padding == "same" else 0
    stats = [F.conv2d(t, w2, padding=pad, groups=c) for t in (xc, yc, xc * xc, yc * yc, xc * yc)]
    return _reduce(_ssim_from_stats(*stats, data_range), mask, reduction)


def _reduce(smap: torch.Tensor, mask: torch.Tensor | None, reduction: str) -> torch.Tensor:
    """(B, C, H', W') map → per-image (masked) mean (B,), batch mean (), or the map itself."""
    if reduction == "none":
        return smap
    if mask is None:
        per_image = smap.mean(dim=(1, 2, 3))
    else:
        m = mask.to(smap.dtype).expand_as(smap)
        per_image = (smap * m).sum(dim=(1, 2, 3)) / _denominator(mask, smap.shape, smap.dtype)
    return per_image.mean() if reduction == "mean" else per_image


def _denominator(mask: torch.Tensor | None, shape: torch.Size, dtype: torch.dtype) -> torch.Tensor | None:
    """Σ mask per image (B,); an empty mask counts as 1 (its masked mean is then 0)."""
    if mask is None:
        return None
    den = mask.to(dtype).expand(shape).sum(dim=(1, 2, 3))
    return torch.where(den == 0, torch.ones_like(den), den)


# ----------------------------------------------------------------------------------------------- 2. kernels
# The bodies (``_kernel_ssim_fwd``, ``_kernel_ssim_bwd``) live in ``kernels/_ssim_triton.py`` to keep both
# files under ~400 lines; they are wrapped by ``triton.jit`` here, on first use.
@functools.cache
def _jitted() -> tuple[Any, Any]:
    return jit_kernels(vars(_ssim_triton), "_kernel_ssim_fwd", "_kernel_ssim_bwd")


# ---------------------------------------------------------------------------------------------- 3. launcher
_BH = 16  # output rows per program: (BH + w − 1)(1 + w/BH) FMAs per pixel is flat around 8..32


def _blocks(w_out: int) -> tuple[int, int]:
    bw = max(16, min(64, 1 << max(0, (w_out - 1).bit_length())))
    return _BH, bw


def _acc_type(dtype: torch.dtype) -> Any:
    import triton.language as tlang

    return tlang.float64 if dtype == torch.float64 else tlang.float32


def _launch_forward(x, y, mask, window, sigma, pad, data_range, store_map, n_partials):
    """Run the forward kernel; returns (map or None, tile sums (B*C, tiles), partials or None)."""
    fwd, _ = _jitted()
    b, c, h, w = x.shape
    ho, wo = (h, w) if pad else (h - window + 1, w - window + 1)
    dt = _compute_dtype(x.dtype)
    bh, bw = _blocks(wo)
    nth, ntw = math.ceil(ho / bh), math.ceil(wo / bw)
    g = _gaussian_1d(window, sigma, dt, x.device)
    sums = torch.empty((b * c, nth * ntw), dtype=dt, device=x.device)
    smap = torch.empty((b, c, ho, wo), dtype=dt, device=x.device) if store_map else sums
    parts = torch.empty((n_partials, b * c, ho, wo), dtype=dt, device=x.device) if n_partials else sums
    if mask is not None and mask.dtype == torch.bool:
        mask = mask.view(torch.uint8)
    m = mask.expand(b, c, ho, wo) if mask is not None else sums
    ms = m.stride() if mask is not None else (0, 0, 0, 0)
    c1, c2 = (0.01 * data_range) ** 2, (0.03 * data_range) ** 2
    with device_guard(x):
        fwd[(ntw * nth * b * c,)](
            x, y, g, m, smap, parts, sums, c, h, w, ho, wo, ntw, nth, *x.stride(), *y.stride(), *ms, c1, c2,
            PAD=pad, WIN=window, BH=bh, BW=bw, HAS_MASK=mask is not None, STORE_MAP=store_map,
            NPART=n_partials, ACC=_acc_type(x.dtype), num_warps=4,
        )
    return (smap if store_map else None), sums, (parts if n_partials else None)


def _launch_backward(x, y, parts, wmap, scale, window, sigma, pad, need_x, need_y):
    """Run the backward kernel: (dx or None, dy or None) in the input dtype and shape (contiguous)."""
    _, bwd = _jitted()
    b, c, h, w = x.shape
    ho, wo = parts.shape[-2:]
    dt = _compute_dtype(x.dtype)
    bh, bw = _blocks(w)
    nth, ntw = math.ceil(h / bh), math.ceil(w / bw)
    g = _gaussian_1d(window, sigma, dt, x.device)
    gx = torch.empty((b, c, h, w), dtype=x.dtype, device=x.device) if need_x else parts
    gy = torch.empty((b, c, h, w), dtype=y.dtype, device=y.device) if need_y else parts
    ws = wmap.stride() if wmap is not None else (0, 0, 0, 0)
    with device_guard(x):
        bwd[(ntw * nth * b * c,)](
            x, y, g, parts, (wmap if wmap is not None else parts), scale.to(dt).contiguous(), gx, gy,
            c, h, w, ho, wo, ntw, nth, *x.stride(), *y.stride(), *ws,
            PADT=window - 1 - pad, WIN=window, BH=bh, BW=bw, HAS_W=wmap is not None,
            GRAD_X=need_x, GRAD_Y=need_y, ACC=_acc_type(x.dtype), num_warps=4,
        )
    return (gx if need_x else None), (gy if need_y else None)


# ------------------------------------------------------------------------------------- 4. autograd function
class _SSIMFunction(torch.autograd.Function):
    """Per-image (masked) mean SSIM (B,), or the map (B, C, H', W') when ``per_pixel``."""

    @staticmethod
    def forward(ctx, x, y, mask, window, sigma, padding, data_range, per_pixel):
        pad = window // 2 if padding == "same" else 0
        need_x, need_y = ctx.needs_input_grad[0], ctx.needs_input_grad[1]
        n_partials = 0 if not (need_x or need_y) else (4 if need_y else 3)
        smap, sums, parts = _launch_forward(x, y, mask, window, sigma, pad, data_range, per_pixel, n_partials)
        b, c = x.shape[:2]
        shape = torch.Size((b, c, *_map_hw(x, window, pad)))
        den = _denominator(mask, shape, sums.dtype)
        if per_pixel:
            out = smap
        else:
            total = sums.view(b, -1).sum(dim=1)
            out = total / den if den is not None else total / math.prod(shape[1:])
        ctx.save_for_backward(x, y, parts, den)
        ctx.cfg = (window, sigma, pad, per_pixel)
        return out

    @staticmethod
    def backward(ctx, grad):
        x, y, parts, den = ctx.saved_tensors
        window, sigma, pad, per_pixel = ctx.cfg
        need_x, need_y = ctx.needs_input_grad[0], ctx.needs_input_grad[1]
        if parts is None or not (need_x or need_y):
            return (None,) * 8
        b, c = x.shape[:2]
        if per_pixel:
            wmap, scale = grad, torch.ones(b, device=x.device)
        else:
            n = den if den is not None else torch.full((b,), float(c * math.prod(parts.shape[-2:])),
                                                        dtype=grad.dtype, device=grad.device)
            wmap, scale = None, grad / n
        dx, dy = _launch_backward(x, y, parts, wmap, scale, window, sigma, pad, need_x, need_y)
        return dx, dy, None, None, None, None, None, None


def _map_hw(x: torch.Tensor, window: int, pad: int) -> tuple[int, int]:
    h, w = x.shape[-2:]
    return (h, w) if pad else (h - window + 1, w - window + 1)


# ------------------------------------------------------------------------------------------- 5. dispatcher
def ssim(x: torch.Tensor, y: torch.Tensor, *, window: int = 11, sigma: float = 1.5,
         padding: Padding = "same", data_range: float = 1.0, reduction: Reduction = "mean",
         mask: torch.Tensor | None = None, backend: str = "auto") -> torch.Tensor:
    """Gaussian-window SSIM of ``x`` against ``y`` (differentiable w.r.t. both).

    Parameters
    ----------
    x, y : (B, C, H, W) float16 / bfloat16 / float32 / float64 tensors, same shape, dtype and device,
        intensities in [0, data_range] (not checked; the training loss sees unclamped outputs).
        Any strides (non-contiguous views work).
    window : int, default 11
        Odd Gaussian width in 3..31 (11 = evaluation metric, 19 = SR-CACO-2 training loss).
    sigma : float, default 1.5
        Gaussian standard deviation in pixels.
    padding : {"same", "valid"}, default "same"
        "same": zero padding w//2, map (H, W) (the training loss); "valid": no padding, map
        (H − w + 1, W − w + 1) (the evaluation metric; needs H, W ≥ w).
    data_range : float, default 1.0
        L in C1 = (0.01·L)², C2 = (0.03·L)².
    reduction : {"mean", "none", "per_image"}, default "mean"
        "mean": batch mean of the per-image means, () ; "per_image": (B,); "none": the map (B, C, H', W').
    mask : (B or 1, 1 or C, H', W') bool or float tensor, optional
        Weights over the map for a masked per-image mean Σ mask·S / Σ mask (an empty mask gives 0).
        Not differentiated; not allowed with ``reduction="none"``.
    backend : {"auto", "triton", "torch"}, default "auto"
        "auto": the Triton kernel on CUDA, the torch reference elsewhere (see ``kernels._dispatch``).

    Returns
    -------
    Tensor, float32 (float64 for float64 inputs), shape as ``reduction`` says.

    Raises
    ------
    TypeError
        Non-tensor inputs, unsupported or mismatched dtypes.
    ValueError
        Wrong ndim, mismatched shapes or devices, bad window/sigma/padding/reduction/mask, image smaller
        than the window with "valid".

    See Also
    --------
    ssim_loss : ``1 − ssim``. The trainers build the benchmark's ``−λ·SSIM`` term from :func:`ssim`.
    ssim_5conv : the benchmark's 5-dense-conv formulation (same values).

    Examples
    --------
    >>> g = torch.Generator().manual_seed(0)
    >>> x = torch.rand(2, 1, 37, 45, generator=g)
    >>> float(ssim(x, x, window=19))
    1.0
    >>> ssim(x, torch.rand(2, 1, 37, 45, generator=g), padding="valid", reduction="per_image").shape
    torch.Size([2])
    """
    _check(x, y, window, sigma, padding, data_range, reduction, mask)
    if resolve_backend(backend, x, y, *(() if mask is None else (mask,)), op="ssim") == "torch":
        return _reduce(_reference(x, y, window, sigma, padding, float(data_range)), mask, reduction)
    out = _SSIMFunction.apply(x, y, mask, window, float(sigma), padding, float(data_range),
                              reduction == "none")
    return out.mean() if reduction == "mean" else out


def ssim_loss(x: torch.Tensor, y: torch.Tensor, **kwargs: Any) -> torch.Tensor:
    """``1 − ssim(x, y, **kwargs)`` (same arguments as :func:`ssim`); 0 for identical images.

    The SR-CACO-2 loss term is ``−λ·SSIM`` (negative); it differs from ``λ·ssim_loss`` by the constant
    λ only, so gradients are identical.
    """
    return 1.0 - ssim(x, y, **kwargs)
