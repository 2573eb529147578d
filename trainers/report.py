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

__all__ = ["panel_image", "save_panel", "write_report"]

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
