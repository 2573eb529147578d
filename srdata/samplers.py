"""Crop sampling: pure functions of (window table, ROI weights, RNG) -> HR crop coordinates.

Why: a training step needs a random ``h_size``² HR crop (and its LR partner) from a random window
of the split. The original (docs/protocol.md#training-crops) biases the crop towards cells: it upsamples the
window's real LR patch to 512² with OpenCV bicubic, thresholds it (≥ 4, raw uint8) and draws the crop's
top-left corner with weight ``exp(5·ROI) + 1`` read at the crop **centre**: ``e⁵ + 1 ≈ 149.4`` for a
cell centre against ``2`` for background (so a background position is never impossible; a weight
of 0 would mean never, 149.4 is ~75 times 2). Top-left corners range over ``[0, 512 − h − 1]``::

    0           512-h-1   512-h     512
    |###########|.........|.........|     # = allowed top-left rows/cols (pixel-aligned mode keeps
    <-- crop centres at y0 + h/2 -->                                the multiples of the scale only)

Everything here is a pure function; the epoch plan (window order, crop uniforms, dihedral modes)
depends only on ``(seed, epoch)`` and a sample's *global position* in the epoch, never on the
number of workers or ranks. Weights and CDFs are float64 (float32 cumulative sums drift well below
1 over 10⁵ positions).

Example
-------
>>> import numpy as np
>>> roi = np.zeros((512, 512), bool); roi[200:300, 200:300] = True
>>> w = crop_weights(roi, 128, 4)           # (96, 96) float64: top-left y0, x0 = 0, 4, ..., 380
>>> cdf = crop_cdf(w)
>>> y0, x0 = sample_crop(cdf, 0.5, crop_positions(128, 4))
>>> (y0 % 4, x0 % 4, w.shape)
(0, 0, (96, 96))
"""

from __future__ import annotations

import math

import numpy as np

from srcaco2.srdata.schema import PATCH_SIZE

__all__ = [
    "ROI_GAIN",
    "crop_positions",
    "upsampled_roi",
    "crop_weights",
    "crop_cdf",
    "sample_crop",
    "EpochPlan",
    "epoch_plan",
    "shard_positions",
    "sample_rng",
]

ROI_GAIN: float = 5.0
"""Gain of the ROI crop weight ``exp(ROI_GAIN · roi) + 1`` (docs/protocol.md#training-crops)."""


def crop_positions(
    h_size: int, scale: int, *, aligned: bool = True, patch_size: int = PATCH_SIZE
) -> np.ndarray:
    """Allowed top-left offsets of a crop along one axis, HR pixels inside the 512² patch.

    Returns
    -------
    (n,) int64
        ``0, step, 2·step, ... <= patch_size - h_size - 1`` with ``step = scale`` when `aligned`
        (LR crop exactly at ``y0/s``), else 1 (the original's range, docs/protocol.md#training-crops).
    """
    step = int(scale) if aligned else 1
    return np.arange(0, int(patch_size) - int(h_size), step, dtype=np.int64)


def upsampled_roi(lr_patch: np.ndarray, *, threshold: int = 4, patch_size: int = PATCH_SIZE) -> np.ndarray:
    """ROI of the bicubic-upsampled LR patch (the crop-sampling ROI of docs/protocol.md#training-crops).

    Parameters
    ----------
    lr_patch : (C, n, n) or (n, n) uint8, LR pixels
        Registered LR patch(es) of one window; several channels give the union of their ROIs.
    threshold : int
        Raw uint8 level; ROI = ``cv2.resize(lr, (512, 512), INTER_CUBIC) >= threshold``.

    Returns
    -------
    (patch_size, patch_size) bool, HR pixels
    """
    import cv2

    lr = np.asarray(lr_patch, dtype=np.uint8)
    planes = lr[None] if lr.ndim == 2 else lr
    out = np.zeros((patch_size, patch_size), dtype=bool)
    for plane in planes:
        up = cv2.resize(np.ascontiguousarray(plane), (patch_size, patch_size), interpolation=cv2.INTER_CUBIC)
        out |= up >= threshold
    return out


def crop_weights(
    roi_up: np.ndarray,
    h_size: int,
    scale: int,
    *,
    aligned: bool = True,
    roi_bias: bool = True,
    gain: float = ROI_GAIN,
) -> np.ndarray:
    """Weight of every allowed top-left corner: ``exp(gain · roi[y0 + h/2, x0 + h/2]) + 1``.

    Parameters
    ----------
    roi_up : (512, 512) bool, HR pixels of the patch
        From `upsampled_roi`.
    h_size, scale, aligned
        Crop side (HR px), LR scale and alignment, see `crop_positions`.
    roi_bias : bool
        False gives uniform weights (all ones).

    Returns
    -------
    (ny, nx) float64
        Row ``i`` / column ``j`` is the corner ``(positions[i], positions[j])``.
    """
    pos = crop_positions(h_size, scale, aligned=aligned, patch_size=roi_up.shape[-1])
    if not roi_bias:
        return np.ones((len(pos), len(pos)), dtype=np.float64)
    c = pos + int(h_size) // 2
    centre = roi_up[np.ix_(c, c)].astype(np.float64)
    return np.exp(gain * centre) + 1.0


def crop_cdf(weights: np.ndarray) -> np.ndarray:
    """Normalised cumulative distribution (float64, last value exactly 1) of flattened `weights`.

    Raises
    ------
    ValueError
        If the weights are not finite and non-negative with a positive sum.
    """
    w = np.asarray(weights, dtype=np.float64).ravel()
    total = float(w.sum())
    if not np.isfinite(total) or total <= 0 or (w < 0).any():
        raise ValueError(f"crop weights must be finite, >= 0 and not all zero (sum={total})")
    cdf = np.cumsum(w)
    cdf /= cdf[-1]
    cdf[-1] = 1.0
    return cdf


def sample_crop(cdf: np.ndarray, u: float, positions: np.ndarray) -> tuple[int, int]:
    """Top-left ``(y0, x0)`` (HR px inside the patch) for a uniform draw ``u`` in [0, 1).

    Inverse-CDF sampling: the first flat index whose cumulative weight exceeds `u`, so a
    zero-weight position is never chosen and ``u = 0`` is safe.
    """
    k = int(np.searchsorted(cdf, u, side="right"))
    k = min(k, len(cdf) - 1)
    n = len(positions)
    return int(positions[k // n]), int(positions[k % n])


class EpochPlan:
    """The random choices of one epoch, indexed by global sample position.

    Attributes
    ----------
    window : (T,) int64
        Position in the split's window list (concatenated independent permutations).
    u : (T,) float64 in [0, 1)
        Uniform draw of the crop position (`sample_crop`).
    mode : (T,) int8 in 0..7
        Dihedral transform (`srcaco2.srdata.transforms.dihedral`).
    """

    __slots__ = ("window", "u", "mode")

    def __init__(self, window: np.ndarray, u: np.ndarray, mode: np.ndarray) -> None:
        self.window, self.u, self.mode = window, u, mode

    def __len__(self) -> int:
        return len(self.window)


def epoch_plan(n_windows: int, n_total: int, seed: int, epoch: int, *, shuffle: bool = True) -> EpochPlan:
    """Deterministic plan of an epoch from ``(seed, epoch)`` only.

    Windows: ``ceil(n_total / n_windows)`` independent permutations of ``range(n_windows)``
    concatenated and cut to `n_total`, so every window appears once per `n_windows` positions.
    The three streams (windows, uniforms, modes) come from separate child seeds, and each is a
    prefix-stable sequence: a longer plan (e.g. padded for more ranks) starts with the shorter one.
    """
    if n_windows <= 0:
        raise ValueError("no windows to sample from")
    ss = np.random.SeedSequence([int(seed) & 0xFFFFFFFF, int(epoch) & 0xFFFFFFFF, 0x5352])
    g_win, g_u, g_mode = (np.random.Generator(np.random.PCG64(s)) for s in ss.spawn(3))
    blocks = max(1, math.ceil(n_total / n_windows))
    if shuffle:
        window = np.concatenate([g_win.permutation(n_windows) for _ in range(blocks)])[:n_total]
    else:
        window = np.tile(np.arange(n_windows), blocks)[:n_total]
    u = g_u.random(n_total)
    mode = g_mode.integers(0, 8, n_total, dtype=np.int8)
    return EpochPlan(window.astype(np.int64), u, mode)


def shard_positions(n: int, rank: int, world_size: int, *, pad: bool) -> np.ndarray:
    """Global sample positions of one rank: ``rank, rank + W, rank + 2W, ...``.

    With ``pad=True`` (training) the epoch is extended to ``T = ceil(n / W)·W`` positions, so all
    ranks get ``T / W`` positions; the ≤ W − 1 extra positions continue the plan (fresh windows and
    crops), nothing is duplicated. With ``pad=False`` (evaluation) positions stop at ``n``: ranks
    differ by at most one sample, the union is exactly ``range(n)`` with no duplicates.
    """
    if world_size < 1 or not 0 <= rank < world_size:
        raise ValueError(f"need 0 <= rank < world_size, got rank={rank}, world_size={world_size}")
    total = math.ceil(n / world_size) * world_size if pad else n
    return np.arange(rank, total, world_size, dtype=np.int64)


def sample_rng(seed: int, epoch: int, position: int) -> np.random.Generator:
    """Independent per-sample generator from ``(seed, epoch, global position)`` (e.g. LR noise)."""
    ss = np.random.SeedSequence([int(seed) & 0xFFFFFFFF, int(epoch) & 0xFFFFFFFF, int(position), 0x4E])
    return np.random.Generator(np.random.PCG64(ss))
