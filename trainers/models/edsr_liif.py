"""EDSR-LIIF: EDSR-baseline encoder + Local Implicit Image Function decoder.

Paper: "Learning Continuous Image Representation with Local Implicit Image Function", Chen, Liu &
Wang, CVPR 2021 (encoder: EDSR-baseline, Lim et al., CVPRW 2017).

Benchmark variant (``reference/edsr_liif_x{2,4,8}.json``; file from LIVIAETS/sr-caco-2)
--------------------------------------------------------------------------------------
- ``encoder`` = EDSR-baseline without upsampler: ``head.0`` conv(in_chans, 64, 3); 16 ResBlocks
  (conv, ReLU, conv, res_scale 1); ``body.16`` conv(64, 64, 3); output ``body(h) + h`` (64 channels
  at LR size). ``encoder.sub_mean``/``encoder.add_mean``: 3-channel MeanShift, never applied.
- ``imnet`` = MLP 580 -> 256 -> 256 -> 256 -> 256 -> in_chans with ReLU (``imnet.layers.0/2/4/6/8``);
  580 = 64*9 (3x3 feature unfold, zero padding 1, channel-major ``c*9 + k``) + 2 (relative coord)
  + 2 (cell).
- ``forward(lr)`` returns the full ``(B, C, s*h, s*w)`` image: it queries every HR pixel centre of
  the ``s*h x s*w`` grid in [-1, 1] (coords ``(y, x)``) with cell ``(2/(s*h), 2/(s*w))``, local
  ensemble over the 4 nearest LR feature vectors (nearest ``grid_sample``, align_corners False),
  predictions blended with the diagonally opposite area. The original decodes every query in one
  pass; here the (pointwise) MLP runs over chunks of `query_chunk` queries to bound memory, which
  gives the same per-pixel values.

Hyperparameters (overrides): ``n_resblocks`` (16), ``n_feats`` (64), ``rgb_range`` (1.0, MeanShift
only), ``local_ensemble`` (True), ``feat_unfold`` (True), ``cell_decode`` (True), ``res_scale``
(1.0, constructor default), ``hidden_list`` ([256, 256, 256, 256], MLP widths; not a benchmark
hyperparameter, for small test models). ``scale``/``in_chans`` come from the builder. The weights
do not depend on the scale (1,565,657 parameters for x2/x4/x8). Init: PyTorch defaults.
"""

from __future__ import annotations

from collections.abc import Sequence

import torch
import torch.nn.functional as F
from torch import nn

from srcaco2.trainers.models._edsr_common import MeanShift, ResBlock, default_conv
from srcaco2.trainers.models._hparams import resolve_hparams
from srcaco2.trainers.models._reach import Reach
from srcaco2.trainers.models.registry import register_model

__all__ = ["EDSREncoder", "MLP", "EDSR_LIIF", "make_coord", "build", "DEFAULT_HPARAMS"]

DEFAULT_HPARAMS: dict[str, object] = {
    "in_chans": 1,
    "n_resblocks": 16,
    "n_feats": 64,
    "scale": 4,
    "rgb_range": 1.0,
    "local_ensemble": True,
    "feat_unfold": True,
    "cell_decode": True,
    "res_scale": 1.0,
    "hidden_list": (256, 256, 256, 256),
}


def make_coord(shape: Sequence[int], *, flatten: bool = True) -> torch.Tensor:
    """Pixel-centre coordinates of a grid in [-1, 1] (float32, CPU).

    Parameters
    ----------
    shape : (H, W)
        Grid size.
    flatten : bool
        True: ``(H*W, 2)`` in row-major order; False: ``(H, W, 2)``. Last axis is ``(y, x)``.
    """
    seqs = []
    for n in shape:
        v0, v1 = -1, 1
        r = (v1 - v0) / (2 * n)
        seqs.append(v0 + r + (2 * r) * torch.arange(n, device="cpu").float())
    ret = torch.stack(torch.meshgrid(*seqs, indexing="ij"), dim=-1)
    if flatten:
        ret = ret.view(-1, ret.shape[-1])
    return ret


class EDSREncoder(nn.Module):
    """EDSR-baseline feature extractor without upsampler: ``(B, C, h, w) -> (B, n_feats, h, w)``."""

    def __init__(
        self, *, in_chans: int, n_resblocks: int, n_feats: int, res_scale: float, rgb_range: float
    ) -> None:
        super().__init__()
        self.sub_mean = MeanShift(rgb_range, sign=-1)
        self.add_mean = MeanShift(rgb_range, sign=1)
        self.head = nn.Sequential(default_conv(in_chans, n_feats, 3))
        body: list[nn.Module] = [ResBlock(n_feats, 3, res_scale=res_scale) for _ in range(n_resblocks)]
        body.append(default_conv(n_feats, n_feats, 3))
        self.body = nn.Sequential(*body)
        self.out_dim = int(n_feats)

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        x = self.head(x)
        res = self.body(x)
        res += x
        return res


class MLP(nn.Module):
    """``Linear, ReLU, ..., Linear`` applied to the last axis (keys ``layers.0, 2, ...``)."""

    def __init__(self, in_dim: int, out_dim: int, hidden_list: Sequence[int]) -> None:
        super().__init__()
        layers: list[nn.Module] = []
        last = in_dim
        for hidden in hidden_list:
            layers += [nn.Linear(last, hidden), nn.ReLU()]
            last = hidden
        layers.append(nn.Linear(last, out_dim))
        self.layers = nn.Sequential(*layers)

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        shape = x.shape[:-1]
        x = self.layers(x.view(-1, x.shape[-1]))
        return x.view(*shape, -1)


class EDSR_LIIF(nn.Module):  # noqa: N801  (benchmark class name)
    """EDSR encoder + LIIF decoder returning the full SR image; see the module docstring.

    Parameters
    ----------
    scale : int
        Output scale used by `forward` (the weights are scale-independent).
    in_chans : int
        Image channels (also the MLP's output width).
    query_chunk : int
        HR queries decoded per MLP pass in `forward` (memory bound; does not change the result).
    """

    def __init__(
        self,
        *,
        scale: int,
        in_chans: int = 1,
        n_resblocks: int = 16,
        n_feats: int = 64,
        rgb_range: float = 1.0,
        local_ensemble: bool = True,
        feat_unfold: bool = True,
        cell_decode: bool = True,
        res_scale: float = 1.0,
        hidden_list: Sequence[int] = (256, 256, 256, 256),
        query_chunk: int = 65536,
    ) -> None:
        super().__init__()
        self.scale = int(scale)
        self.local_ensemble = bool(local_ensemble)
        self.feat_unfold = bool(feat_unfold)
        self.cell_decode = bool(cell_decode)
        self.query_chunk = int(query_chunk)
        self.encoder = EDSREncoder(
            in_chans=in_chans,
            n_resblocks=n_resblocks,
            n_feats=n_feats,
            res_scale=res_scale,
            rgb_range=rgb_range,
        )
        in_dim = n_feats * (9 if self.feat_unfold else 1) + 2 + (2 if self.cell_decode else 0)
        self.imnet = MLP(in_dim, in_chans, list(hidden_list))

    def query_rgb(self, feat: torch.Tensor, coord: torch.Tensor, cell: torch.Tensor) -> torch.Tensor:
        """Decode queries.

        Parameters
        ----------
        feat : (B, n_feats, h, w) float32
            Encoder features.
        coord : (B, Q, 2) float32
            Query points ``(y, x)`` in [-1, 1].
        cell : (B, Q, 2) float32
            Query cell sizes in the same frame.

        Returns
        -------
        (B, Q, C) float32
        """
        if self.feat_unfold:
            feat = F.unfold(feat, 3, padding=1).view(
                feat.shape[0], feat.shape[1] * 9, feat.shape[2], feat.shape[3]
            )
        if self.local_ensemble:
            vx_lst, vy_lst, eps_shift = [-1, 1], [-1, 1], 1e-6
        else:
            vx_lst, vy_lst, eps_shift = [0], [0], 0
        rx = 2 / feat.shape[-2] / 2
        ry = 2 / feat.shape[-1] / 2
        feat_coord = (
            make_coord(feat.shape[-2:], flatten=False)
            .to(feat.device)
            .permute(2, 0, 1)
            .unsqueeze(0)
            .expand(feat.shape[0], 2, *feat.shape[-2:])
        )
        preds = []
        areas = []
        for vx in vx_lst:
            for vy in vy_lst:
                coord_ = coord.clone()
                coord_[:, :, 0] += vx * rx + eps_shift
                coord_[:, :, 1] += vy * ry + eps_shift
                coord_.clamp_(-1 + 1e-6, 1 - 1e-6)
                grid = coord_.flip(-1).unsqueeze(1)
                q_feat = F.grid_sample(feat, grid, mode="nearest", align_corners=False)[:, :, 0, :].permute(
                    0, 2, 1
                )
                q_coord = F.grid_sample(feat_coord, grid, mode="nearest", align_corners=False)[
                    :, :, 0, :
                ].permute(0, 2, 1)
                rel_coord = coord - q_coord
                rel_coord[:, :, 0] *= feat.shape[-2]
                rel_coord[:, :, 1] *= feat.shape[-1]
                inp = torch.cat([q_feat, rel_coord], dim=-1)
                if self.cell_decode:
                    rel_cell = cell.clone()
                    rel_cell[:, :, 0] *= feat.shape[-2]
                    rel_cell[:, :, 1] *= feat.shape[-1]
                    inp = torch.cat([inp, rel_cell], dim=-1)
                bs, q = coord.shape[:2]
                preds.append(self.imnet(inp.view(bs * q, -1)).view(bs, q, -1))
                areas.append(torch.abs(rel_coord[:, :, 0] * rel_coord[:, :, 1]) + 1e-9)
        tot_area = torch.stack(areas).sum(dim=0)
        if self.local_ensemble:
            areas[0], areas[3] = areas[3], areas[0]
            areas[1], areas[2] = areas[2], areas[1]
        ret = preds[0] * (areas[0] / tot_area).unsqueeze(-1)  # == 0 + ..., as in the original
        for pred, area in zip(preds[1:], areas[1:], strict=True):
            ret = ret + pred * (area / tot_area).unsqueeze(-1)
        return ret

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        """``(B, C, h, w)`` LR in [0, 1] -> ``(B, C, s*h, s*w)`` (not clamped), every HR pixel centre."""
        b, _, h, w = x.shape
        hh, ww = self.scale * h, self.scale * w
        feat = self.encoder(x)
        coord = make_coord((hh, ww)).to(x.device)
        cell = torch.ones_like(coord)
        cell[:, 0] *= 2 / hh
        cell[:, 1] *= 2 / ww
        coord = coord.unsqueeze(0).expand(b, -1, -1)
        cell = cell.unsqueeze(0).expand(b, -1, -1)
        n_q = coord.shape[1]
        step = max(1, self.query_chunk)
        outs = [
            self.query_rgb(feat, coord[:, i : i + step], cell[:, i : i + step]) for i in range(0, n_q, step)
        ]
        pred = outs[0] if len(outs) == 1 else torch.cat(outs, dim=1)
        return pred.view(b, hh, ww, -1).permute(0, 3, 1, 2).contiguous()


@register_model(
    "edsr_liif",
    scales=tuple(range(2, 9)),  # what the architecture builds (tested at every scale)
    family="post-upsampling",
    display_name="EDSR-LIIF",
    table_rank=3,
    paper="LIIF (EDSR-baseline encoder), Chen et al., CVPR 2021",
    tiny={"n_feats": 4, "n_resblocks": 2, "hidden_list": [16, 16]},
    hparams=DEFAULT_HPARAMS,
    reach=lambda s, hp: Reach.lr().conv(3, times=2 * int(hp["n_resblocks"]) + 3).nearest_pair(s),
)
def build(scale: int, in_channels: int = 1, **overrides: object) -> nn.Module:
    """Build the benchmark's EDSR-LIIF: ``reference/edsr_liif_x<scale>.json``'s exact layout.

    ``scale`` (2, 4 or 8) is only the output size used by ``forward`` (the weights do not depend on
    it); ``in_channels`` is 1 in the benchmark. Overrides: ``n_resblocks``, ``n_feats``,
    ``rgb_range``, ``local_ensemble``, ``feat_unfold``, ``cell_decode``, ``res_scale``,
    ``hidden_list`` (any other name raises ValueError listing these). The `EDSR_LIIF` maps
    ``(B, C, h, w)`` float32 in [0, 1] to ``(B, C, s*h, s*w)``, querying every HR pixel.
    """
    fixed = {"scale": int(scale), "in_chans": int(in_channels)}
    hp = resolve_hparams("edsr_liif", DEFAULT_HPARAMS, overrides, fixed=fixed)
    return EDSR_LIIF(**hp)  # type: ignore[arg-type]
