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

import math
from typing import Any, Literal

import torch
import torch.nn.functional as F

from srcaco2.kernels import _ssim_ops
from srcaco2.kernels._dispatch import resolve_backend

__all__ = ["ssim", "ssim_loss", "ssim_5conv"]

Padding = Literal["same", "valid"]
Reduction = Literal["mean", "none", "per_image"]


_gaussian_1d = _ssim_ops.taps  # (window, sigma, dtype, device) -> (window,) taps, cached per device
_compute_dtype = _ssim_ops.compute_dtype
_denominator = _ssim_ops.denominator
_jitted = _ssim_ops._jitted  # (forward, backward) triton.JITFunction, built on first use


_PADDINGS = ("same", "valid")
_REDUCTIONS = ("mean", "none", "per_image")


def _check(x, y, window, sigma, padding, data_range, reduction, mask) -> None:
    """Validate the arguments of :func:`ssim` with messages that say what is allowed."""
    _ssim_ops.check_image_pair("ssim", ("x", "y"), x, y, same_dtype=True)
    _ssim_ops.check_window_sigma("ssim", window, sigma)
    if padding not in _PADDINGS:
        raise ValueError(f"ssim: padding must be one of {_PADDINGS}, got {padding!r}")
    if not (isinstance(data_range, (int, float)) and math.isfinite(data_range) and data_range > 0):
        raise ValueError(f"ssim: data_range must be a finite number > 0, got {data_range!r}")
    if reduction not in _REDUCTIONS:
        raise ValueError(f"ssim: reduction must be one of {_REDUCTIONS}, got {reduction!r}")
    b, c, h, w = x.shape
    if padding == "valid" and (h < window or w < window):
        raise ValueError(
            f"ssim: padding='valid' needs H, W >= window={window}, got H={h}, W={w}; "
            "use padding='same' or a smaller window"
        )
    if mask is None:
        return
    ho, wo = (h, w) if padding == "same" else (h - window + 1, w - window + 1)
    if not isinstance(mask, torch.Tensor):
        raise TypeError(f"ssim: mask must be a torch.Tensor or None, got {type(mask).__name__}")
    if reduction == "none":
        raise ValueError("ssim: mask needs reduction 'mean' or 'per_image', got 'none'")
    if (
        mask.ndim != 4
        or mask.shape[0] not in (1, b)
        or mask.shape[1] not in (1, c)
        or tuple(mask.shape[2:]) != (ho, wo)
    ):
        raise ValueError(
            f"ssim: mask must have shape ({b} or 1, {c} or 1, {ho}, {wo}) (the map of "
            f"padding={padding!r}), got {tuple(mask.shape)}"
        )
    if mask.device != x.device:
        raise ValueError(f"ssim: mask is on {mask.device}, x on {x.device}")
    if not (mask.dtype == torch.bool or mask.is_floating_point()):
        raise TypeError(f"ssim: mask.dtype must be bool or floating, got {mask.dtype}")


# --------------------------------------------------------------------------------------------- 1. reference
def _reference(
    x: torch.Tensor, y: torch.Tensor, window: int, sigma: float, padding: str, data_range: float
) -> torch.Tensor:
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


def ssim_5conv(
    x: torch.Tensor,
    y: torch.Tensor,
    *,
    window: int = 19,
    sigma: float = 1.5,
    padding: Padding = "same",
    data_range: float = 1.0,
    reduction: Reduction = "mean",
    mask: torch.Tensor | None = None,
) -> torch.Tensor:
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


# ------------------------------------------------------------------------------- 2.-4. kernels, launch, ops
# Kernel bodies: ``kernels/_ssim_triton.py``; taps cache, launchers and the custom ops ``srcaco2::ssim`` /
# ``srcaco2::ssim_backward`` (autograd and fake implementations for torch.compile): ``kernels/_ssim_ops.py``.


# ------------------------------------------------------------------------------------------- 5. dispatcher
def ssim(
    x: torch.Tensor,
    y: torch.Tensor,
    *,
    window: int = 11,
    sigma: float = 1.5,
    padding: Padding = "same",
    data_range: float = 1.0,
    reduction: Reduction = "mean",
    mask: torch.Tensor | None = None,
    backend: str = "auto",
) -> torch.Tensor:
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
        "auto": the Triton kernel on CUDA, the torch reference elsewhere (see ``srcaco2.kernels._dispatch``).

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
    pad = window // 2 if padding == "same" else 0
    n_partials = 4 if y.requires_grad else (3 if x.requires_grad else 0)
    if not torch.is_grad_enabled():
        n_partials = 0
    out, _, _ = _ssim_ops.ssim_op(
        x, y, mask, window, float(sigma), pad, float(data_range), reduction == "none", n_partials
    )
    return out.mean() if reduction == "mean" else out


def ssim_loss(x: torch.Tensor, y: torch.Tensor, **kwargs: Any) -> torch.Tensor:
    """``1 − ssim(x, y, **kwargs)`` (same arguments as :func:`ssim`); 0 for identical images.

    The SR-CACO-2 loss term is ``−λ·SSIM`` (negative); it differs from ``λ·ssim_loss`` by the constant
    λ only, so gradients are identical.
    """
    return 1.0 - ssim(x, y, **kwargs)
