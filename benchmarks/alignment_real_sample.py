"""Paper vs sub-pixel alignment on the real SR-CACO-2 sample: how much of bicubic's score is registration.

Run ``python -m srcaco2.benchmarks.alignment_real_sample [--out PATH]``.

For each scale s of the real sample (`srcaco2.srdata.real_sample`, CELL2, one 512² HR region and its
/2, /4, /8 scans), with the project's own functions only:

1. TV-L1 on the whole region (`srcaco2.srdata.registration.window_flow_mean`): the mean flow d
   (float, HR px); the store's ``shift`` is round(d) (`window_shift`).
2. ``paper``: the registered LR patch of the central 384² (64 px margin,
   `srcaco2.srdata.real_sample.registered_region`: LR moved by whole LR pixels), bicubic
   (`srcaco2.trainers.metrics.bicubic_upsample`), scored by `srcaco2.trainers.metrics.patch_metrics`.
3. ``subpixel``: the same prediction resampled by the residual r = d − paper offset and both
   images cropped (`srcaco2.trainers.alignment.align_prediction`), scored the same way: what
   ``srtrain eval --alignment subpixel`` does to every window.
4. ``whole LR`` (a cross-check, the issue's measurement): bicubic of the whole LR region, the
   output shifted by the full d (cubic spline), the same central pixels cropped as in 3.

Prints a table and writes ``benchmarks/results/alignment_real_sample.json``.
"""

from __future__ import annotations

import argparse
import datetime
import json
import os
import platform
from typing import Any

import numpy as np

RESULTS = os.path.join(os.path.dirname(os.path.abspath(__file__)), "results", "alignment_real_sample.json")
MARGIN = 64


def _bicubic(lr: np.ndarray, s: int) -> np.ndarray:
    import torch

    from srcaco2.trainers.metrics import bicubic_upsample

    x = torch.from_numpy(lr.astype(np.float32) / 255.0)[None, None]
    return bicubic_upsample(x, s)[0, 0].numpy()


def _scores(sr: np.ndarray, hr: np.ndarray, s: int) -> dict[str, float]:
    from srcaco2.trainers.metrics import patch_metrics

    m = patch_metrics(sr, hr, s)
    return {k: m[k] for k in ("psnr", "ssim", "roi_psnr", "roi_ssim")}


def measure_scale(sample: dict[int, np.ndarray], s: int) -> dict[str, Any]:
    """The three scores of one scale (module docstring) and the shifts behind them."""
    from scipy.ndimage import shift as nd_shift

    from srcaco2.srdata.real_sample import registered_region
    from srcaco2.srdata.registration import window_flow_mean
    from srcaco2.trainers.alignment import align_prediction, residual_shift, subpixel_margin

    hr_full, lr_full = sample[1], sample[s]
    d = np.array([float(v) for v in window_flow_mean(hr_full, lr_full, s)])
    lr_patch, hr_patch, shift = registered_region(hr_full, lr_full, s)
    hr = hr_patch.astype(np.float32) / 255.0
    sr = _bicubic(lr_patch, s)
    r = residual_shift(shift, d, s)
    paper = _scores(sr, hr, s)
    subpixel = _scores(*align_prediction(sr, hr, r, s), s)
    whole = nd_shift(_bicubic(lr_full, s).astype(np.float64), -d, order=3, mode="nearest")
    c = MARGIN + subpixel_margin(s)
    n = hr_full.shape[0]
    whole_lr = _scores(
        np.clip(whole[c : n - c, c : n - c], 0, 1),
        hr_full[c : n - c, c : n - c].astype(np.float32) / 255.0,
        s,
    )
    return {
        "flow_mean_hr_px": d.tolist(),
        "shift_hr_px": list(shift),
        "residual_hr_px": r.tolist(),
        "paper": paper,
        "subpixel": subpixel,
        "whole_lr": whole_lr,
        "scored_px": {"paper": hr.shape[0] - 2 * s, "subpixel": hr.shape[0] - 2 * (s + subpixel_margin(s))},
    }


def format_table(res: dict[str, Any]) -> str:
    """Markdown: one row per scale."""
    lines = [
        "| scale | TV-L1 mean flow (dy, dx) HR px | residual after the paper's rule | PSNR paper "
        "| PSNR sub-px | Δ | ROI-PSNR paper | ROI-PSNR sub-px | SSIM paper | SSIM sub-px | PSNR whole-LR |",
        "|---|---|---|---:|---:|---:|---:|---:|---:|---:|---:|",
    ]
    for s, r in res["scales"].items():
        p, q, w = r["paper"], r["subpixel"], r["whole_lr"]
        lines.append(
            f"| ×{s} | ({r['flow_mean_hr_px'][0]:+.2f}, {r['flow_mean_hr_px'][1]:+.2f}) "
            f"| ({r['residual_hr_px'][0]:+.2f}, {r['residual_hr_px'][1]:+.2f}) "
            f"| {p['psnr']:.2f} | {q['psnr']:.2f} | {q['psnr'] - p['psnr']:+.2f} "
            f"| {p['roi_psnr']:.2f} | {q['roi_psnr']:.2f} | {p['ssim']:.4f} | {q['ssim']:.4f} "
            f"| {w['psnr']:.2f} |"
        )
    return "\n".join(lines)


def main(argv: list[str] | None = None) -> int:
    from srcaco2.srdata.real_sample import load_real_sample

    ap = argparse.ArgumentParser(description=__doc__.split("\n")[0])
    ap.add_argument("--out", default=RESULTS, help="JSON results path")
    args = ap.parse_args(argv)
    sample = load_real_sample()
    res = {
        "what": __doc__.split("\n")[0],
        "date": datetime.datetime.now(datetime.timezone.utc).isoformat(timespec="seconds"),
        "machine": platform.platform(),
        "scales": {str(s): measure_scale(sample, s) for s in (2, 4, 8)},
    }
    print(format_table(res))
    os.makedirs(os.path.dirname(os.path.abspath(args.out)), exist_ok=True)
    with open(args.out, "w") as fh:
        json.dump(res, fh, indent=1)
    return 0


if __name__ == "__main__":
    raise SystemExit(main())
