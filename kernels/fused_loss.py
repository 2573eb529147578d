"""The SR-CACO-2 training loss ``l2·MSE − λ·SSIM(window 19, σ 1.5, zero "same" padding)`` as one fused op.

Motivation
----------
The benchmark trains every network on ``MSE − 5·SSIM`` (docs/protocol.md#losses). Computed as separate ops,
the MSE alone reads sr and hr and writes (sr − hr), its square and a gradient; the SSIM kernel reads them
again. Fused, the forward reads sr and hr once and emits both tile sums; the backward writes one gradient that
already holds both terms.

Bytes moved per pixel (b_sr, b_hr bytes per element; fp32 partials)
-------------------------------------------------------------------
- Separate ops (``mean((sr.float() − hr)²) − λ·srcaco2.kernels.ssim.ssim``), fp32: cast (bf16 only: 2 + 4),
  diff
  (8 + 4), square (4 + 4), mean (4), SSIM forward (8 + 12 partials) → ≈ 48 B/px forward; backward: MSE
  chain (≈ 16), SSIM backward (12 + 8 + 4), gradient sum (12) → ≈ 52 B/px; ≈ 100 B/px in all.
- Fused (this op): forward reads sr, hr (b_sr + b_hr) and writes the 3 partials ∂S/∂μx, ∂S/∂E[x²],
  ∂S/∂E[xy] (12 B); backward reads the partials (12), sr, hr (b_sr + b_hr) and writes dsr (b_sr):
  2·(b_sr + b_hr) + 24 + b_sr = 44 B/px in fp32 (38 B/px with bf16 sr), against a floor of
  b_sr + b_hr (forward) + b_sr + b_hr + b_sr (backward, recomputing the statistics) = 20 B/px fp32.
  The 24 B/px above the floor buy a backward that does not redo the forward's 5 blurs (2× FLOPs).
- The per-tile sums ((B·C) × tiles × 2 floats) and the final scalar arithmetic are negligible.

Gradient: ``dL/dsr = −λ/N · dΣS/dsr + 2·l2/N · (sr − hr)`` (N = B·C·H·W; ``srcaco2.kernels.ssim`` has
dΣS/dsr),
computed in the SSIM backward kernel with the MSE term added before the single store.
"""

from __future__ import annotations

import math

import torch

from srcaco2.kernels import _ssim_ops
from srcaco2.kernels._dispatch import resolve_backend

__all__ = ["mse_ssim_loss"]


# --------------------------------------------------------------------------------------------- 1. reference
def _reference(
    sr: torch.Tensor, hr: torch.Tensor, window: int, sigma: float, l2_weight: float, ssim_weight: float
) -> tuple[torch.Tensor, torch.Tensor, torch.Tensor]:
    """Separate torch ops in float32 (float64 for float64 sr): (loss, mse, ssim) scalars."""
    from srcaco2.kernels.ssim import _reference as ssim_map

    dt = _ssim_ops.compute_dtype(sr.dtype)
    sr, hr = sr.to(dt), hr.to(dt)
    mse = torch.mean((sr - hr) ** 2)
    s = ssim_map(sr, hr, window, sigma, "same", 1.0).mean()
    return l2_weight * mse - ssim_weight * s, mse, s


# ----------------------------------------------------------------- 2.-4. kernels, launcher, custom ops
# The SSIM kernels with their MSE constexpr (kernels/_ssim_triton.py) behind the custom ops
# srcaco2::mse_ssim_loss / srcaco2::mse_ssim_loss_backward (kernels/_ssim_ops.py).


# ------------------------------------------------------------------------------------------- 5. dispatcher
def _check(sr, hr, window, sigma, l2_weight, ssim_weight) -> None:
    _ssim_ops.check_image_pair("mse_ssim_loss", ("sr", "hr"), sr, hr, same_dtype=False)
    _ssim_ops.check_window_sigma("mse_ssim_loss", window, sigma)
    for name, v in (("l2_weight", l2_weight), ("ssim_weight", ssim_weight)):
        if not (isinstance(v, (int, float)) and math.isfinite(v)):
            raise ValueError(f"mse_ssim_loss: {name} must be a finite number, got {v!r}")


def mse_ssim_loss(
    sr: torch.Tensor,
    hr: torch.Tensor,
    *,
    l2_weight: float = 1.0,
    ssim_weight: float = 5.0,
    window: int = 19,
    sigma: float = 1.5,
    backend: str = "auto",
) -> tuple[torch.Tensor, torch.Tensor, torch.Tensor]:
    """``l2_weight · mean((sr − hr)²) − ssim_weight · SSIM(sr, hr)`` in one forward and one backward kernel.

    SSIM: Gaussian window ``window`` (σ ``sigma``), zero "same" padding, data range 1, mean over the
    batch of the per-image means (= the mean of the whole map, all images being the same size).

    Parameters
    ----------
    sr : (B, C, H, W) float16 / bfloat16 / float32 / float64, the network output (not clamped); any
        strides. Read in its own dtype (no cast pass); the gradient is returned in it.
    hr : (B, C, H, W) float tensor in [0, 1], same shape and device (its dtype may differ from sr's).
    l2_weight, ssim_weight : float, defaults 1 and 5 (the benchmark's recipe).
    window : odd int in 3..31, default 19.  sigma : float > 0, default 1.5.
    backend : {"auto", "triton", "torch"}: the Triton kernels on CUDA, the torch reference elsewhere.

    Returns
    -------
    loss, mse, ssim : () float32 tensors (float64 for float64 sr), differentiable w.r.t. sr and hr.

    Raises
    ------
    TypeError, ValueError
        Non-tensor, non-float, mismatched shapes/devices, bad window/sigma/weights.

    Examples
    --------
    >>> g = torch.Generator().manual_seed(0)
    >>> hr = torch.rand(2, 1, 32, 40, generator=g)
    >>> loss, mse, s = mse_ssim_loss(hr, hr)
    >>> round(float(loss), 6), float(mse)
    (-5.0, 0.0)
    """
    _check(sr, hr, window, sigma, l2_weight, ssim_weight)
    if resolve_backend(backend, sr, hr, op="mse_ssim_loss") == "torch":
        return _reference(sr, hr, window, float(sigma), float(l2_weight), float(ssim_weight))
    n_partials = 0
    if torch.is_grad_enabled():
        n_partials = 4 if hr.requires_grad else (3 if sr.requires_grad else 0)
    loss, mse, s, _ = _ssim_ops.mse_ssim_loss_op(
        sr, hr, window, float(sigma), float(l2_weight), float(ssim_weight), n_partials
    )
    return loss, mse, s
