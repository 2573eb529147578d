"""Visual report pieces: comparison panels, training curves, and the Markdown report.

Panels are drawn with Pillow (a core dependency), so they work on any machine. A comparison panel
shows a full-resolution crop (never a shrunk patch), zoomed by pixel repetition: LR (nearest) |
bicubic | SR | HR on the first row, |bicubic − HR| and |SR − HR| (and the ROI) on the second,
with the PSNR of each crop. All intensity images share one display range (0 .. the 99.5th
percentile of the HR crop) and both error maps another (0 .. the 99.5th percentile of the larger
error), so columns compare directly.
"""

from __future__ import annotations

import csv
import math
import os
from collections.abc import Mapping, Sequence
from pathlib import Path
from typing import Any

import numpy as np

__all__ = [
    "line_plot",
    "panel_image",
    "save_panel",
    "best_crop",
    "write_window_panels",
    "curves_image",
    "write_training_curves",
    "write_report",
]


def _to_uint8(img: np.ndarray, hi: float) -> np.ndarray:
    return (np.clip(img / max(hi, 1e-6), 0.0, 1.0) * 255.0 + 0.5).astype(np.uint8)


def _heat(x: np.ndarray) -> np.ndarray:
    """(H, W) in [0, 1] -> (H, W, 3) uint8, black-red-yellow-white."""
    x = np.clip(x, 0.0, 1.0)
    rgb = np.stack([np.clip(3 * x, 0, 1), np.clip(3 * x - 1, 0, 1), np.clip(3 * x - 2, 0, 1)], axis=-1)
    return (rgb * 255 + 0.5).astype(np.uint8)


def _psnr8(a: np.ndarray, b: np.ndarray) -> float:
    """PSNR (dB) of two [0, 1] images after 8-bit rounding (as docs/protocol.md#evaluation), no border
    crop."""
    mse = float(np.mean((np.round(np.clip(a, 0, 1) * 255) - np.round(np.clip(b, 0, 1) * 255)) ** 2))
    return 100.0 if mse == 0 else 10 * math.log10(255.0**2 / mse)


def best_crop(hr: np.ndarray, size: int, scale: int, threshold: float = 4 / 255) -> tuple[int, int]:
    """Top-left (y, x) of the `size`² crop of `hr` holding the most ROI pixels (multiples of `scale`).

    Parameters
    ----------
    hr : (H, W) float in [0, 1]
    size : int
        Crop side, HR px (clipped to the image).
    scale : int
        Crop corners are multiples of it, so the LR crop is exact.
    """
    h, w = hr.shape
    size = min(size, h, w)
    roi = (np.asarray(hr) >= threshold).astype(np.float64)
    integ = np.pad(roi.cumsum(0).cumsum(1), ((1, 0), (1, 0)))
    step = max(int(scale), 8)
    best, pos = -1.0, (0, 0)
    for y in range(0, h - size + 1, step):
        for x in range(0, w - size + 1, step):
            v = integ[y + size, x + size] - integ[y, x + size] - integ[y + size, x] + integ[y, x]
            # prefer crops that also hold some background (edges of cells show detail best)
            score = min(v, 0.8 * size * size)
            if score > best:
                best, pos = score, (y, x)
    return pos


def panel_image(
    lr: np.ndarray,
    bicubic: np.ndarray,
    sr: np.ndarray,
    hr: np.ndarray,
    *,
    roi_threshold: int = 4,
    title: str = "",
    crop: int | None = 160,
    zoom: int = 2,
    origin: tuple[int, int] | None = None,
    sr_label: str = "SR",
) -> Any:
    """One comparison panel as a PIL RGB image.

    Parameters
    ----------
    lr : (h, w) float in [0, 1], LR pixels
    bicubic, sr, hr : (H, W) float in [0, 1], HR pixels (H = s·h)
    roi_threshold : int
        8-bit GT threshold of the ROI overlay (4, the smallest of the ROI metric thresholds).
    title : str
        Text above the panel.
    crop : int or None
        Side of the full-resolution crop, HR px (None: the whole image).
    zoom : int
        Pixel repetition of the crop on screen (1 = one screen pixel per HR pixel).
    origin : (y, x), optional
        Crop corner, HR px (default `best_crop`).
    sr_label : str
        Name of the model column.

    Returns
    -------
    PIL.Image.Image
        Two rows of four tiles of ``crop · zoom`` px.
    """
    from PIL import Image, ImageDraw

    hr = np.asarray(hr, dtype=np.float64)
    lr = np.asarray(lr, dtype=np.float64)
    s = hr.shape[0] // lr.shape[0]
    size = min(crop or hr.shape[0], hr.shape[0], hr.shape[1])
    size -= size % s
    y, x = origin if origin is not None else best_crop(hr, size, s)
    y, x = y - y % s, x - x % s
    cut = (slice(y, y + size), slice(x, x + size))
    hr_c, bic_c, sr_c = hr[cut], np.asarray(bicubic, np.float64)[cut], np.asarray(sr, np.float64)[cut]
    lr_c = lr[y // s : (y + size) // s, x // s : (x + size) // s]
    lr_up = np.repeat(np.repeat(lr_c, s, axis=0), s, axis=1)
    hi = float(np.percentile(hr_c, 99.5)) or 1.0
    err_b, err_s = np.abs(bic_c - hr_c), np.abs(sr_c - hr_c)
    ehi = float(max(np.percentile(err_b, 99.5), np.percentile(err_s, 99.5), 2 / 255))
    gray = [np.repeat(_to_uint8(a, hi)[..., None], 3, axis=2) for a in (lr_up, bic_c, sr_c, hr_c)]
    roi = np.round(np.clip(hr_c, 0, 1) * 255.0) >= roi_threshold
    over = gray[3].astype(np.float64)
    over[roi] = 0.5 * over[roi] + 0.5 * np.array([255.0, 40.0, 40.0])
    psnr_bic, psnr_sr = _psnr8(bic_c, hr_c), _psnr8(sr_c, hr_c)
    row1 = list(zip(gray, [f"LR x{s} (nearest)", f"bicubic {psnr_bic:.2f} dB (crop, all px)",
                           f"{sr_label} {psnr_sr:.2f} dB (crop, all px)", "HR"], strict=True))  # fmt: skip
    row2 = [
        (np.full_like(gray[0], 255), f"crop y {y}..{y + size}, x {x}..{x + size}"),
        (_heat(err_b / ehi), f"|bicubic - HR| (0..{ehi * 255:.0f})"),
        (_heat(err_s / ehi), f"|{sr_label} - HR| (0..{ehi * 255:.0f})"),
        (over.astype(np.uint8), f"ROI (HR >= {roi_threshold})"),
    ]
    side = size * zoom
    pad, head, lab = 6, 20 if title else 4, 14
    rows = [row1, row2]
    canvas = Image.new("RGB", (4 * (side + pad) + pad, head + 2 * (side + lab + pad)), (255, 255, 255))
    draw = ImageDraw.Draw(canvas)
    if title:
        draw.text((pad, 4), title, fill=(0, 0, 0))
    for r, row in enumerate(rows):
        top = head + r * (side + lab + pad) + lab
        for i, (img, label) in enumerate(row):
            left = pad + i * (side + pad)
            tile = Image.fromarray(np.ascontiguousarray(img)).resize((side, side), Image.NEAREST)
            canvas.paste(tile, (left, top))
            draw.text((left, top - lab + 1), label, fill=(0, 0, 0))
    return canvas


def save_panel(path: str | Path, lr: np.ndarray, bicubic: np.ndarray, sr: np.ndarray, hr: np.ndarray,
               **kwargs: Any) -> Path:  # fmt: skip
    """Write `panel_image` as PNG to `path`; returns the path."""
    path = Path(path)
    path.parent.mkdir(parents=True, exist_ok=True)
    panel_image(lr, bicubic, sr, hr, **kwargs).save(path)
    return path


def write_window_panels(
    model: Any,
    store: str,
    out_dir: str | Path,
    *,
    split: str,
    scale: int,
    marker: str,
    n: int,
    device: str | None = None,
    crop: int = 160,
    zoom: int = 2,
    sr_label: str = "SR",
    tiles: list[int] | None = None,
) -> list[Path]:
    """Comparison panels for the first `n` windows of a split (index order), of `tiles` when given.

    Parameters
    ----------
    model : torch.nn.Module (eval mode) mapping (B, 1, h, w) -> (B, 1, s·h, s·w)
    store : str
        Store path or URL.
    out_dir : path
        Receives ``tile<t>_window<w>.png``.
    split, scale, marker : the windows to draw.
    n : int
        Number of windows.
    crop, zoom, sr_label : see `panel_image`.

    Returns
    -------
    list of Path, one PNG per window.
    """
    from srcaco2.srdata.loader import make_loader
    from srcaco2.trainers.evaluate import predict_batch
    from srcaco2.trainers.metrics import patch_metrics

    loader = make_loader(str(store), split=split, scale=scale, marker=marker, batch_size=1,
                         h_size=512, mode="eval", max_windows=n, tiles=tiles)  # fmt: skip
    paths = []
    for batch in loader:
        lr, hr = batch["lr"], batch["hr"]
        if device is not None:
            lr = lr.to(device)
        sr = predict_batch(model, lr, scale=scale).cpu()
        bic = predict_batch("bicubic", lr, scale=scale).cpu()
        t, w = int(batch["tile"][0]), int(batch["window"][0])
        y0, x0 = int(batch["y0"][0]), int(batch["x0"][0])
        images = [a[0, 0].cpu().numpy() for a in (lr, bic, sr, hr)]
        m_sr, m_bic = patch_metrics(images[2], images[3], scale), patch_metrics(images[1], images[3], scale)
        title = (f"tile {t}, window {w} (y0={y0}, x0={x0}), x{scale} {marker}; whole 512x512 patch: "
                 f"ROI-PSNR {sr_label} {m_sr['roi_psnr']:.2f} dB, "
                 f"bicubic {m_bic['roi_psnr']:.2f} dB")  # fmt: skip
        paths.append(save_panel(Path(out_dir) / f"tile{t}_window{w}.png", *images, title=title, crop=crop,
                                zoom=zoom, sr_label=sr_label))  # fmt: skip
    return paths


def _read_csv(path: Path) -> list[dict[str, float]]:
    if not path.exists():
        return []
    with open(path, newline="") as fh:
        rows = []
        for r in csv.DictReader(fh):
            try:
                rows.append({k: float(v) for k, v in r.items() if v not in (None, "")})
            except ValueError:
                continue
        return rows


def line_plot(
    draw: Any,
    box: tuple[int, int, int, int],
    series: Sequence[tuple[np.ndarray, np.ndarray, tuple]],
    *,
    title: str,
    hline: tuple[float, str] | None = None,
) -> None:
    """A minimal line plot in `box` (left, top, right, bottom) of a PIL ImageDraw."""
    left, top, right, bottom = box
    ml, mb, mt = 52, 22, 18
    x0, x1, y0, y1 = left + ml, right - 8, top + mt, bottom - mb
    xs = np.concatenate([s[0] for s in series if len(s[0])] or [np.zeros(1)])
    ys = np.concatenate([s[1] for s in series if len(s[1])] or [np.zeros(1)])
    if hline is not None:
        ys = np.append(ys, hline[0])
    xmin, xmax = float(xs.min()), float(xs.max()) if xs.max() > xs.min() else float(xs.min()) + 1
    ymin, ymax = float(ys.min()), float(ys.max())
    if ymax - ymin < 1e-9:
        ymin, ymax = ymin - 0.5, ymax + 0.5
    pad = 0.06 * (ymax - ymin)
    ymin, ymax = ymin - pad, ymax + pad

    def px(x: float, y: float) -> tuple[float, float]:
        return (x0 + (x - xmin) / (xmax - xmin) * (x1 - x0), y1 - (y - ymin) / (ymax - ymin) * (y1 - y0))

    draw.rectangle((x0, y0, x1, y1), outline=(0, 0, 0))
    draw.text((x0, top + 2), title, fill=(0, 0, 0))
    for k in range(5):
        yv = ymin + k * (ymax - ymin) / 4
        _, yp = px(xmin, yv)
        draw.line((x0 - 4, yp, x0, yp), fill=(0, 0, 0))
        draw.text((left + 2, yp - 6), f"{yv:.4g}", fill=(0, 0, 0))
        xv = xmin + k * (xmax - xmin) / 4
        xp, _ = px(xv, ymin)
        draw.line((xp, y1, xp, y1 + 4), fill=(0, 0, 0))
        draw.text((xp - 10, y1 + 6), f"{xv:.0f}", fill=(0, 0, 0))
    if hline is not None:
        _, yp = px(xmin, hline[0])
        for xa in range(int(x0), int(x1), 10):
            draw.line((xa, yp, min(xa + 5, x1), yp), fill=(200, 0, 0))
        draw.text((x0 + 6, yp - 14), hline[1], fill=(200, 0, 0))
    for xv, yv, color in series:
        pts = [px(a, b) for a, b in zip(xv, yv, strict=True)]
        if len(pts) > 1:
            draw.line(pts, fill=color, width=2)
        for p in pts if len(pts) <= 40 else ():
            draw.ellipse((p[0] - 2, p[1] - 2, p[0] + 2, p[1] + 2), fill=color)


def curves_image(train: Sequence[Mapping[str, float]], val: Sequence[Mapping[str, float]],
                 bicubic_roi_psnr: float | None = None) -> Any:  # fmt: skip
    """Training curves as a PIL image: loss vs step (raw and smoothed), val ROI-PSNR vs step.

    Parameters
    ----------
    train : rows of ``metrics.csv`` (``step``, ``loss``)
    val : rows of ``val.csv`` (``step``, ``roi_psnr``)
    bicubic_roi_psnr : float, optional
        Bicubic's ROI-PSNR on the same validation windows, drawn as a dashed line.
    """
    from PIL import Image, ImageDraw

    img = Image.new("RGB", (920, 320), (255, 255, 255))
    draw = ImageDraw.Draw(img)
    st = np.array([r["step"] for r in train if "loss" in r], np.float64)
    loss = np.array([r["loss"] for r in train if "loss" in r], np.float64)
    series = [(st, loss, (170, 170, 220))]
    if len(loss) >= 10:
        k = max(2, len(loss) // 20)
        smooth = np.convolve(loss, np.ones(k) / k, mode="valid")
        series.append((st[k - 1 :], smooth, (20, 20, 160)))
    line_plot(draw, (0, 0, 460, 320), series, title="training loss (MSE - SSIM) per step")
    vs = np.array([r["step"] for r in val if "roi_psnr" in r], np.float64)
    vp = np.array([r["roi_psnr"] for r in val if "roi_psnr" in r], np.float64)
    hline = None
    if bicubic_roi_psnr is not None:
        hline = (float(bicubic_roi_psnr), f"bicubic {bicubic_roi_psnr:.2f} dB")
    line_plot(draw, (460, 0, 920, 320), [(vs, vp, (20, 120, 20))], title="validation ROI-PSNR (dB) vs step",
          hline=hline)  # fmt: skip
    return img


def write_training_curves(
    run_dir: str | Path, path: str | Path, bicubic_roi_psnr: float | None = None
) -> Path:
    """Draw ``metrics.csv`` / ``val.csv`` of a run directory (`curves_image`) as PNG at `path`."""
    run_dir, path = Path(run_dir), Path(path)
    path.parent.mkdir(parents=True, exist_ok=True)
    img = curves_image(_read_csv(run_dir / "metrics.csv"), _read_csv(run_dir / "val.csv"), bicubic_roi_psnr)
    img.save(path)
    return path


def _link(target: str | Path, report: Path) -> str:
    """Path of `target` relative to the report's folder (POSIX separators), for Markdown links."""
    return Path(os.path.relpath(os.path.abspath(target), os.path.abspath(report.parent))).as_posix()


def write_report(
    path: str | Path,
    *,
    title: str,
    what: Mapping[str, Any],
    table_md: str,
    panels: Sequence[str | Path] = (),
    notes: Sequence[str] = (),
    sections: Sequence[tuple[str, str]] = (),
    images: Sequence[tuple[str, str | Path]] = (),
    results_title: str = "Results (test split)",
) -> Path:
    """Write the Markdown report: what was run, the results table, extra sections, images, panels.

    Parameters
    ----------
    path : path of ``report.md``
    title : str
    what : mapping
        Key/value list of what was run.
    table_md : str
        Markdown table(s) of the results.
    panels : paths of panel PNGs
    notes : bullet points under the table
    sections : (heading, Markdown body) pairs, after the notes
    images : (heading, PNG path) pairs, before the panels
    results_title : heading of the table

    Every image link is relative to the report's folder, whether the paths given are absolute or
    relative to the working directory, so the report renders in any Markdown viewer.
    """
    path = Path(path)
    lines = [f"# {title}", "", "## What was run", ""]
    lines += [f"- **{k}**: {v}" for k, v in what.items()]
    lines += ["", f"## {results_title}", "", table_md.rstrip(), ""]
    if notes:
        lines += [f"- {n}" for n in notes] + [""]
    for head, body in sections:
        lines += [f"## {head}", "", body.rstrip(), ""]
    for head, img in images:
        rel = _link(img, path)
        lines += [f"## {head}", "", f"![{Path(img).stem}]({rel})", ""]
    if panels:
        lines += [
            "## Panels",
            "",
            "Full-resolution crops (zoomed, not shrunk): LR (nearest) | bicubic | SR | HR, then "
            "|bicubic − HR| and |SR − HR| on one colour scale, and the ROI (red: HR ≥ 4); the PSNR of each "
            "crop over all its pixels (not the ROI).",
            "",
        ]
        for p in panels:
            lines += [f"![{Path(p).stem}]({_link(p, path)})", ""]
    path.parent.mkdir(parents=True, exist_ok=True)
    path.write_text("\n".join(lines))
    return path
