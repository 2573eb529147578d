"""Visual report pieces: PNG panels LR | bicubic | SR | HR | ROI overlay, and the Markdown report.

Panels are drawn with Pillow (a core dependency), so they work on any machine. All images of a
panel share one display range (0 .. the 99.5th percentile of HR), so brightness is comparable
across columns; the LR image is shown NEAREST-upsampled to the HR size.
"""

from __future__ import annotations

from collections.abc import Mapping, Sequence
from pathlib import Path
from typing import Any

import numpy as np

__all__ = ["panel_image", "save_panel", "write_window_panels", "write_report"]

_LABELS = ("LR", "bicubic", "SR", "HR", "ROI (HR >= 4)")


def _to_uint8(img: np.ndarray, hi: float) -> np.ndarray:
    return (np.clip(img / max(hi, 1e-6), 0.0, 1.0) * 255.0 + 0.5).astype(np.uint8)


def panel_image(
    lr: np.ndarray,
    bicubic: np.ndarray,
    sr: np.ndarray,
    hr: np.ndarray,
    *,
    roi_threshold: int = 4,
    title: str = "",
    display_size: int | None = 256,
) -> Any:
    """One panel as a PIL RGB image.

    Parameters
    ----------
    lr : (h, w) float in [0, 1], LR pixels
    bicubic, sr, hr : (H, W) float in [0, 1], HR pixels (H = s·h)
    roi_threshold : int
        8-bit GT threshold of the ROI overlay (4, the smallest of the ROI metric thresholds).
    title : str
        Text above the panel.
    display_size : int or None
        Side of each tile in the PNG (None = HR size).

    Returns
    -------
    PIL.Image.Image
    """
    from PIL import Image, ImageDraw

    hr = np.asarray(hr, dtype=np.float64)
    size = hr.shape[0] if display_size is None else int(display_size)
    hi = float(np.percentile(hr, 99.5)) or 1.0
    lr_up = np.asarray(
        Image.fromarray(_to_uint8(np.asarray(lr, np.float64), hi)).resize(hr.shape[::-1], Image.NEAREST)
    )
    tiles = [lr_up] + [_to_uint8(np.asarray(a, np.float64), hi) for a in (bicubic, sr, hr)]
    rgb = [np.repeat(t[..., None], 3, axis=2) for t in tiles]
    roi = np.round(np.clip(hr, 0, 1) * 255.0) >= roi_threshold
    over = rgb[3].astype(np.float64)
    over[roi] = 0.5 * over[roi] + 0.5 * np.array([255.0, 40.0, 40.0])
    rgb.append(over.astype(np.uint8))
    pad, head = 4, 32 if title else 18
    canvas = Image.new("RGB", (len(rgb) * (size + pad) + pad, size + head + pad), (255, 255, 255))
    draw = ImageDraw.Draw(canvas)
    if title:
        draw.text((pad, 2), title, fill=(0, 0, 0))
    for i, (img, label) in enumerate(zip(rgb, _LABELS, strict=True)):
        x = pad + i * (size + pad)
        canvas.paste(Image.fromarray(img).resize((size, size), Image.NEAREST), (x, head))
        draw.text((x, head - 14), label, fill=(0, 0, 0))
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
) -> list[Path]:
    """Panels LR | bicubic | SR | HR | ROI for the first `n` windows of a split (index order).

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

    Returns
    -------
    list of Path, one PNG per window.
    """
    from srdata.loader import make_loader
    from trainers.evaluate import predict_batch

    loader = make_loader(str(store), split=split, scale=scale, marker=marker, batch_size=1,
                         h_size=512, mode="eval", max_windows=n)  # fmt: skip
    paths = []
    for batch in loader:
        lr, hr = batch["lr"], batch["hr"]
        if device is not None:
            lr = lr.to(device)
        sr = predict_batch(model, lr, scale=scale).cpu()
        bic = predict_batch("bicubic", lr, scale=scale).cpu()
        t, w = int(batch["tile"][0]), int(batch["window"][0])
        y0, x0 = int(batch["y0"][0]), int(batch["x0"][0])
        title = f"tile {t}, window {w} (y0={y0}, x0={x0}), x{scale} {marker}"
        images = [a[0, 0].cpu().numpy() for a in (lr, bic, sr, hr)]
        paths.append(save_panel(Path(out_dir) / f"tile{t}_window{w}.png", *images, title=title))
    return paths


def write_report(
    path: str | Path,
    *,
    title: str,
    what: Mapping[str, Any],
    table_md: str,
    panels: Sequence[str | Path] = (),
    notes: Sequence[str] = (),
) -> Path:
    """Write the Markdown report: what was run (key/value list), the results table, the panels.

    Panel paths are written relative to the report's folder.
    """
    path = Path(path)
    lines = [f"# {title}", "", "## What was run", ""]
    lines += [f"- **{k}**: {v}" for k, v in what.items()]
    lines += ["", "## Results (test split)", "", table_md.rstrip(), ""]
    if notes:
        lines += [f"- {n}" for n in notes] + [""]
    if panels:
        lines += [
            "## Panels",
            "",
            "LR (nearest) | bicubic | SR | HR | ROI overlay (red: HR ≥ 4), one test window each.",
            "",
        ]
        for p in panels:
            rel = Path(p).relative_to(path.parent) if Path(p).is_absolute() else Path(p)
            lines.append(f"![{rel.stem}]({rel.as_posix()})")
            lines.append("")
    path.parent.mkdir(parents=True, exist_ok=True)
    path.write_text("\n".join(lines))
    return path
