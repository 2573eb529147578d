"""Evaluation of a model (or the bicubic baseline) on a split of a store, the paper's protocol.

Every window of the split (its 512² patch, in index order) is super-resolved in one pass, scored
by `srcaco2.trainers.metrics.patch_metrics` (8-bit rounding, border crop = scale, valid 11×11 SSIM, ROI
thresholds 4..10) and written as one CSV row; the split's score is the mean of the per-window
values (docs/protocol.md#aggregation). An evaluation directory holds ``windows.csv`` and ``summary.json``;
`srcaco2.trainers.tables` turns many of them into the paper's Tables 4 and 5.

The split's windows are decoded once (`srcaco2.trainers.decoded_windows.decode_windows`) and scored by
`evaluate_model`; `evaluate` (``srtrain eval``) and `srcaco2.trainers.eval_runs` (``srtrain eval-runs``,
many runs sharing one decode) both go through these two functions, so their numbers are the same
bit for bit. The decoded split is held in memory as uint8 (≈ 0.3 MB per window: the 1,471 test
windows of one marker × scale take ≈ 0.4-0.5 GB).

Beyond the paper's protocol, each row also holds the Fourier ring correlation resolution of the
prediction against the ground truth (`FRC_THRESHOLD`: the fixed 1/7 threshold of
`srcaco2.trainers.metrics.frc_resolution`, on the same 8-bit, border-cropped images as the other metrics):
``frc_px`` in HR pixels and ``frc_um`` in micrometres (× the store's HR pixel size; empty when the
store does not give a positive one). Lower is finer; 2 px (Nyquist) when the correlation never
falls below the threshold.
"""

from __future__ import annotations

import csv
import dataclasses
import difflib
import io
import json
import logging
import math
from collections.abc import Callable
from pathlib import Path
from typing import TYPE_CHECKING, Any

from srcaco2.srdata.atomic import write_text_atomic

if TYPE_CHECKING:  # pragma: no cover
    import torch

__all__ = [
    "EvalResult",
    "ROW_FIELDS",
    "FRC_THRESHOLD",
    "NonFiniteOutputError",
    "load_eval_model",
    "hr_pixel_size_um",
    "frc_cells",
    "summarize",
    "predict_batch",
    "evaluate_model",
    "evaluate",
    "evaluate_decoded",
    "write_eval",
    "read_eval",
    "check_store_args",
    "check_weight_free_method",
]

log = logging.getLogger(__name__)

ROW_FIELDS: tuple[str, ...] = (
    "tile", "window", "y0", "x0", "psnr", "nrmse", "ssim", "roi_psnr", "roi_nrmse", "roi_ssim",
    "frc_px", "frc_um",
)  # fmt: skip
"""Columns of ``windows.csv`` (y0, x0: top-left of the window, HR pixels; frc_px / frc_um: FRC
resolution in HR pixels / micrometres, beyond the paper's protocol)."""

FRC_THRESHOLD: float = 1.0 / 7.0
"""The FRC threshold of `srcaco2.trainers.metrics.frc_resolution` (fixed 1/7, not the ½-bit curve)."""


class NonFiniteOutputError(ValueError):
    """A network produced NaN or infinite pixels (the original evaluation aborts on such metrics)."""


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
    from srcaco2.srdata.schema import SPLITS
    from srcaco2.srdata.store import Store

    attrs = Store.open(store).attrs
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
    from srcaco2.trainers.models.registry import MODEL_NAMES

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
    model : torch.nn.Module in eval mode, or the string ``"bicubic"`` (docs/protocol.md#bicubic-baseline
    baseline) lr : (B, 1, h, w) float32 in [0, 1], on the model's device
    scale : int
    amp : bool
        bf16 autocast (CUDA).

    Returns
    -------
    (B, 1, s·h, s·w) float32 in [0, 1] (clamped)
    """
    import torch

    from srcaco2.trainers.metrics import bicubic_upsample

    if isinstance(model, str):
        if model != "bicubic":
            raise ValueError(f"model must be a torch module or 'bicubic', got {model!r}")
        return bicubic_upsample(lr, scale).float()
    with torch.no_grad(), torch.autocast(lr.device.type, dtype=torch.bfloat16, enabled=amp):
        out = model(lr)
    if isinstance(out, (list, tuple)):
        out = out[-1]
    return out.float().clamp(0.0, 1.0)


def hr_pixel_size_um(store: str | Path) -> float | None:
    """The store's HR pixel size in µm, or None when it does not give a finite positive one."""
    from srcaco2.srdata.store import Store

    px = (Store.open(store).attrs.pixel_size_um or {}).get("hr")
    try:
        px = float(px)
    except (TypeError, ValueError):
        return None
    return px if math.isfinite(px) and px > 0 else None


def frc_cells(sr: Any, hr: Any, scale: int, pixel_size_um: float | None) -> dict[str, float | None]:
    """FRC resolution of one window on the metrics' images (8-bit levels, border crop = scale)."""
    from srcaco2.trainers.metrics import frc_resolution, quantize_8bit

    b = int(scale)
    e, h = quantize_8bit(sr)[b:-b, b:-b], quantize_8bit(hr)[b:-b, b:-b]
    px = frc_resolution(e, h, threshold=FRC_THRESHOLD)
    return {"frc_px": px, "frc_um": None if pixel_size_um is None else px * pixel_size_um}


def evaluate_model(
    model: Any,
    loader: Any,
    scale: int,
    *,
    device: Any = "cpu",
    amp: bool = False,
    progress: Callable[[int, int], None] | None = None,
    seed: int | None = 0,
    frc: bool = False,
    pixel_size_um: float | None = None,
    check_finite: bool = False,
    aligner: Any = None,
) -> list[dict[str, Any]]:
    """Score every window an eval-mode loader (or a `srcaco2.trainers.decoded_windows.DecodedWindows`)
    yields; one row per window.

    `progress(done, total)` is called after each batch. Like the original evaluation, torch is
    seeded with `seed` before every batch, so networks that draw random numbers in forward (NLSN's
    LSH rotations) give the benchmark's outputs for the same batch composition and device; the
    caller's RNG state is restored afterwards (`torch.random.fork_rng`), so validation inside a
    training run does not perturb the training stream. ``seed=None`` leaves the RNG alone.

    Parameters
    ----------
    model : torch.nn.Module or ``"bicubic"``
    loader : iterable of batches with ``lr`` (B, 1, h, w), ``hr`` (B, 1, H, W) float32 in [0, 1] and
        ``tile``, ``window``, ``y0``, ``x0`` (B,) ints; ``len(loader)`` = number of batches
    scale : int
    frc : bool
        Add ``frc_px`` / ``frc_um`` (FRC resolution, `FRC_THRESHOLD`) to each row.
    pixel_size_um : float, optional
        HR pixel size for ``frc_um`` (None: ``frc_um`` is None).
    check_finite : bool
        Raise `NonFiniteOutputError` when a prediction holds NaN or ±inf.
    aligner : `srcaco2.trainers.alignment.SubpixelAligner` (``--alignment subpixel``) or None (the paper)

    Returns
    -------
    list of dict
        `ROW_FIELDS` keys (the FRC ones only with ``frc=True``).
    """
    import torch

    from srcaco2.trainers.metrics import patch_metrics

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
                if check_finite and not bool(torch.isfinite(sr).all()):
                    bad = int((~torch.isfinite(sr)).flatten(1).any(1).nonzero()[0, 0])
                    raise NonFiniteOutputError(
                        f"the network output holds NaN or infinite values (tile {int(batch['tile'][bad])}, "
                        f"window {int(batch['window'][bad])}); the weights are broken or do not belong "
                        "to this network"
                    )
                hr = batch["hr"]
                for b in range(sr.shape[0]):
                    e, h = sr[b, 0].numpy(), hr[b, 0].numpy()
                    if aligner is not None:
                        e, h = aligner.apply(e, h, int(batch["window"][b]))
                    row = {k: int(batch[k][b]) for k in ("tile", "window", "y0", "x0")}
                    row.update(patch_metrics(e, h, scale))
                    if frc:
                        row.update(frc_cells(e, h, scale, pixel_size_um))
                    rows.append(row)
                if progress is not None:
                    progress(i + 1, total)
    finally:
        if was_training:
            model.train()
    return rows


def summarize(rows: list[dict[str, Any]]) -> dict[str, float | None]:
    """The split's means: the six paper metrics (`METRIC_NAMES`), plus ``frc_px`` / ``frc_um`` when
    the rows hold them (``frc_um`` None when any window lacks it)."""
    from srcaco2.trainers.metrics import METRIC_NAMES, mean_metrics

    means = mean_metrics(rows)
    out: dict[str, float | None] = {k: means[k] for k in METRIC_NAMES}
    if rows and "frc_px" in rows[0]:
        out["frc_px"] = means["frc_px"]
        um = [r.get("frc_um") for r in rows]
        out["frc_um"] = None if any(v is None for v in um) else float(sum(um) / len(um))
    return out


def load_eval_model(
    checkpoint: str | Path,
    *,
    method: str | None,
    scale: int,
    marker: str,
    device: Any,
) -> tuple[Any, str]:
    """Load a checkpoint for evaluation: (model in eval mode on `device`, method name).

    Raises
    ------
    FileNotFoundError
        No such checkpoint.
    ValueError
        (`srcaco2.trainers.checkpoints.CheckpointError`) unreadable weights, a layout that does not fit,
        or a method / scale / marker other than asked.
    """
    from srcaco2.trainers.checkpoints import load_pretrained

    if not Path(checkpoint).exists():
        raise FileNotFoundError(f"checkpoint {checkpoint} does not exist")
    model, info = load_pretrained(checkpoint, method=method, scale=int(scale), marker=marker)
    name = (info or {}).get("method") or method
    if name is None:
        raise ValueError(f"cannot tell which method checkpoint {checkpoint} holds; pass --method")
    return model.to(device).eval(), str(name).lower()


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
    overwrite: bool = False,
    alignment: str = "paper",
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
    overwrite : bool
        Replace an evaluation already in `out_dir` (refused otherwise, before any work).
    alignment : ``"paper"`` (the benchmark's rule) or ``"subpixel"`` (`srcaco2.trainers.alignment`)

    Raises
    ------
    FileExistsError
        `out_dir` already holds an evaluation and `overwrite` is False.
    FileNotFoundError
        The store or the checkpoint does not exist.
    ValueError
        Bad split / marker / scale, neither or both of checkpoint and bicubic, or a checkpoint of
        another method / scale / marker; `NonFiniteOutputError` when the network outputs NaN / inf.
    """
    check_store_args(store, split, marker, scale)
    from srcaco2.trainers.alignment import make_aligner

    aligner = make_aligner(str(store), split=split, marker=marker, scale=int(scale), alignment=alignment)
    if out_dir is not None and not overwrite:
        held = [n for n in ("summary.json", "windows.csv") if (Path(out_dir) / n).exists()]
        if held:
            raise FileExistsError(
                f"{out_dir} already holds an evaluation ({', '.join(held)}); choose another --out or pass "
                "--overwrite"
            )
    if checkpoint is None:
        method = check_weight_free_method(method)
    elif method is not None and str(method).lower() == "bicubic":
        raise ValueError("--checkpoint and --method bicubic exclude each other")
    from srcaco2.trainers._ddp import resolve_device

    dev = resolve_device(device)
    if checkpoint is None:
        model: Any = "bicubic"
        name = "bicubic"
    else:
        model, name = load_eval_model(checkpoint, method=method, scale=int(scale), marker=marker, device=dev)
    from srcaco2.trainers.decoded_windows import decode_windows

    windows = decode_windows(
        store, split=split, marker=marker, scale=int(scale), batch_size=batch_size, max_windows=max_windows
    )
    result = evaluate_decoded(
        model, windows, method=name, checkpoint=checkpoint, device=dev,
        pixel_size_um=hr_pixel_size_um(store), progress=progress, aligner=aligner,
    )  # fmt: skip
    if out_dir is not None:
        write_eval(out_dir, result)
    return result


def evaluate_decoded(
    model: Any,
    windows: Any,
    *,
    method: str,
    checkpoint: str | Path | None,
    device: Any,
    pixel_size_um: float | None,
    progress: Callable[[int, int], None] | None = None,
    aligner: Any = None,
) -> EvalResult:
    """Evaluate a loaded model (or ``"bicubic"``) on decoded windows as `srtrain eval` does.

    The one scoring path of `evaluate` and `srcaco2.trainers.eval_runs`: bf16 autocast on CUDA, torch
    seeded per batch, FRC columns, NaN / inf outputs refused (`NonFiniteOutputError`).

    Returns
    -------
    EvalResult
        ``meta``: store, split, marker, scale, method, checkpoint (str or None), n_windows (+ `aligner`'s).
    """
    import torch

    dev = torch.device(device)
    rows = evaluate_model(
        model, windows, windows.scale, device=dev, amp=dev.type == "cuda", progress=progress,
        frc=True, pixel_size_um=pixel_size_um, check_finite=True, aligner=aligner,
    )  # fmt: skip
    meta: dict[str, Any] = {
        "store": windows.store, "split": windows.split, "marker": windows.marker, "scale": windows.scale,
        "method": method, "checkpoint": None if checkpoint is None else str(checkpoint),
        "n_windows": len(rows), **(aligner.meta if aligner is not None else {}),
    }  # fmt: skip
    return EvalResult(rows=rows, summary=summarize(rows), meta=meta)


def _csv_value(v: Any) -> Any:
    return "" if v is None else v


def write_eval(out_dir: str | Path, result: EvalResult) -> Path:
    """Write ``windows.csv`` (one row per window) and ``summary.json`` (meta + means) to `out_dir`.

    Each file is written atomically, ``summary.json`` last: a directory whose ``summary.json``
    exists holds a complete evaluation (an interrupted write leaves the previous files or none).
    """
    out = Path(out_dir)
    out.mkdir(parents=True, exist_ok=True)
    buf = io.StringIO()
    w = csv.DictWriter(buf, fieldnames=list(ROW_FIELDS), extrasaction="ignore")
    w.writeheader()
    w.writerows({k: _csv_value(v) for k, v in r.items()} for r in result.rows)
    write_text_atomic(out / "windows.csv", buf.getvalue())
    payload = dict(result.meta)
    payload["metrics"] = result.summary
    write_text_atomic(out / "summary.json", json.dumps(payload, indent=2))
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
    from srcaco2.trainers.metrics import METRIC_NAMES

    metrics = data["metrics"]
    for name in METRIC_NAMES:
        v = metrics.get(name) if isinstance(metrics, dict) else None
        if isinstance(v, bool) or not isinstance(v, (int, float)) or not math.isfinite(v):
            raise ValueError(
                f"{p}: metrics.{name} is {v!r}, not a finite number (an evaluation never writes that: the "
                "file was edited or damaged); rerun `srtrain eval` into its folder with --overwrite"
            )
    return data
