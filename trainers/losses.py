"""Training loss of the benchmark: ``MSE − 5·SSIM(window 19, zero same padding)`` (docs/protocol.md#losses).

Multi-output networks (`ModelInfo.multi_output`) return a list of outputs in training mode, final
last. Each output is scored against a target of its own size: the HR crop itself when the sizes
agree (SRFBN: the mean of the loss over its step outputs), otherwise
``clamp(bicubic_align_corners(HR → size_k), 0, 1)`` (ProSR, MS-LapSRN), and the loss is the mean
over the K + 1 outputs — exactly ``[loss(final, H) + Σ_k loss(out_k, H_k)] / (K + 1)``.
SSIM and the accumulation run in float32 whatever the autocast dtype of the network.

With the default SSIM (``ssim_fn=None``) and "same" padding, one output's loss is the fused op
`srcaco2.kernels.fused_loss.mse_ssim_loss`: on CUDA one Triton forward and one backward kernel read sr (in its
own dtype, no cast pass) and hr once per pass and write one gradient; elsewhere its torch reference.
"""

from __future__ import annotations

from collections.abc import Sequence
from typing import TYPE_CHECKING, Any

if TYPE_CHECKING:  # pragma: no cover
    import torch

    from srcaco2.trainers.config import LossConfig

__all__ = ["SRLoss", "image_loss", "resized_target"]


def resized_target(hr: torch.Tensor, size: tuple[int, int]) -> torch.Tensor:
    """HR resized to `size` as the original's progressive targets: bicubic, align_corners=True, clamped.

    Parameters
    ----------
    hr : (B, C, H, W) float32 in [0, 1]
    size : (h, w) output size in pixels

    Returns
    -------
    (B, C, h, w) float32 in [0, 1]; `hr` itself when the size already matches.
    """
    import torch.nn.functional as F

    if tuple(hr.shape[-2:]) == tuple(size):
        return hr
    return F.interpolate(hr, size=tuple(size), mode="bicubic", align_corners=True).clamp_(0.0, 1.0)


def image_loss(
    sr: torch.Tensor,
    hr: torch.Tensor,
    *,
    l2_weight: float = 1.0,
    ssim_weight: float = 5.0,
    window: int = 19,
    sigma: float = 1.5,
    padding: str = "same",
    ssim_fn: Any = None,
    backend: str = "auto",
) -> tuple[torch.Tensor, dict[str, torch.Tensor]]:
    """``l2_weight · mean((sr − hr)²) − ssim_weight · SSIM(sr, hr)`` for one output, in float32.

    Parameters
    ----------
    sr : (B, 1, H, W) float tensor (any dtype; cast to float32), not clamped
    hr : (B, 1, H, W) float32 in [0, 1]

    ssim_fn : callable, optional
        SSIM implementation with the signature of `srcaco2.kernels.ssim.ssim`; the benchmark passes
        ``srcaco2.kernels.ssim.ssim_5conv`` for the original's formulation. Default: the fused MSE − SSIM op
        (`srcaco2.kernels.fused_loss.mse_ssim_loss`) for "same" padding, `srcaco2.kernels.ssim.ssim` for
        "valid".
    backend : {"auto", "triton", "torch"}
        Backend of the default implementations (see `srcaco2.kernels._dispatch`): Triton on CUDA with "auto".

    Returns
    -------
    loss : () float32 tensor (with gradient w.r.t. `sr`)
    parts : dict with the detached ``mse`` and ``ssim`` values (float32 scalars)
    """
    import functools

    import torch

    if ssim_fn is None and padding == "same":
        from srcaco2.kernels.fused_loss import mse_ssim_loss

        total, mse, s = mse_ssim_loss(
            sr, hr, l2_weight=l2_weight, ssim_weight=ssim_weight, window=window, sigma=sigma, backend=backend
        )
        return total.float(), {"mse": mse.detach().float(), "ssim": s.detach().float()}
    if ssim_fn is None:
        from srcaco2.kernels.ssim import ssim

        ssim_fn = functools.partial(ssim, backend=backend)

    sr = sr.float()
    hr = hr.float()
    mse = torch.mean((sr - hr) ** 2)
    total = l2_weight * mse if l2_weight else torch.zeros((), device=sr.device)
    if ssim_weight:
        s = ssim_fn(sr, hr, window=window, sigma=sigma, padding=padding, data_range=1.0, reduction="mean")
        total = total - ssim_weight * s.float()
    else:
        s = torch.zeros((), device=sr.device)
    return total, {"mse": mse.detach(), "ssim": s.detach()}


class SRLoss:
    """The configured loss, callable on one output or the list of a multi-output network.

    Parameters
    ----------
    config : LossConfig
        Weights and SSIM settings.
    ssim_fn : callable, optional
        SSIM implementation (see `image_loss`).
    backend : {"auto", "triton", "torch"}
        Backend of the default (fused) implementation (see `image_loss`).

    Examples
    --------
    >>> import torch
    >>> from srcaco2.trainers.config import LossConfig
    >>> loss, parts = SRLoss(LossConfig())(torch.rand(2, 1, 32, 32), torch.rand(2, 1, 32, 32))
    >>> sorted(parts)
    ['mse', 'ssim']
    """

    def __init__(self, config: LossConfig, *, ssim_fn: Any = None, backend: str = "auto") -> None:
        self.config = config
        self.ssim_fn = ssim_fn
        self.backend = backend

    def __repr__(self) -> str:
        c = self.config
        return (
            f"SRLoss({c.l2_weight}·MSE − {c.ssim_weight}·SSIM(window={c.ssim_window}, "
            f"sigma={c.ssim_sigma}, padding={c.ssim_padding!r}))"
        )

    def __call__(
        self, outputs: Any | Sequence[Any], hr: torch.Tensor
    ) -> tuple[torch.Tensor, dict[str, torch.Tensor]]:
        """Loss of `outputs` (a tensor, or a list with the final output last) against `hr`.

        Returns the float32 loss and the detached ``mse`` / ``ssim`` of the final output.
        """
        outs = list(outputs) if isinstance(outputs, (list, tuple)) else [outputs]
        c = self.config
        total = None
        parts: dict[str, Any] = {}
        for out in outs:
            target = resized_target(hr.float(), tuple(out.shape[-2:]))
            value, parts = image_loss(
                out,
                target,
                l2_weight=c.l2_weight,
                ssim_weight=c.ssim_weight,
                window=c.ssim_window,
                sigma=c.ssim_sigma,
                padding=c.ssim_padding,
                ssim_fn=self.ssim_fn,
                backend=self.backend,
            )
            total = value if total is None else total + value
        return total / len(outs), parts
