"""DFCAN (Deep Fourier Channel Attention Network), post-upsampling.

Paper: C. Qiao, D. Li, Y. Guo, et al., "Evaluation and development of deep neural networks for
image super-resolution in optical microscopy", Nature Methods 18, 194-202 (2021).

Benchmark variant (``reference/dfcan_x*.json``): ``input`` = Conv(1, 64, 3) + GELU (exact erf
form); ``RGs`` = 4 residual groups x 4 FCAB (keys ``RGs.g.RCABs.b``), each group adding its input
to the output of its 4 blocks; ``conv_gelu`` = Conv(64, 64 * s^2, 3) + GELU (the GELU fused into the
shuffle); ONE PixelShuffle(s) (also at x8); ``conv_sigmoid`` = Conv(64, 1, 3) + Sigmoid (outputs in (0, 1)).

FCAB: ``x1 = GELU(conv(GELU(conv(x))))``; ``f = (|fft2(x1)| + 1e-8) ** 0.8``, spectrum shifted by
``torch.roll(-(n // 2))`` along rows and columns (the original's custom shift: fftshift for even
sizes, ifftshift for odd ones); attention = Sigmoid(conv1x1(ReLU(conv1x1(avgpool(ReLU(conv3x3(f)))))))
with reduction 64 -> 4 -> 64; ``out = x + x1 * attention``.

AMP: cuFFT in half precision accepts only power-of-two sizes, so the FFT part runs in float32
with autocast disabled (docs/design.md#lessons).

Hyperparameters (overrides): ``num_features`` (64), ``num_groups`` (4), ``num_blocks`` (4 FCAB per
group), ``reduction_features`` (4), ``gamma`` (0.8). Init: PyTorch defaults (as the original).
"""

from __future__ import annotations

import torch
from torch import nn

from srcaco2.kernels.pixel_shuffle import PixelShuffle
from srcaco2.trainers.models._hparams import resolve_hparams
from srcaco2.trainers.models.registry import register_model

__all__ = ["DFCAN", "fft_power_spectrum", "build"]

_DEFAULTS = {"num_features": 64, "num_groups": 4, "num_blocks": 4, "reduction_features": 4, "gamma": 0.8}


def fft_power_spectrum(x: torch.Tensor, gamma: float = 0.8) -> torch.Tensor:
    """Shifted spectrum ``roll((|fft2(x)| + 1e-8) ** gamma, -(n // 2))`` per channel.

    Runs in float32 with autocast disabled (half-precision cuFFT needs power-of-two sizes).

    Parameters
    ----------
    x : (B, C, H, W) float tensor
        Features.
    gamma : float
        Exponent of the amplitude spectrum.

    Returns
    -------
    (B, C, H, W) tensor, float32 (or float64 for float64 input).
    """
    device_type = x.device.type if x.device.type in ("cuda", "cpu", "xpu") else "cpu"
    with torch.autocast(device_type=device_type, enabled=False):
        xf = x if x.dtype in (torch.float32, torch.float64) else x.float()
        f = torch.pow(torch.abs(torch.fft.fftn(xf, dim=(2, 3))) + 1e-8, gamma)
        h, w = f.shape[-2:]
        return torch.roll(f, shifts=(-(h // 2), -(w // 2)), dims=(2, 3))


class _FCAB(nn.Module):
    """Fourier channel attention block (class ``RCAB`` in the original)."""

    def __init__(self, channels: int, reduction_features: int, gamma: float) -> None:
        super().__init__()
        self.gamma = float(gamma)
        self.conv_gelu1 = nn.Sequential(nn.Conv2d(channels, channels, 3, padding=1), nn.GELU())
        self.conv_gelu2 = nn.Sequential(nn.Conv2d(channels, channels, 3, padding=1), nn.GELU())
        self.conv_relu1 = nn.Sequential(nn.Conv2d(channels, channels, 3, padding=1), nn.ReLU())
        self.avg_pool = nn.AdaptiveAvgPool2d(1)
        self.conv_relu2 = nn.Sequential(nn.Conv2d(channels, reduction_features, 1), nn.ReLU())
        self.conv_sigmoid = nn.Sequential(nn.Conv2d(reduction_features, channels, 1), nn.Sigmoid())

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        x1 = self.conv_gelu2(self.conv_gelu1(x))
        f = fft_power_spectrum(x1, self.gamma)
        w = self.conv_sigmoid(self.conv_relu2(self.avg_pool(self.conv_relu1(f))))
        return x + x1 * w


class _ResGroup(nn.Module):
    def __init__(self, channels: int, num_blocks: int, reduction_features: int, gamma: float) -> None:
        super().__init__()
        self.RCABs = nn.Sequential(*[_FCAB(channels, reduction_features, gamma) for _ in range(num_blocks)])

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        return self.RCABs(x) + x


class DFCAN(nn.Module):
    """DFCAN as configured by the benchmark (LR -> HR, sigmoid output).

    Parameters
    ----------
    scale : int
        Upscaling factor (one PixelShuffle(scale)).
    in_channels : int
        Image channels.
    num_features, num_groups, num_blocks, reduction_features : int
        Width, residual groups, FCAB per group, attention bottleneck width.
    gamma : float
        Spectrum exponent.
    """

    def __init__(
        self,
        scale: int,
        in_channels: int = 1,
        num_features: int = 64,
        num_groups: int = 4,
        num_blocks: int = 4,
        reduction_features: int = 4,
        gamma: float = 0.8,
    ) -> None:
        super().__init__()
        self.scale = int(scale)
        self.input = nn.Sequential(nn.Conv2d(in_channels, num_features, 3, padding=1), nn.GELU())
        self.RGs = nn.Sequential(
            *[_ResGroup(num_features, num_blocks, reduction_features, gamma) for _ in range(num_groups)]
        )
        # its GELU runs after the shuffle, fused into it (pointwise, so it commutes; keys unchanged)
        self.conv_gelu = nn.Sequential(nn.Conv2d(num_features, num_features * scale * scale, 3, padding=1))
        self.pixel_shuffle = PixelShuffle(scale, activation="gelu")
        self.conv_sigmoid = nn.Sequential(nn.Conv2d(num_features, in_channels, 3, padding=1), nn.Sigmoid())

    def forward(self, lr: torch.Tensor) -> torch.Tensor:
        """``lr : (B, C, h, w)`` float in [0, 1] -> ``(B, C, s*h, s*w)`` in (0, 1)."""
        x = self.RGs(self.input(lr))
        return self.conv_sigmoid(self.pixel_shuffle(self.conv_gelu(x)))


@register_model(
    "dfcan",
    scales=tuple(range(2, 9)),  # what the architecture builds (tested at every scale)
    family="post-upsampling",
    display_name="DFCAN",
    table_rank=1,
    paper="DFCAN, Qiao et al., Nature Methods 2021",
    tiny={"num_features": 8, "num_groups": 1, "num_blocks": 2, "reduction_features": 2},
    hparams=_DEFAULTS,
    reach=None,
    global_reason="Fourier transforms and global average pooling over the whole image",
)
def build(scale: int, in_channels: int = 1, **overrides) -> nn.Module:
    """Build the benchmark DFCAN (overrides: ``num_features``, ``num_groups``, ``num_blocks``,
    ``reduction_features``, ``gamma``)."""
    hp = resolve_hparams("dfcan", _DEFAULTS, overrides)
    return DFCAN(scale, in_channels, **hp)
