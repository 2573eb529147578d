"""The human side of a bioimage.io package: test images from the real sample, the cover, the README.

Test tensors come from the real SR-CACO-2 sample shipped with srcaco2 (`srcaco2.srdata.real_sample`,
CELL2 nuclei): the LR acquisition at the network's scale, centre-cropped to `test_side` LR pixels.
The cover shows LR | SR | HR of that crop side by side (LR and SR resized to the HR grid,
nearest-neighbour; intensities stretched to the crop's 99.8th HR percentile for display only).
"""

from __future__ import annotations

from collections.abc import Mapping
from pathlib import Path
from typing import Any

import numpy as np

__all__ = ["test_crop", "write_cover", "readme_text", "CITATION", "CITATION_URL"]

CITATION = (
    "S. Belharbi, M. Whitford, P. Hoang, S. Murtaza, L. McCaffrey, E. Granger. SR-CACO-2: A Dataset "
    "for Confocal Fluorescence Microscopy Image Super-Resolution. NeurIPS 2024, Datasets and Benchmarks "
    "Track."
)
CITATION_URL = "https://arxiv.org/abs/2406.09168"


def test_crop(scale: int, side: int) -> tuple[np.ndarray, np.ndarray]:
    """``(lr, hr)`` uint8 centre crops of the real sample: ``(side, side)`` LR px at /`scale` and the
    HR region they cover, ``(scale·side, scale·side)`` (unregistered: off by ~2 LR px, a cover only).

    Raises
    ------
    ValueError
        `side` larger than the sample's LR image (512 / `scale`).
    """
    from srcaco2.srdata.real_sample import load_real_sample, real_lr

    sample = load_real_sample()
    lr_full, hr_full = real_lr(scale, sample), sample[1]
    n = lr_full.shape[0]
    if side > n:
        raise ValueError(
            f"a {side}-px test input does not fit the real sample's {n}x{n} LR image at x{scale}"
        )
    y0 = (n - side) // 2
    lr = lr_full[y0 : y0 + side, y0 : y0 + side]
    hr = hr_full[scale * y0 : scale * (y0 + side), scale * y0 : scale * (y0 + side)]
    return np.ascontiguousarray(lr), np.ascontiguousarray(hr)


def write_cover(path: Path, lr: np.ndarray, sr: np.ndarray, hr: np.ndarray) -> Path:
    """PNG ``LR | SR | HR`` (each at the HR size, 4-px white gaps); `sr` in grey levels (float)."""
    from PIL import Image

    h, w = hr.shape
    top = max(float(np.percentile(hr, 99.8)), 1.0)

    def show(a: np.ndarray) -> np.ndarray:
        a = np.asarray(a, np.float64)
        if a.shape != (h, w):
            a = np.kron(a, np.ones((h // a.shape[0], w // a.shape[1])))
        return np.clip(np.round(a * (255.0 / top)), 0, 255).astype(np.uint8)

    gap = np.full((h, 4), 255, np.uint8)
    panel = np.concatenate([show(lr), gap, show(sr), gap, show(hr)], axis=1)
    side = max(1, 256 // h)  # small test crops are enlarged for the zoo's thumbnails
    img = Image.fromarray(panel)
    if side > 1:
        img = img.resize((panel.shape[1] * side, h * side), Image.NEAREST)
    img.save(path)
    return path


def _table(values: Mapping[str, Any]) -> str:
    rows = [f"| {k} | {v:.4g} |" if isinstance(v, float) else f"| {k} | {v} |" for k, v in values.items()]
    return "| metric | value |\n|---|---|\n" + "\n".join(rows)


def readme_text(
    facts: Mapping[str, Any],
    *,
    display_name: str,
    paper: str,
    license_id: str,
    halo_note: str,
    torchscript: bool,
) -> str:
    """The package's README.md (Markdown): what the model does, how it was trained, how to run it."""
    s = facts["scale"]
    marker = facts.get("marker") or "unknown marker"
    mapping = facts.get("intensity")
    if mapping:
        lo, hi = float(mapping["low"][0]), float(mapping["high"][0])
        io_lines = [
            f"* input `lr`: (batch, channel, y, x) **{mapping['dtype']}** grey levels (the raw LR image); "
            f"the package's pre-processing maps {lo:g} -> 0 and {hi:g} -> 1 (the training store's p0.1 and "
            "p99.9 of its HR images), as the toolkit does.",
            f"* output `sr`: (batch, channel, {s}·y, {s}·x) float32 grey levels in the input's range "
            f"(network output x {hi - lo:g} + {lo:g}, clipped): round it for a {mapping['dtype']} image.",
        ]
    else:
        io_lines = [
            "* input `lr`: (batch, channel, y, x) **uint8** grey levels 0..255 (the raw LR image); the "
            "package's pre-processing divides by 255, as the toolkit does (float32 in [0, 1]).",
            f"* output `sr`: (batch, channel, {s}·y, {s}·x) float32 grey levels in [0, 255] (network output "
            "x 255, clipped): round it for an 8-bit image.",
        ]
    lines = [
        f"# {display_name} x{s} super-resolution, SR-CACO-2 ({marker})",
        "",
        f"Super-resolves a confocal fluorescence image by x{s} in each axis (one channel, {marker} of the "
        f"SR-CACO-2 benchmark), trained with the srcaco2 toolkit. Network: {display_name} ({paper}).",
        "",
        "## Input and output",
        "",
        *io_lines,
        f"* tiling: {halo_note}",
        "* weights: `pytorch_state_dict` (architecture in the package's .py file, torch only)"
        + (" and `torchscript`." if torchscript else "; torchscript tracing is not exact for this network."),
        "",
        "## Training data and run",
        "",
    ]
    run = {
        "store": facts.get("store"), "marker": facts.get("marker"), "scale": s,
        "recipe": facts.get("recipe"), "steps": facts.get("step"), "epochs": facts.get("epoch"),
        "selected by": facts.get("select_metric"), "architecture overrides": facts.get("overrides") or None,
        "weights exported from": Path(str(facts.get("source", ""))).name or None,
    }  # fmt: skip
    lines += [f"* {k}: {v}" for k, v in run.items() if v not in (None, "")]
    if facts.get("source_format") == "original":
        lines.append("* weights published with the SR-CACO-2 benchmark (original run)")
    for key, title in (("validation", "Validation metrics"), ("test", "Test metrics")):
        if facts.get(key):
            lines += ["", f"## {title}", "", _table(facts[key])]
    if not facts.get("validation") and not facts.get("test"):
        lines += ["", "No validation or test metrics were found beside the weights."]
    lines += [
        "",
        "## Validation",
        "",
        "The package passed bioimageio.core's `test_model` when it was exported (srcaco2 `srtrain export`): "
        "its test input is a crop of the real SR-CACO-2 sample (CELL2 nuclei, the LR acquisition at this "
        "scale), its test output the toolkit's own prediction of it. srcaco2's test suite checks, for "
        "representative networks, that bioimageio.core's prediction equals `srtrain predict` within 1 grey "
        "level and that tiled prediction with the declared halo equals whole-image prediction.",
        "",
        "## Run it",
        "",
        "* Fiji: deepImageJ (Install model from file), napari: bioimageio plugin, or Python: "
        "`bioimageio predict` / `bioimageio.core.predict`.",
        "* srcaco2: `srtrain predict --checkpoint THIS.zip --input image.tif`.",
        "",
        "## Citation",
        "",
        f"{CITATION} {CITATION_URL}",
        "",
        "## Licence",
        "",
        f"Weights and this package: {license_id}. Network code: srcaco2 (MIT), reimplementing {paper}.",
        "",
    ]
    return "\n".join(lines)
