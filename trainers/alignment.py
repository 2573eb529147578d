"""Sub-pixel alignment of a prediction to its ground truth before scoring (``--alignment``, beyond the paper).

The benchmark registers each window with the rounded mean TV-L1 flow (dy, dx) (HR px) but moves
the LR patch only by whole LR pixels (`srcaco2.srdata.schema.lr_patch_origin`): the offset it
applies is ``a = s·floor((round(d) + s/2) / s)`` HR px, so a residual ``r = d − a`` of up to
s/2 + 1/2 HR px stays between every prediction and its ground truth (|r| ≤ 4.5 px at ×8) and is
scored as reconstruction error. Two alignments (`ALIGNMENTS`):

``paper``
    The benchmark's rule, untouched: no code of this module runs, scores are byte-identical.
``subpixel``
    The same registration (the unrounded mean TV-L1 flow ``d`` of the window, marker and scale,
    ``index/shift_subpixel``, `srcaco2.srdata.registration.subpixel`) applied at HR precision: the
    *prediction* is resampled by the residual so that ``sr'(i, j) = sr(i + r_y, j + r_x)``; the
    measured ground truth is never resampled (it is the reference a microscopist trusts; its ROI
    mask, derived from it, stays exact). Interpolator: cubic B-spline (``scipy.ndimage.shift``,
    order 3, spline prefilter, ``mode="nearest"``), in float64, clipped to [0, 1]: smooth, exact for
    quadratics, no wrap-around (a Fourier shift would wrap the opposite border into the image),
    and cheap enough (~40 ms per 512² patch on one busy CPU core).
    Border: `subpixel_margin` ``= ceil(s/2 + 1/2) + SPLINE_SUPPORT_PX`` HR px are cropped from
    every side of the prediction *and* of the ground truth, for every window and every method
    (bicubic included), before the paper's metrics (which then crop their own ``s`` px): the
    margin covers the largest residual the rule can leave plus the reach of the spline's
    boundary handling, so no scored pixel was extrapolated and all methods are scored on the same
    pixels. 512² patches are scored on 498² / 492² / 480² pixels at ×2 / ×4 / ×8 (paper: 508² /
    504² / 496²).

Everything else (8-bit rounding, SSIM, ROI thresholds, means) is the paper's
(`srcaco2.trainers.metrics.patch_metrics`).
"""

from __future__ import annotations

import math
from typing import Any, Literal

import numpy as np

__all__ = [
    "ALIGNMENTS",
    "Alignment",
    "SPLINE_ORDER",
    "SPLINE_SUPPORT_PX",
    "check_alignment",
    "residual_bound",
    "subpixel_margin",
    "paper_offset",
    "residual_shift",
    "align_prediction",
    "SubpixelAligner",
    "make_aligner",
]

ALIGNMENTS: tuple[str, ...] = ("paper", "subpixel")
"""``paper``: the benchmark's whole-LR-pixel rule (default); ``subpixel``: HR precision (beyond the paper)."""

Alignment = Literal["paper", "subpixel"]

SPLINE_ORDER: int = 3
"""Order of the B-spline that resamples the prediction (cubic)."""

SPLINE_SUPPORT_PX: int = 3
"""HR px cropped beyond the largest residual: the cubic spline's prefilter reaches a pixel's
neighbours with weights 0.268^k (k px away), so 3 px leave < 2 % of a border artefact, already
damped by the replicated (``nearest``) border."""


def check_alignment(value: Any) -> str:
    """`value` if it is one of `ALIGNMENTS`, else a `ValueError` naming them."""
    if value not in ALIGNMENTS:
        raise ValueError(f"alignment {value!r} is not one of {', '.join(ALIGNMENTS)}")
    return str(value)


def residual_bound(scale: int) -> float:
    """Largest |r| (HR px) the paper's rule leaves when ``shift`` is the rounding of ``shift_subpixel``:
    s/2 from the whole-LR-pixel step, 1/2 from the rounding."""
    return int(scale) / 2 + 0.5


def subpixel_margin(scale: int) -> int:
    """HR px cropped from every side of prediction and ground truth under ``subpixel`` (before the
    metrics' own border crop of `scale` px): ``ceil(s/2 + 1/2) + SPLINE_SUPPORT_PX`` = 5 / 6 / 8 px at
    ×2 / ×4 / ×8."""
    return math.ceil(residual_bound(scale)) + SPLINE_SUPPORT_PX


def paper_offset(shift: Any, scale: int) -> np.ndarray:
    """The offset the paper's rule applies for an integer shift, HR px.

    Parameters
    ----------
    shift : (..., 2) int, HR px
        The store's ``shift`` (dy, dx).
    scale : int

    Returns
    -------
    (..., 2) int64
        ``s · floor((shift + s/2) / s)``: the LR origin of `srcaco2.srdata.schema.lr_patch_origin`
        minus the window's own origin and margin, in HR px.
    """
    from srcaco2.srdata.schema import MARGIN, lr_patch_origin

    s = int(scale)
    d = np.asarray(shift, np.int64)
    flat = d.reshape(-1, 2)
    out = np.array([lr_patch_origin(0, 0, int(a), int(b), s) for a, b in flat], np.int64) - MARGIN // s
    return (out * s).reshape(d.shape)


def residual_shift(shift: Any, shift_subpixel: Any, scale: int) -> np.ndarray:
    """Misalignment the paper's rule leaves: ``shift_subpixel − paper_offset(shift)``, (..., 2) float64 HR px.

    A positive ``r_y`` means the prediction shows at row i what the ground truth holds at row
    i − r_y (the LR content sits r_y px further down than the HR content it should match).
    """
    return np.asarray(shift_subpixel, np.float64) - paper_offset(shift, scale)


def align_prediction(sr: Any, hr: Any, residual: Any, scale: int) -> tuple[np.ndarray, np.ndarray]:
    """Resample the prediction by the residual and crop both images by `subpixel_margin`.

    Parameters
    ----------
    sr : (H, W) float array in [0, 1]
        The prediction (numpy or anything `np.asarray` takes).
    hr : (H, W) float array in [0, 1]
        The ground truth (returned cropped, never resampled).
    residual : (2,) float, HR px
        ``residual_shift`` of the window (r_y, r_x); |r| ≤ `residual_bound` expected.
    scale : int

    Returns
    -------
    sr_aligned, hr_cropped : (H − 2m, W − 2m) float32, m = `subpixel_margin(scale)`
        ``sr_aligned(i, j) = sr(i + m + r_y, j + m + r_x)`` (cubic spline), clipped to [0, 1].

    Raises
    ------
    ValueError
        Shapes differ, or |r| exceeds the bound the crop covers.

    Examples
    --------
    >>> import numpy as np
    >>> y, x = np.mgrid[0:64, 0:64].astype(float)
    >>> f = lambda dy: 0.5 + 0.4 * np.sin((y - dy) / 5.0) * np.cos(x / 7.0)
    >>> sr, hr = align_prediction(f(1.5), f(0.0), (1.5, 0.0), 4)
    >>> sr.shape, float(np.abs(sr - hr).max()) < 1e-3
    ((52, 52), True)
    """
    from scipy.ndimage import shift as nd_shift

    s = int(scale)
    sr64 = np.asarray(sr, np.float64)
    hr_ = np.asarray(hr)
    if sr64.shape != hr_.shape or sr64.ndim != 2:
        raise ValueError(f"sr {sr64.shape} and hr {hr_.shape} must be (H, W) images of the same shape")
    r = np.asarray(residual, np.float64).reshape(2)
    if not np.all(np.isfinite(r)) or float(np.abs(r).max()) > residual_bound(s) + 1e-3:
        raise ValueError(
            f"residual shift {r.tolist()} HR px exceeds ±{residual_bound(s)} at x{s}, more than the "
            "sub-pixel border covers: the store's shift is not the rounding of shift_subpixel (another "
            "registration, or none); rebuild the store with registration, or re-estimate with "
            "`srdata register-subpixel STORE --overwrite` if shift_subpixel is the stale one"
        )
    m = subpixel_margin(s)
    moved = nd_shift(sr64, -r, order=SPLINE_ORDER, mode="nearest", prefilter=True)
    crop = (slice(m, sr64.shape[0] - m), slice(m, sr64.shape[1] - m))
    return np.clip(moved[crop], 0.0, 1.0).astype(np.float32), np.asarray(hr_[crop], np.float32)


class SubpixelAligner:
    """The residuals of one (store, split, marker, scale), applied window by window.

    Parameters
    ----------
    residuals : dict of int to (2,) float64
        Index row (the loader's ``window``) -> `residual_shift`, HR px.
    scale : int

    Attributes
    ----------
    meta : dict
        What an evaluation records: ``alignment``, ``alignment_margin_px``, ``alignment_interpolator``.
    """

    def __init__(self, residuals: dict[int, np.ndarray], scale: int) -> None:
        self.residuals, self.scale = residuals, int(scale)
        self.meta: dict[str, Any] = {
            "alignment": "subpixel",
            "alignment_margin_px": subpixel_margin(self.scale),
            "alignment_interpolator": f"scipy.ndimage.shift order {SPLINE_ORDER}, prediction resampled",
        }

    def apply(self, sr: Any, hr: Any, window: int) -> tuple[np.ndarray, np.ndarray]:
        """`align_prediction` with the residual of index row `window`."""
        try:
            r = self.residuals[int(window)]
        except KeyError:
            raise ValueError(f"window {window} has no sub-pixel shift in this aligner") from None
        return align_prediction(sr, hr, r, self.scale)

    def __repr__(self) -> str:
        return f"SubpixelAligner(windows={len(self.residuals)}, scale={self.scale})"


def make_aligner(
    store: str, *, split: str, marker: str, scale: int, alignment: str = "paper"
) -> SubpixelAligner | None:
    """None for ``paper``; for ``subpixel`` the residuals of the split's accepted windows.

    Raises
    ------
    ValueError
        An unknown `alignment`; a store without ``index/shift_subpixel`` or with windows of the split
        left unestimated for this marker and scale (the message gives the command that fills them).
    """
    if check_alignment(alignment) == "paper":
        return None
    from srcaco2.srdata.registration.subpixel import SUBPIXEL_COLUMN
    from srcaco2.srdata.schema import split_code
    from srcaco2.srdata.store import Store

    st = Store.open(store)
    index = st.index()
    m, k = st.shift_slot(marker, int(scale))
    rows = np.flatnonzero((index["split"] == split_code(split)) & index["accepted"])
    fix = f"srdata register-subpixel {store} --split {split} --marker {marker} --scale {int(scale)}"
    if not st.has_index_column(SUBPIXEL_COLUMN):
        raise ValueError(
            f"{store} has no sub-pixel shifts (index/shift_subpixel; stores are built without them), so "
            f"--alignment subpixel cannot score it; estimate them with `{fix}` (one TV-L1 per window)"
        )
    sub = index[SUBPIXEL_COLUMN][rows, m, k]
    missing = int(np.isnan(sub).any(axis=-1).sum())
    if missing:
        raise ValueError(
            f"{store}: {missing} of {len(rows)} {split} windows have no sub-pixel shift for {marker} "
            f"x{scale} (index/shift_subpixel); estimate them with `{fix}`"
        )
    res = residual_shift(index["shift"][rows, m, k], sub, scale)
    far = np.flatnonzero(np.abs(res).max(axis=-1) > residual_bound(scale) + 1e-3)
    if len(far):
        w = int(rows[far[0]])
        given = (
            f"shift {index['shift'][w, m, k].tolist()}, shift_subpixel {np.round(sub[far[0]], 2).tolist()}"
        )
        raise ValueError(
            f"{store}: for {len(far)} of {len(rows)} {split} windows ({marker} x{scale}; e.g. index row {w}: "
            f"{given}) the integer shift is not the rounding of the sub-pixel one, so the paper's LR patch "
            f"is off by more than the ±{residual_bound(scale)} HR px the sub-pixel border covers (registered "
            "with another rule, or not at all: `srdata build --no-register`); rebuild the store with "
            "registration"
        )
    return SubpixelAligner({int(r): res[i] for i, r in enumerate(rows)}, scale)
