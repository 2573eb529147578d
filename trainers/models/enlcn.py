"""ENLCN: EDSR body with Efficient Non-Local Contrastive Attention (kernelised linear attention).

Paper: "Efficient Non-Local Contrastive Attention for Image Super-Resolution", Xia et al., AAAI 2022.

Benchmark variant (``reference/enlcn_x{2,4,8}.json``)
-----------------------------------------------------
- Same skeleton as NLSN: ``head`` = conv(in_chans, 256, 3); ``body`` (a ModuleList) = [ENLCA,
  8 x ResBlock, ENLCA, ..., ENLCA, conv(256, 256, 3)] (ENLCA at 0, 9, 18, 27, 36, conv at 37);
  global skip; ``tail`` = Upsampler (log2 s x [conv 256->1024, PixelShuffle 2]) + conv(256, in_chans, 3).
- ResBlock res_scale 0.1; ``sub_mean``/``add_mean`` 3-channel MeanShift in the state_dict, unused.
- The contrastive loss that ENLCA computes in training mode is dropped (the benchmark ignores it):
  ``forward`` returns only the SR tensor in both modes.

ENLCA (channel n, reduction 4)
------------------------------
``conv_match1``/``conv_match2`` = conv(n, n/4, 1), ``conv_assembly`` = conv(n, n, 1), no activations.
``q = normalize(conv_match1(x), dim=channels, eps=5e-5) * sqrt(6)``, ``k`` likewise from
``conv_match2``, ``v = conv_assembly(x)``. Positive random features with the persistent buffer
``attn_fn.projection_matrix`` ``P (128, n/4)`` (Gaussian orthogonal random features drawn at
construction, never redrawn): ``phi(u) = 128^-0.5 * (exp(u P^T - |u|^2 / 2) + 1e-4)``;
``out = phi(q) (phi(k)^T v) / (phi(q) . sum_n phi(k))``; result ``* res_scale + x``. Deterministic in
eval (P is loaded with the weights).

Hyperparameters (overrides): ``n_resblock`` (32, singular as in the original), ``n_feats`` (256),
``res_scale`` (0.1), ``img_range`` (1.0, MeanShift only). ``upscale``/``in_chans`` come from the
builder's ``scale``/``in_channels``. Init: PyTorch defaults; P from ``torch.randn`` + QR (global RNG,
on CPU, like the original).
"""

from __future__ import annotations

import math

import torch
import torch.nn.functional as F
from torch import nn

from srcaco2.trainers.models._edsr_common import MeanShift, attention_edsr_parts, default_conv
from srcaco2.trainers.models._hparams import resolve_hparams
from srcaco2.trainers.models.registry import register_model

__all__ = ["ENLA", "ENLCA", "ENLCN", "build", "DEFAULT_HPARAMS", "gaussian_orthogonal_random_matrix"]

DEFAULT_HPARAMS: dict[str, object] = {
    "upscale": 4,
    "n_resblock": 32,
    "n_feats": 256,
    "res_scale": 0.1,
    "img_range": 1.0,
    "in_chans": 1,
}


def gaussian_orthogonal_random_matrix(nb_rows: int, nb_columns: int) -> torch.Tensor:
    """Performer-style projection ``(nb_rows, nb_columns)`` float32 on CPU (global torch RNG).

    Stacks transposed Q factors of QR decompositions of ``randn(nb_columns, nb_columns)`` blocks
    (the last one truncated), then scales row i by the norm of a fresh Gaussian vector.
    """
    blocks = []
    for _ in range(nb_rows // nb_columns):
        q, _ = torch.linalg.qr(torch.randn((nb_columns, nb_columns), device="cpu"), mode="reduced")
        blocks.append(q.t())
    remaining = nb_rows - (nb_rows // nb_columns) * nb_columns
    if remaining > 0:
        q, _ = torch.linalg.qr(torch.randn((nb_columns, nb_columns), device="cpu"), mode="reduced")
        blocks.append(q.t()[:remaining])
    final = torch.cat(blocks)
    multiplier = torch.randn((nb_rows, nb_columns), device="cpu").norm(dim=1)
    return torch.diag(multiplier) @ final


def _softmax_kernel(data: torch.Tensor, projection_matrix: torch.Tensor, eps: float = 1e-4) -> torch.Tensor:
    """Positive random features ``(b, h, n, m)`` of ``data (b, h, n, d)`` with ``P (m, d)``."""
    b, h = data.shape[:2]
    ratio = projection_matrix.shape[0] ** -0.5
    projection = projection_matrix.expand(b, h, *projection_matrix.shape).type_as(data)
    data_dash = torch.einsum("...id,...jd->...ij", data, projection)
    diag_data = (torch.sum(data**2, dim=-1) / 2.0).unsqueeze(dim=-1)
    return (ratio * (torch.exp(data_dash - diag_data) + eps)).type_as(data)


def _linear_attention(q: torch.Tensor, k: torch.Tensor, v: torch.Tensor) -> torch.Tensor:
    """Non-causal linear attention: ``(q (k^T v)) / (q . sum_n k)``."""
    k_cumsum = k.sum(dim=-2)
    d_inv = 1.0 / torch.einsum("...nd,...d->...n", q, k_cumsum.type_as(q))
    context = torch.einsum("...nd,...ne->...de", k, v)
    return torch.einsum("...de,...nd,...n->...ne", context, q, d_inv)


class ENLA(nn.Module):
    """Efficient non-local attention with a fixed (buffer) random-feature projection.

    Parameters
    ----------
    dim_heads : int
        Query/key dimension ``d``.
    nb_features : int
        Random features ``m`` (128 in ENLCN).
    """

    def __init__(self, dim_heads: int, nb_features: int = 128) -> None:
        super().__init__()
        self.dim_heads = int(dim_heads)
        self.nb_features = int(nb_features)
        buf = torch.empty(self.nb_features, self.dim_heads)
        if buf.device.type != "meta":
            buf.copy_(gaussian_orthogonal_random_matrix(self.nb_features, self.dim_heads))
        self.register_buffer("projection_matrix", buf)

    def forward(self, q: torch.Tensor, k: torch.Tensor, v: torch.Tensor) -> torch.Tensor:
        """``q, k (b, h, n, d)``, ``v (b, h, n, e)`` -> ``(b, h, n, e)``."""
        q = _softmax_kernel(q, self.projection_matrix)
        k = _softmax_kernel(k, self.projection_matrix)
        return _linear_attention(q, k, v)


class ENLCA(nn.Module):
    """Efficient Non-Local Contrastive Attention block (residual; contrastive loss dropped).

    Parameters
    ----------
    channel : int
        Feature channels ``n``.
    reduction : int
        Query/key width ``n // reduction``.
    res_scale : float
        Residual scaling of the attention output.
    """

    def __init__(self, channel: int, *, reduction: int = 4, res_scale: float = 0.1) -> None:
        super().__init__()
        self.conv_match1 = nn.Sequential(default_conv(channel, channel // reduction, 1))
        self.conv_match2 = nn.Sequential(default_conv(channel, channel // reduction, 1))
        self.conv_assembly = nn.Sequential(default_conv(channel, channel, 1))
        self.res_scale = float(res_scale)
        self.attn_fn = ENLA(dim_heads=channel // reduction, nb_features=128)
        self.k = math.sqrt(6)

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        x_embed_1 = self.conv_match1(x)
        x_embed_2 = self.conv_match2(x)
        x_assembly = self.conv_assembly(x)
        x_embed_2 = F.normalize(x_embed_2, p=2, dim=1, eps=5e-5) * self.k
        x_embed_1 = F.normalize(x_embed_1, p=2, dim=1, eps=5e-5) * self.k
        n, c, h, w = x_embed_1.shape
        x_embed_1 = x_embed_1.permute(0, 2, 3, 1).reshape(n, 1, h * w, c)
        x_embed_2 = x_embed_2.permute(0, 2, 3, 1).reshape(n, 1, h * w, c)
        x_assembly = x_assembly.permute(0, 2, 3, 1).reshape(n, 1, h * w, -1)
        out = self.attn_fn(x_embed_1, x_embed_2, x_assembly).squeeze(1)
        return out.permute(0, 2, 1).reshape(n, -1, h, w) * self.res_scale + x


class ENLCN(nn.Module):
    """ENLCN network (benchmark variant); see the module docstring.

    Parameters
    ----------
    upscale, in_chans : int
        Scale factor (2, 4, 8); image channels.
    n_resblock, n_feats, res_scale, img_range
        See the module docstring.
    """

    def __init__(
        self,
        *,
        upscale: int,
        in_chans: int = 1,
        n_resblock: int = 32,
        n_feats: int = 256,
        res_scale: float = 0.1,
        img_range: float = 1.0,
    ) -> None:
        super().__init__()
        self.upscale = int(upscale)
        sub_mean, head, body, tail = attention_edsr_parts(
            upscale=self.upscale,
            in_chans=in_chans,
            n_resblocks=n_resblock,
            n_feats=n_feats,
            res_scale=res_scale,
            img_range=img_range,
            attention=lambda: ENLCA(n_feats, reduction=4, res_scale=res_scale),
        )
        # registered in the original's state_dict order: sub_mean, add_mean, head, body, tail
        self.sub_mean = sub_mean
        self.add_mean = MeanShift(img_range, sign=1)
        self.head = head
        self.body = nn.ModuleList(body)
        self.tail = tail

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        """``(B, C, h, w)`` LR in [0, 1] -> ``(B, C, s*h, s*w)`` (not clamped)."""
        x = self.head(x)
        res = x
        for block in self.body:
            res = block(res)
        res += x
        return self.tail(res)


@register_model(
    "enlcn",
    scales=(2, 3, 4, 8),  # what the architecture builds (tested at every scale)
    family="post-upsampling",
    display_name="ENLCN",
    table_rank=4,
    paper="ENLCN, Xia et al., AAAI 2022",
    tiny={"n_feats": 8, "n_resblock": 2},
    hparams=DEFAULT_HPARAMS,
    reach=None,
    global_reason="linear (kernelised) non-local attention over all positions",
)
def build(scale: int, in_channels: int = 1, **overrides: object) -> nn.Module:
    """Build the benchmark's ENLCN: ``reference/enlcn_x<scale>.json``'s exact layout without overrides.

    ``scale`` 2, 4 or 8 sets ``log2(scale)`` pixel-shuffle stages; ``in_channels`` is 1 in the
    benchmark. Overrides: ``n_resblock``, ``n_feats``, ``res_scale``, ``img_range`` (any other name
    raises ValueError listing these). The `ENLCN` maps ``(B, C, h, w)`` float32 in [0, 1] to
    ``(B, C, s*h, s*w)``, in train and eval mode.
    """
    fixed = {"upscale": int(scale), "in_chans": int(in_channels)}
    hp = resolve_hparams("enlcn", DEFAULT_HPARAMS, overrides, fixed=fixed)
    return ENLCN(**hp)  # type: ignore[arg-type]
