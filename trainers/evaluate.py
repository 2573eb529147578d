"""Evaluation of a model (or the bicubic baseline) on a split of a store, the paper's protocol.

Every window of the split (its 512² patch, in index order) is super-resolved in one pass, scored
by `trainers.metrics.patch_metrics` (8-bit rounding, border crop = scale, valid 11×11 SSIM, ROI
thresholds 4..10) and written as one CSV row; the split's score is the mean of the per-window
values (SPEC.md §4.4). An evaluation directory holds ``windows.csv`` and ``summary.json``;
`trainers.tables` turns many of them into the paper's Tables 4 and 5.
"""

from __future__ import annotations

import csv
import dataclasses
import difflib
import json
import logging
from collections.abc import Callable
from pathlib import Path
from typing import TYPE_CHECKING, Any

if TYPE_CHECKING:  # pragma: no cover
    import torch

__all__ = [
    "EvalResult",
    "ROW_FIELDS",
    "predict_batch",
    "evaluate_model",
    "evaluate",
    "write_eval",
    "read_eval",
    "check_store_args",
    "check_weight_free_method",
]

log = logging.getLogger(__name__)

ROW_FIELDS: tuple[str, ...] = (
    "tile", "window", "y0", "x0", "psnr", "nrmse", "ssim", "roi_psnr", "roi_nrmse", "roi_ssim",
)  # fmt: skip
"""Columns of ``windows.csv`` (y0, x0: top-left of the window, HR pixels)."""


@dataclasses.dataclass
class EvalResult:
    """Per-window rows, the split's means, and what was evaluated (``meta``)."""

    rows: list[dict[str, Any]]
    summary: dict[str, float]
    meta: dict[str, Any]


def check_store_args(store: str | Path, split: str, marker: str, scale: int) -> None:
    """Refuse a path that is not a store, or a split / marker / scale the store does not have.

    Raises
    ------
    StoreFormatError
        Nothing at `store`, not a srcaco2 store, or another format version (a ValueError).
    ValueError
        Unknown split, or a marker / scale the store does not hold.
    """
    from srdata.schema import SPLITS, open_root, read_attrs

    attrs = read_attrs(open_root(str(store), mode="r"), where=str(store))
    if split not in SPLITS:
        raise ValueError(f"split={split!r} is not one of {', '.join(SPLITS)}")
    if marker not in attrs.markers:
        raise ValueError(f"marker={marker!r} is not in {store}; it holds {', '.join(attrs.markers)}")
    if int(scale) not in attrs.scales:
        raise ValueError(f"scale={scale!r} is not in {store}; it holds scales {list(attrs.scales)}")


def check_weight_free_method(method: str | None) -> str:
    """`method` lower-cased if it runs without trained weights (only ``bicubic``), else a clear error.

    Raises
    ------
    ValueError
        No method, an unknown name (with the closest known names), or a network that needs a
        checkpoint.
    """
    from trainers.models.registry import MODEL_NAMES

    if not method:
        raise ValueError("give a checkpoint (--checkpoint PATH) or --method bicubic")
    key = str(method).lower()
    if key == "bicubic":
        return key
    if key in MODEL_NAMES:
        raise ValueError(
            f"method {method!r} needs trained weights: pass --checkpoint PATH (best.pt of `srtrain fit` "
            "or an original run directory); only 'bicubic' runs without a checkpoint"
        )
    close = difflib.get_close_matches(key, MODEL_NAMES, n=3, cutoff=0.5)
    hint = f" Did you mean {' or '.join(repr(c) for c in close)}?" if close else ""
    raise ValueError(f"no method {method!r}.{hint} Known: {', '.join(MODEL_NAMES)} (see `srtrain methods`)")


def predict_batch(
    model: Any,
    lr: torch.Tensor,
    *,
    scale: int,
    amp: bool = False,
) -> torch.Tensor:
    """Super-resolve a batch in evaluation mode.

    Parameters
    ----------
    model : torch.nn.Module in eval mode, or the string ``"bicubic"`` (SPEC §4.5 baseline)
    lr : (B, 1, h, w) float32 in [0, 1], on the model's device
    scale : int
    amp : bool
        bf16 autocast (CUDA).

    Returns
    -------
    (B, 1, s·h, s·w) float32 in [0, 1] (clamped)
    """
    import torch

    from trainers.metrics import bicubic_upsample

    if isinstance(model, str):
        if model != "bicubic":
            raise ValueError(f"model must be a torch module or 'bicubic', got {model!r}")
        return bicubic_upsample(lr, scale).float()
    with torch.no_grad(), torch.autocast(lr.device.type, dtype=torch.bfloat16, enabled=amp):
        out = model(lr)
    if isinstance(out, (list, tuple)):
        out = out[-1]
    return out.float().clamp(0.0, 1.0)


def evaluate_model(
    model: Any,
    loader: Any,
    scale: int,
    *,
    device: Any = "cpu",
    amp: bool = False,
    progress: Callable[[int, int], None] | None = None,
    seed: int | None = 0,
) -> list[dict[str, Any]]:
    """Score every window an eval-mode loader yields; one row per window (`ROW_FIELDS`).

    `progress(done, total)` is called after each batch. Like the original evaluation, torch is
    seeded with `seed` before every batch, so networks that draw random numbers in forward (NLSN's
    LSH rotations) give the benchmark's outputs for the same batch composition and device; the
    caller's RNG state is restored afterwards (`torch.random.fork_rng`), so validation inside a
    training run does not perturb the training stream. ``seed=None`` leaves the RNG alone.
    """
    import torch

    from trainers.metrics import patch_metrics

    was_training = getattr(model, "training", False)
    if not isinstance(model, str):
        model.eval()
    rows: list[dict[str, Any]] = []
    total = len(loader)
    dev = torch.device(device)
    try:
        with torch.random.fork_rng(devices=[dev] if dev.type == "cuda" else [], enabled=seed is not None):
            for i, batch in enumerate(loader):
                if seed is not None:
                    torch.manual_seed(seed)  # seeds the CUDA generators too
                lr = batch["lr"].to(device, non_blocking=True)
                sr = predict_batch(model, lr, scale=scale, amp=amp).cpu()
                hr = batch["hr"]
                for b in range(sr.shape[0]):
                    m = patch_metrics(sr[b, 0].numpy(), hr[b, 0].numpy(), scale)
                    row = {k: int(batch[k][b]) for k in ("tile", "window", "y0", "x0")}
                    row.update(m)
                    rows.append(row)
                if progress is not None:
                    progress(i + 1, total)
    finally:
        if was_training:
            model.train()
    return rows


def _summary(rows: list[dict[str, Any]]) -> dict[str, float]:
    from trainers.metrics import METRIC_NAMES, mean_metrics

    means = mean_metrics(rows)
    return {k: means[k] for k in METRIC_NAMES}


def evaluate(
    store: str | Path,
    *,
    split: str,
    marker: str,
    scale: int,
    checkpoint: str | Path | None = None,
    method: str | None = None,
    batch_size: int = 1,
    max_windows: int | None = None,
    device: str | None = None,
    out_dir: str | Path | None = None,
    progress: Callable[[int, int], None] | None = None,
) -> EvalResult:
    """Evaluate a checkpoint (ours or the original's) or ``method="bicubic"`` on a split.

    Parameters
    ----------
    store : path of a store built by ``srdata build``
    split : ``train``, ``val`` or ``test``
    marker : ``CELL0``..``CELL2``
    scale : 2, 4 or 8
    checkpoint : path, optional
        A ``best.pt`` / ``last.pt`` of ``srtrain fit`` or an original ``G-model.pth`` run dir/file;
        it must match `scale` and `marker` (checked by `load_pretrained`).
    method : str, optional
        ``"bicubic"`` for the baseline (no checkpoint); with a checkpoint, its expected method.
    max_windows : int, optional
        Only the first N windows of the split.
    out_dir : path, optional
        Where to write ``windows.csv`` and ``summary.json``.

    Raises
    ------
    FileNotFoundError
        The store or the checkpoint does not exist.
    ValueError
        Bad split / marker / scale, neither or both of checkpoint and bicubic, or a checkpoint of
        another method / scale / marker.
    """

    from srdata.loader import make_loader

    check_store_args(store, split, marker, scale)
    if checkpoint is None:
        method = check_weight_free_method(method)
    elif method is not None and str(method).lower() == "bicubic":
        raise ValueError("--checkpoint and --method bicubic exclude each other")
    from trainers._ddp import resolve_device

    dev = resolve_device(device)
    meta: dict[str, Any] = {"store": str(store), "split": split, "marker": marker, "scale": int(scale)}
    if checkpoint is None:
        model: Any = "bicubic"
        meta.update(method="bicubic", checkpoint=None)
    else:
        from trainers.checkpoints import load_pretrained

        if not Path(checkpoint).exists():
            raise FileNotFoundError(f"checkpoint {checkpoint} does not exist")
        model, info = load_pretrained(checkpoint, method=method, scale=int(scale), marker=marker)
        name = (info or {}).get("method") or method
        if name is None:
            raise ValueError(f"cannot tell which method checkpoint {checkpoint} holds; pass --method")
        model = model.to(dev).eval()
        meta.update(method=str(name).lower(), checkpoint=str(checkpoint))
    loader = make_loader(
        str(store), split=split, scale=int(scale), marker=marker, batch_size=batch_size, h_size=512,
        mode="eval", max_windows=max_windows,
    )  # fmt: skip
    if len(loader) == 0:
        raise ValueError(
            f"split {split!r} of store {store} has no windows for marker {marker}, scale {scale}"
        )
    amp = dev.type == "cuda"
    rows = evaluate_model(model, loader, int(scale), device=dev, amp=amp, progress=progress)
    meta["n_windows"] = len(rows)
    result = EvalResult(rows=rows, summary=_summary(rows), meta=meta)
    if out_dir is not None:
        write_eval(out_dir, result)
    return result


def write_eval(out_dir: str | Path, result: EvalResult) -> Path:
    """Write ``windows.csv`` (one row per window) and ``summary.json`` (meta + means) to `out_dir`."""
    out = Path(out_dir)
    out.mkdir(parents=True, exist_ok=True)
    with (out / "windows.csv").open("w", newline="") as f:
        w = csv.DictWriter(f, fieldnames=list(ROW_FIELDS), extrasaction="ignore")
        w.writeheader()
        w.writerows(result.rows)
    payload = dict(result.meta)
    payload["metrics"] = result.summary
    (out / "summary.json").write_text(json.dumps(payload, indent=2))
    return out


def read_eval(path: str | Path) -> dict[str, Any]:
    """The ``summary.json`` of an evaluation directory (or the file itself)."""
    p = Path(path)
    if p.is_dir():
        p = p / "summary.json"
    if not p.exists():
        raise FileNotFoundError(f"{p} does not exist: not an `srtrain eval` output directory")
    try:
        data = json.loads(p.read_text())
    except (json.JSONDecodeError, UnicodeDecodeError) as exc:
        raise ValueError(
            f"{p} is not valid JSON ({exc}): a damaged `srtrain eval` summary; rerun `srtrain eval` into it"
        ) from None
    for key in ("method", "scale", "marker", "metrics"):
        if not isinstance(data, dict) or key not in data:
            raise ValueError(f"{p} has no {key!r}: not an `srtrain eval` summary")
    return data
