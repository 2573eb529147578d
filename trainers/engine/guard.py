"""The divergence guard: every step's loss, output MSE and gradient norm, read as they are flushed.

What counts as diverged (each with the step and the batch's windows in the message):

* a non-finite loss;
* an **explosion**: the output's MSE above ``train.explode_mse`` (images live in [0, 1], so an MSE
  of 1 means the output left the data range by a whole dynamic range: VDSR under the paper
  recipe reaches 5·10⁴ at step 2) and above `MSE_GROWTH` × the lowest MSE of the run's earlier
  steps (a freshly initialised network may start out of range; growing from there is the
  explosion), or a non-finite gradient norm with a finite loss, or a
  gradient norm above `GRAD_FACTOR` × the median of the previous `GRAD_WINDOW` steps' norms (once
  `GRAD_MIN_HISTORY` are known).

``train.divergence=stop`` (the default recipe) raises `TrainingDivergedError` at the first of
these, naming the keys that help (`HELP`). ``report`` (the paper recipe: the original code) logs
explosions as warnings, counts the batches the step skipped for a non-finite loss, and raises only
after ``train.max_skipped`` skipped batches in a row (the original trains on with frozen weights).
Either way `tainted` says whether the weights being validated went through a divergence since the
last validation: such a score is never "best".
"""

from __future__ import annotations

import collections
import logging
import math
import statistics
from collections.abc import Mapping
from typing import Any

__all__ = [
    "TrainingDivergedError",
    "DivergenceGuard",
    "GRAD_FACTOR",
    "GRAD_WINDOW",
    "HELP",
    "describe_windows",
]

log = logging.getLogger(__name__)

MSE_GROWTH = 10.0
"""An output MSE above ``train.explode_mse`` must also be this many times the run's lowest so far."""
GRAD_FACTOR = 1000.0
"""A gradient norm this many times the recent median is an explosion."""
GRAD_WINDOW = 100
"""Steps in the running median of gradient norms."""
GRAD_MIN_HISTORY = 10
"""Norms needed before the relative rule applies."""
HELP = (
    "lower optim.lr (e.g. --set optim.lr=1e-4), set optim.grad_clip (e.g. 1.0) or lengthen the warm-up "
    "(optim.warmup_steps); the default recipe (no --recipe) does all three"
)
"""The recipe keys that bring a diverging run back."""


class TrainingDivergedError(FloatingPointError):
    """The loss, the output or the weights blew up or became NaN / infinite; the message names the
    step, the batch, the last good (finite) checkpoint and the recipe keys that help."""


def describe_windows(windows: Mapping[str, Any] | None) -> str:
    """``(tile, y0, x0), ...`` of a batch's provenance columns (host tensors or arrays of shape (B,))."""
    if not windows:
        return "(unknown)"
    return ", ".join(
        f"({int(t)}, {int(y)}, {int(x)})"
        for t, y, x in zip(windows["tile"], windows["y0"], windows["x0"], strict=False)
    )


class DivergenceGuard:
    """Checks the flushed steps of one run (see the module docstring).

    Parameters
    ----------
    mode : {"stop", "report"}
        ``train.divergence``.
    explode_mse : float
        ``train.explode_mse`` (0 = no MSE rule).
    max_skipped : int
        ``train.max_skipped``.
    """

    def __init__(self, mode: str, explode_mse: float, max_skipped: int) -> None:
        self.mode, self.explode_mse, self.max_skipped = mode, float(explode_mse), int(max_skipped)
        self.norms: collections.deque[float] = collections.deque(maxlen=GRAD_WINDOW)
        self.min_mse = math.inf
        self.skipped_in_a_row = 0
        self.explosions = 0
        self.tainted = False
        """A divergence was seen since the last `validated` call."""
        self.ever_diverged = False
        """A divergence was seen in this run: later checkpoints are not "last good" ones."""

    def validated(self) -> None:
        """A validation scored the current weights; later divergences taint the next one."""
        self.tainted = False

    def explosion(self, row: Mapping[str, Any]) -> str | None:
        """Why this step (finite loss) is an explosion, or None."""
        mse, norm = row.get("mse"), row.get("grad_norm")
        grown = mse is not None and not (mse <= MSE_GROWTH * self.min_mse)  # NaN counts as grown
        if self.explode_mse > 0 and grown and not (mse <= self.explode_mse):
            return f"the output's MSE is {mse:.4g} (> train.explode_mse={self.explode_mse:g}: outside [0, 1])"
        if norm is None:
            return None
        if not math.isfinite(norm):
            return f"the gradient norm is {norm} with a finite loss"
        if len(self.norms) >= GRAD_MIN_HISTORY:
            median = statistics.median(self.norms)
            if median > 0 and norm > GRAD_FACTOR * median:
                return f"the gradient norm is {norm:.4g}, {norm / median:.0f}x the median of the last steps"
        return None

    def check(self, row: Mapping[str, Any], windows: Mapping[str, Any] | None, last_good: Any) -> None:
        """Check one step's values; raise `TrainingDivergedError` when the run must end.

        Parameters
        ----------
        row : the step's ``step, epoch, loss, mse, grad_norm, skipped`` (host floats)
        windows : the batch's provenance (``tile, y0, x0``)
        last_good : the newest finite checkpoint (named in the message), or None
        """
        step, loss = row["step"], row["loss"]
        where = (
            f"at step {step} (epoch {row['epoch']}); batch windows (tile, y0, x0): "
            f"{describe_windows(windows)}; last good checkpoint: {last_good or '(none yet)'}"
        )
        if row.get("skipped"):
            self.skipped_in_a_row += 1
            self.tainted = self.ever_diverged = True
            if self.skipped_in_a_row == 1:
                log.warning(
                    "loss is %s %s: batch skipped without an update, as the original code does", loss, where
                )
            if self.skipped_in_a_row >= self.max_skipped:
                raise TrainingDivergedError(
                    f"{self.skipped_in_a_row} batches in a row had a non-finite loss and were skipped "
                    f"(up to step {step}): the weights are frozen in a diverged state, where the original "
                    f"code would train on without learning; last good checkpoint: "
                    f"{last_good or '(none yet)'}. "
                    f"To train: {HELP}"
                )
            return
        self.skipped_in_a_row = 0
        if not math.isfinite(loss):
            self.tainted = self.ever_diverged = True
            raise TrainingDivergedError(
                f"loss is {loss} {where}. To recover: {HELP}, or resume from the checkpoint"
            )
        why = self.explosion(row)
        norm, mse = row.get("grad_norm"), row.get("mse")
        if norm is not None and math.isfinite(norm):
            self.norms.append(norm)
        if mse is not None and math.isfinite(mse):
            self.min_mse = min(self.min_mse, mse)
        if why is None:
            return
        self.tainted = self.ever_diverged = True
        self.explosions += 1
        if self.mode == "stop":
            raise TrainingDivergedError(f"training diverged {where}: {why}. To recover: {HELP}")
        if self.explosions == 1 or self.explosions % 100 == 0:
            log.warning("training is diverging %s: %s (explosion %d; the paper recipe trains on)",
                        where, why, self.explosions)  # fmt: skip
