"""Validation during training: the loader and the evaluation copy are built once per run.

`Validator.run` scores the model (or its EMA weights, copied into one evaluation network made
at the start) on the first ``eval.val_windows`` windows of the val split with the paper's metrics
(`srcaco2.trainers.evaluate.evaluate_model`, which keeps the caller's RNG stream untouched), after
the sub-pixel alignment of `srcaco2.trainers.alignment` when ``eval.alignment`` is ``subpixel``. The val
loader is made once, in the main process (no worker processes idle between validations), and
keeps its decoded-chunk cache, so later validations read no chunk again when the windows fit
``data.loader.cache_bytes``.

`Validator.bicubic` scores the bicubic baseline once on the same windows (the reference a
diverging run is compared with). `bad_image_metric` finds the per-image metric that made the
original code abort a run (negative or non-finite).

`better` decides model selection: higher is better except for NRMSE, a tie is a new best
(docs/protocol.md#model-selection), and a NaN / infinite score is never best.
"""

from __future__ import annotations

import copy
import dataclasses
import logging
import math
from typing import TYPE_CHECKING, Any

from srcaco2.trainers.engine.guard import TrainingDivergedError

if TYPE_CHECKING:  # pragma: no cover
    from srcaco2.trainers._state import WeightEMA
    from srcaco2.trainers.config import RunConfig

log = logging.getLogger(__name__)

__all__ = [
    "Validator", "BadValidationMetricError", "bad_image_metric", "better", "make_val_loader",
    "check_official_val_windows",
]  # fmt: skip


class BadValidationMetricError(TrainingDivergedError):
    """A validation image scored a negative or non-finite metric under ``eval.abort_on_bad_metric``."""


def bad_image_metric(rows: list[dict[str, Any]]) -> str | None:
    """The first per-image metric that is negative or non-finite, described, or None.

    Parameters
    ----------
    rows : per-image metric rows (`srcaco2.trainers.evaluate.evaluate_model`), with ``tile``, ``y0``,
        ``x0`` and every name of `srcaco2.trainers.metrics.METRIC_NAMES`
    """
    from srcaco2.trainers.metrics import METRIC_NAMES

    for r in rows:
        for k in METRIC_NAMES:
            v = float(r[k])
            if not math.isfinite(v) or v < 0:
                where = ", ".join(f"{c} {r[c]}" for c in ("tile", "y0", "x0") if c in r)
                return f"window ({where}) has {k} = {v:.4g} ({'negative' if v < 0 else 'non-finite'})"
    return None


def better(metric: str, new: float, best: float | None) -> bool:
    """Whether score `new` of `metric` replaces `best` (None or non-finite: anything finite does).

    Parameters
    ----------
    metric : a metric name (``roi_psnr``, ``nrmse``, ...); lower is better when it contains "nrmse"
    new : the validation score
    best : the best score so far, or None

    Returns
    -------
    bool
        False whenever `new` is NaN or infinite.
    """
    if new is None or not math.isfinite(new):
        return False
    if best is None or not math.isfinite(best):
        return True
    # ">=": a tie is a new best (docs/protocol.md#model-selection)
    return new <= best if "nrmse" in metric else new >= best


def make_val_loader(cfg: RunConfig, *, pin_memory: bool) -> Any:
    """The val split's first ``eval.val_windows`` windows, read in the main process (eval mode)."""
    from srcaco2.srdata.loader import make_loader

    d = cfg.data
    settings = dataclasses.replace(d.loader, num_workers=0, pin_memory=pin_memory)
    return make_loader(
        d.store, split="val", scale=d.scale, marker=d.marker, batch_size=cfg.eval.batch_size,
        h_size=d.h_size, mode="eval", max_windows=cfg.eval.val_windows, settings=settings,
    )  # fmt: skip


def check_official_val_windows(cfg: RunConfig, missing: list[int]) -> None:
    """The benchmark validates on the first ``eval.val_windows`` lines of its official val fold list;
    when the store lacks some of them (its build rejected those windows), the next lines take their
    place. The paper recipe refuses that (naming the lines); the default recipe warns and goes on.

    Raises
    ------
    ValueError
        Under ``recipe="paper"``, with the missing fold lines and how to go on.
    """
    if not missing:
        return
    shown = ", ".join(map(str, missing[:10])) + (", ..." if len(missing) > 10 else "")
    text = (
        f"{cfg.data.store}: the first {cfg.eval.val_windows} official val windows are not all in this "
        f"store: fold line(s) {shown} ({len(missing)}) are missing (rejected by its build), so validation "
        "would take the next lines in their place"
    )
    if cfg.recipe == "paper":
        raise ValueError(
            f"{text}; the paper recipe validates on exactly the official windows: rebuild the store with the "
            "benchmark's acceptance rule (srdata build --split official), or pass --set eval.val_windows=N "
            "with N below the first missing line"
        )
    log.warning("%s (the default recipe goes on with them)", text)


class Validator:
    """Scores the current (or EMA) weights; see the module docstring.

    Parameters
    ----------
    cfg : RunConfig
    model : torch.nn.Module
        The trained network (unwrapped).
    ema : WeightEMA, optional
        When given, validation (and ``best.pt``) use its weights.
    device : torch.device
    amp : bool
        bf16 autocast (CUDA).
    """

    def __init__(self, cfg: RunConfig, model: Any, ema: WeightEMA | None, device: Any, amp: bool) -> None:
        self.cfg, self.model, self.ema, self.device, self.amp = cfg, model, ema, device, amp
        from srcaco2.trainers.alignment import make_aligner

        d = cfg.data  # eval.alignment=subpixel: refused here, before training, if the store lacks the shifts
        self.aligner = make_aligner(
            d.store, split="val", marker=d.marker, scale=d.scale, alignment=cfg.eval.alignment
        )
        self.loader = make_val_loader(cfg, pin_memory=device.type == "cuda")
        check_official_val_windows(cfg, getattr(self.loader.dataset, "missing_fold_lines", []))
        self._eval_copy: Any = None
        self._bicubic: dict[str, float] | None = None

    def eval_model(self) -> Any:
        """The network to score: `model`, or one evaluation copy holding the EMA weights."""
        if self.ema is None:
            return self.model
        if self._eval_copy is None:
            self._eval_copy = copy.deepcopy(self.model)  # no RNG draw, unlike building a new network
        self.ema.copy_to(self._eval_copy)
        return self._eval_copy

    def run(self) -> tuple[Any, dict[str, float], list[dict[str, Any]]]:
        """Score the eval model; returns it, the split means (`srcaco2.trainers.metrics.METRIC_NAMES`) and
        the per-image rows."""
        from srcaco2.trainers.evaluate import evaluate_model
        from srcaco2.trainers.metrics import mean_metrics

        model = self.eval_model()
        rows = evaluate_model(
            model, self.loader, self.cfg.data.scale, device=self.device, amp=self.amp, aligner=self.aligner
        )
        return model, mean_metrics(rows), rows

    def bicubic(self) -> dict[str, float]:
        """The bicubic baseline's split means on the same windows (computed once per run)."""
        if self._bicubic is None:
            from srcaco2.trainers.evaluate import evaluate_model
            from srcaco2.trainers.metrics import mean_metrics

            rows = evaluate_model(
                "bicubic", self.loader, self.cfg.data.scale, device=self.device, amp=False,
                aligner=self.aligner,
            )  # fmt: skip
            self._bicubic = mean_metrics(rows)
        return self._bicubic

    def close(self) -> None:
        """Drop the loader's cache."""
        self.loader.close()
