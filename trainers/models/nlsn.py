"""NLSN: EDSR body with Non-Local Sparse Attention (LSH-bucketed non-local attention).

Paper: "Image Super-Resolution with Non-Local Sparse Attention", Mei, Fan & Zhou, CVPR 2021.

Benchmark variant (``reference/nlsn_x{2,4,8}.json``)
----------------------------------------------------
- ``head`` = conv(in_chans, 256, 3); ``body`` = [NLSA, 8 x ResBlock, NLSA, ..., 8 x ResBlock, NLSA,
  conv(256, 256, 3)] (NLSA at Sequential indices 0, 9, 18, 27, 36; conv at 37); global skip
  ``body(h) + h``; ``tail`` = Upsampler (log2 s x [conv 256->1024, PixelShuffle 2]) + conv(256, in_chans, 3).
- ResBlock: conv, ReLU, conv, ``* res_scale (0.1) + x``.
- ``sub_mean``/``add_mean``: 3-channel MeanShift, in the state_dict but not applied
  (docs/protocol.md#normalisation).
- Output not clamped; LR in [0, 1] -> SR ``(B, C, s*h, s*w)``.

NLSA (LSH attention)
--------------------
``conv_match`` = conv(n, n/4, 3) (no activation), ``conv_assembly`` = conv(n, n, 1). With
``L = h*w``: ``hash_buckets = min(L//chunk + (L//chunk) % 2, 128)``; random rotations
``torch.randn((1, n/4, n_hashes, hash_buckets//2))`` drawn IN FORWARD (shared over the batch);
hash = argmax over ``[xR, -xR]`` + round offset; elements sorted by hash (``torch.sort``), the sorted
sequence padded to a multiple of ``chunk_size`` by repeating its last elements, each chunk attends
to itself and its previous/next chunk (cyclic); keys L2-normalised (eps 5e-5), queries not; softmax
via logsumexp; the hash rounds are combined by a softmax over their logsumexp scores;
``out = ret * res_scale + x``.

RNG: the model is NOT deterministic in eval. Each of the 5 NLSA calls draws its rotations, in order,
from the global torch RNG of the input's device (exactly like the original, so a caller that seeds
torch before a batch reproduces the benchmark), or from `NLSN.generator` when that is set (a
``torch.Generator`` on the input's device; used by tests for reproducibility).

Input constraint: ``h * w >= chunk_size`` (144), otherwise the original fails (0 hash buckets);
this implementation raises ``ValueError`` instead.

Hyperparameters (overrides): ``n_resblocks`` (32), ``n_feats`` (256), ``n_hashes`` (4),
``chunk_size`` (144), ``res_scale`` (0.1), ``img_range`` (1.0, MeanShift only). ``upscale`` and
``in_chans`` come from the builder's ``scale`` and ``in_channels``. Attention reduction is fixed at 4.
Init: PyTorch defaults (the benchmark does not re-initialise).
"""

from __future__ import annotations

import math

import torch
import torch.nn.functional as F
from torch import nn

from srcaco2.trainers.models._edsr_common import MeanShift, attention_edsr_parts, default_conv
from srcaco2.trainers.models._hparams import resolve_hparams
from srcaco2.trainers.models.registry import register_model

__all__ = ["NonLocalSparseAttention", "NLSN", "build", "DEFAULT_HPARAMS"]

DEFAULT_HPARAMS: dict[str, object] = {
    "upscale": 4,
    "n_resblocks": 32,
    "n_feats": 256,
    "n_hashes": 4,
    "chunk_size": 144,
    "res_scale": 0.1,
    "img_range": 1.0,
    "in_chans": 1,
}


def _batched_index_select(values: torch.Tensor, indices: torch.Tensor) -> torch.Tensor:
    """``values (N, L, C)``, ``indices (N, M)`` -> ``(N, M, C)`` gathered along dim 1."""
    return values.gather(1, indices[:, :, None].expand(-1, -1, values.shape[-1]))


def _add_adjacent_buckets(x: torch.Tensor) -> torch.Tensor:
    """Concatenate each chunk with its previous and next chunk (cyclic) along the chunk-size axis."""
    back = torch.cat([x[:, :, -1:, ...], x[:, :, :-1, ...]], dim=2)
    forward = torch.cat([x[:, :, 1:, ...], x[:, :, :1, ...]], dim=2)
    return torch.cat([x, back, forward], dim=3)


class NonLocalSparseAttention(nn.Module):
    """Non-Local Sparse Attention block (residual), see the module docstring.

    Parameters
    ----------
    channels : int
        Feature channels ``n``.
    n_hashes : int
        Hash rounds.
    chunk_size : int
        Positions per attention chunk.
    reduction : int
        ``conv_match`` outputs ``channels // reduction`` channels.
    res_scale : float
        Residual scaling of the attention output.
    """

    def __init__(
        self,
        channels: int,
        *,
        n_hashes: int = 4,
        chunk_size: int = 144,
        reduction: int = 4,
        res_scale: float = 1.0,
    ) -> None:
        super().__init__()
        self.chunk_size = int(chunk_size)
        self.n_hashes = int(n_hashes)
        self.reduction = int(reduction)
        self.res_scale = float(res_scale)
        self.conv_match = nn.Sequential(default_conv(channels, channels // reduction, 3))
        self.conv_assembly = nn.Sequential(default_conv(channels, channels, 1))
        self.generator: torch.Generator | None = None

    def _lsh(self, hash_buckets: int, x: torch.Tensor) -> torch.Tensor:
        """Hash codes ``(N, n_hashes * L)`` (int64) of ``x (N, L, C)`` with fresh random rotations."""
        n = x.shape[0]
        shape = (1, x.shape[-1], self.n_hashes, hash_buckets // 2)
        if self.generator is None:
            rot = torch.randn(shape, dtype=x.dtype, device=x.device)
        else:
            rot = torch.randn(shape, dtype=x.dtype, device=x.device, generator=self.generator)
        rot = rot.expand(n, -1, -1, -1)
        rotated = torch.einsum("btf,bfhi->bhti", x, rot)
        rotated = torch.cat([rotated, -rotated], dim=-1)
        codes = torch.argmax(rotated, dim=-1)
        offsets = torch.arange(self.n_hashes, device=x.device).reshape(1, -1, 1) * hash_buckets
        return torch.reshape(codes + offsets, (n, -1))

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        n, _, h, w = x.shape
        length = h * w
        if length < self.chunk_size:
            raise ValueError(
                f"NLSN attention needs h*w >= chunk_size={self.chunk_size} positions, got {h}x{w}={length} "
                "(the original fails with 0 hash buckets); use a larger LR input"
            )
        x_embed = self.conv_match(x).view(n, -1, length).contiguous().permute(0, 2, 1)
        y_embed = self.conv_assembly(x).view(n, -1, length).contiguous().permute(0, 2, 1)
        c = x_embed.shape[-1]
        cy = c * self.reduction
        chunk = self.chunk_size

        nb = length // chunk
        hash_buckets = min(nb + nb % 2, 128)
        codes = self._lsh(hash_buckets, x_embed).detach()

        _, indices = codes.sort(dim=-1)
        _, undo_sort = indices.sort(dim=-1)
        mod_indices = indices % length
        x_sorted = _batched_index_select(x_embed, mod_indices)
        y_sorted = _batched_index_select(y_embed, mod_indices)

        padding = chunk - length % chunk if length % chunk != 0 else 0
        x_buckets = torch.reshape(x_sorted, (n, self.n_hashes, -1, c))
        y_buckets = torch.reshape(y_sorted, (n, self.n_hashes, -1, cy))
        if padding:
            x_buckets = torch.cat([x_buckets, x_buckets[:, :, -padding:, :].clone()], dim=2)
            y_buckets = torch.cat([y_buckets, y_buckets[:, :, -padding:, :].clone()], dim=2)
        x_buckets = torch.reshape(x_buckets, (n, self.n_hashes, -1, chunk, c))
        y_buckets = torch.reshape(y_buckets, (n, self.n_hashes, -1, chunk, cy))

        x_match = F.normalize(x_buckets, p=2, dim=-1, eps=5e-5)
        x_match = _add_adjacent_buckets(x_match)
        y_buckets = _add_adjacent_buckets(y_buckets)

        raw_score = torch.einsum("bhkie,bhkje->bhkij", x_buckets, x_match)
        bucket_score = torch.logsumexp(raw_score, dim=-1, keepdim=True)
        score = torch.exp(raw_score - bucket_score)
        bucket_score = torch.reshape(bucket_score, [n, self.n_hashes, -1])

        ret = torch.einsum("bukij,bukje->bukie", score, y_buckets)
        ret = torch.reshape(ret, (n, self.n_hashes, -1, cy))
        if padding:
            ret = ret[:, :, :-padding, :].clone()
            bucket_score = bucket_score[:, :, :-padding].clone()

        ret = torch.reshape(ret, (n, -1, cy))
        bucket_score = torch.reshape(bucket_score, (n, -1))
        ret = _batched_index_select(ret, undo_sort)
        bucket_score = bucket_score.gather(1, undo_sort)

        ret = torch.reshape(ret, (n, self.n_hashes, length, cy))
        bucket_score = torch.reshape(bucket_score, (n, self.n_hashes, length, 1))
        probs = F.softmax(bucket_score, dim=1)
        ret = torch.sum(ret * probs, dim=1)
        return ret.permute(0, 2, 1).reshape(n, -1, h, w).contiguous() * self.res_scale + x


class NLSN(nn.Module):
    """NLSN network (benchmark variant); see the module docstring for the architecture.

    Parameters
    ----------
    upscale, in_chans : int
        Scale factor (2, 4, 8); image channels.
    n_resblocks, n_feats, n_hashes, chunk_size, res_scale, img_range
        See the module docstring.
    """

    def __init__(
        self,
        *,
        upscale: int,
        in_chans: int = 1,
        n_resblocks: int = 32,
        n_feats: int = 256,
        n_hashes: int = 4,
        chunk_size: int = 144,
        res_scale: float = 0.1,
        img_range: float = 1.0,
    ) -> None:
        super().__init__()
        self.upscale = int(upscale)

        def nlsa() -> NonLocalSparseAttention:
            return NonLocalSparseAttention(
                n_feats, n_hashes=n_hashes, chunk_size=chunk_size, reduction=4, res_scale=res_scale
            )

        sub_mean, head, body, tail = attention_edsr_parts(
            upscale=self.upscale,
            in_chans=in_chans,
            n_resblocks=n_resblocks,
            n_feats=n_feats,
            res_scale=res_scale,
            img_range=img_range,
            attention=nlsa,
        )
        # registered in the original's state_dict order: sub_mean, add_mean, head, body, tail
        self.sub_mean = sub_mean
        self.add_mean = MeanShift(img_range, sign=1)
        self.head = head
        self.body = nn.Sequential(*body)
        self.tail = tail

    @property
    def generator(self) -> torch.Generator | None:
        """RNG of the LSH rotations (None: the global torch RNG of the input's device)."""
        for m in self.modules():
            if isinstance(m, NonLocalSparseAttention):
                return m.generator
        return None

    @generator.setter
    def generator(self, value: torch.Generator | None) -> None:
        for m in self.modules():
            if isinstance(m, NonLocalSparseAttention):
                m.generator = value

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        """``(B, C, h, w)`` LR in [0, 1] -> ``(B, C, s*h, s*w)`` (not clamped).

        Needs ``h * w >= chunk_size``; draws random LSH rotations (see `generator`).
        """
        x = self.head(x)
        res = self.body(x)
        res += x
        return self.tail(res)


@register_model(
    "nlsn",
    scales=(2, 3, 4, 8),  # what the architecture builds (tested at every scale)
    family="post-upsampling",
    display_name="NLSN",
    table_rank=0,
    paper="NLSN, Mei et al., CVPR 2021",
    tiny={"n_feats": 8, "n_resblocks": 2, "chunk_size": 16, "n_hashes": 2},
    hparams=DEFAULT_HPARAMS,
    reach=None,
    global_reason="non-local sparse attention over all positions (LSH buckets, random in eval)",
    min_input=lambda hp: math.isqrt(int(hp["chunk_size"]) - 1) + 1,  # h * w >= chunk_size
)
def build(scale: int, in_channels: int = 1, **overrides: object) -> nn.Module:
    """Build the benchmark's NLSN: ``reference/nlsn_x<scale>.json``'s exact layout without overrides.

    ``scale`` 2, 4 or 8 sets ``log2(scale)`` pixel-shuffle stages; ``in_channels`` is 1 in the
    benchmark. Overrides: ``n_resblocks``, ``n_feats``, ``n_hashes``, ``chunk_size``, ``res_scale``,
    ``img_range`` (any other name raises ValueError listing these). The `NLSN` maps ``(B, C, h, w)``
    float32 in [0, 1] to ``(B, C, s*h, s*w)`` and draws random LSH rotations in forward (set
    ``model.generator`` for reproducible outputs).
    """
    fixed = {"upscale": int(scale), "in_chans": int(in_channels)}
    hp = resolve_hparams("nlsn", DEFAULT_HPARAMS, overrides, fixed=fixed)
    return NLSN(**hp)  # type: ignore[arg-type]
