"""The two training recipes of `srtrain fit`, and every difference between them (one table).

``paper`` is the SR-CACO-2 benchmark's released training exactly as it ran (docs/protocol.md#recipe),
quirks included: SGD Nesterov at lr 0.01 stepped per iteration, crops off the LR grid, fp32, a
skipped batch on a non-finite loss, validation only every ⌊0.9·epoch⌋ steps, per-step reseeding,
and the stop on a negative or non-finite validation metric. On dark fluorescence crops the
gradient of its ``−5·SSIM`` term is ~10³× the MSE's, and SGD at 0.01 without clipping throws the
pre-upsampling networks out within a few steps (VDSR: loss 5·10⁴ at step 2, then NaN) — in the
original code as well (`PAPER_RECIPE_WARNING`).

``default`` keeps the benchmark's task (data, crops, loss ``MSE − 5·SSIM``, 100 epochs, validation,
selection by ROI PSNR) and trains it the way the field trains SR networks, chosen by measurement
(``benchmarks/train_health.py``, README "Training health"): Adam at 2·10⁻⁴ with a linear warm-up,
cosine decay, global gradient-norm clipping at 1, and a divergence guard that stops the run.

Examples
--------
>>> cfg = recipe_config("vdsr", scale=4, marker="CELL2")
>>> cfg.optim.name, cfg.optim.lr, cfg.loss.ssim_window, cfg.data.h_size
('adam', 0.0002, 19, 128)
>>> recipe_config("vdsr", 4, "CELL2", recipe="paper").optim.lr
0.01
"""

from __future__ import annotations

import dataclasses
import difflib

from srcaco2.trainers.config import ConfigError, DataConfig, ModelConfig, RunConfig, apply_overrides

__all__ = ["RECIPES", "RecipeDifference", "RECIPE_DIFFERENCES", "PAPER_RECIPE_WARNING", "recipe_config"]

RECIPES: tuple[str, ...] = ("default", "paper")
"""Training recipes: ``default`` (trains every network stably) and ``paper`` (the benchmark as it ran)."""


@dataclasses.dataclass(frozen=True)
class RecipeDifference:
    """One field where the ``paper`` recipe differs from the ``default`` one.

    Attributes
    ----------
    key : str
        Dotted config key (as ``--set`` takes it).
    paper, default : str
        The value under each recipe, as ``--set`` text.
    why : str
        What the benchmark did and why the default differs.
    """

    key: str
    paper: str
    default: str
    why: str


_DIVERGES = (
    "on dark fluorescence crops the gradient of -5*SSIM is ~750-1,900x the MSE's; "
    "the paper's SGD at lr 0.01 without clipping throws VDSR out in 2 steps"
)

RECIPE_DIFFERENCES: tuple[RecipeDifference, ...] = (
    RecipeDifference(
        "optim.name",
        "sgd",
        "adam",
        f"{_DIVERGES}; Adam's per-parameter step is bounded by its lr whatever the gradient's scale",
    ),
    RecipeDifference(
        "optim.lr", "0.01", "0.0002", "the field's Adam rate for SR networks (EDSR, SwinIR, BasicSR)"
    ),
    RecipeDifference(
        "optim.scheduler",
        "mysteplr",
        "cosine",
        "cosine decay from the lr to optim.min_lr over the run's steps (BasicSR / traiNNer) instead of "
        "halving every 30 epochs",
    ),
    RecipeDifference(
        "optim.min_lr",
        "0.0001",
        "1e-06",
        "the paper's MyStepLR floor; the default's cosine ends 200x below its lr",
    ),
    RecipeDifference(
        "optim.warmup_steps",
        "0",
        "100",
        "a linear warm-up over the first 100 steps keeps the first Adam updates (whose second-moment "
        "estimate is still one batch) small",
    ),
    RecipeDifference(
        "optim.grad_clip",
        "0.0",
        "1.0",
        "the benchmark does not clip; the default clips the global gradient norm at 1 so that one "
        "bad batch cannot throw the weights out",
    ),
    RecipeDifference(
        "optim.schedule",
        "original",
        "epoch",
        "the benchmark steps MyStepLR after every iteration, so the lr falls from 0.01 to its 1e-4 floor "
        "after 210 iterations and stays there for the other 99.8 % of training; with MyStepLR the "
        "default steps it per epoch, which is what the recipe's numbers describe",
    ),
    RecipeDifference(
        "data.loader.aligned",
        "false",
        "true",
        "the benchmark cuts the LR crop at floor(x0/s) for any HR corner x0, so LR and HR crops are "
        "misaligned by (x0 mod s, y0 mod s) HR px (up to s-1); the default draws corners on the LR grid",
    ),
    RecipeDifference(
        "train.amp",
        "off",
        "auto",
        "the benchmark trains in fp32; the default uses bf16 autocast on CUDA (fp32 on CPU), with SSIM, "
        "the loss sums and DFCAN's FFTs kept in fp32",
    ),
    RecipeDifference(
        "train.divergence",
        "report",
        "stop",
        "the benchmark skips a batch whose loss is non-finite and trains on (a diverged network stays "
        "frozen); the default stops at a non-finite loss, an output MSE above train.explode_mse or a "
        "gradient-norm explosion and names the step, the batch and the keys that help",
    ),
    RecipeDifference(
        "train.reseed",
        "true",
        "false",
        "the benchmark re-seeds every RNG with seed + step before each step; the default seeds once "
        "(the RNG state is saved in last.pt, so a resumed run follows the same trajectory)",
    ),
    RecipeDifference(
        "eval.at_end",
        "false",
        "true",
        "the benchmark validates only every floor(0.9 * iterations per epoch) steps, so the steps after "
        "the last validation never compete for best.pt; the default also validates after the last step",
    ),
    RecipeDifference(
        "eval.abort_on_bad_metric",
        "true",
        "false",
        "the benchmark ends the run (silently, exit status 0) when a validation image scores a negative "
        "or non-finite metric (e.g. SSIM < 0 early in training); paper stops with a clear message, the "
        "default keeps training",
    ),
)
"""Every difference between the two recipes: one home, read by `recipe_config`, ``srtrain fit --help``
and the README."""

PAPER_RECIPE_WARNING = (
    "--recipe paper trains exactly as the released benchmark code (SGD Nesterov lr 0.01, no gradient "
    "clipping, MSE - 5*SSIM): it diverges within a few steps for the pre-upsampling networks (VDSR, "
    "DRRN, MemNet, SRCNN) and can for others, in the original code too (see benchmarks/train_health.py). "
    "For a stable run use the default recipe (no --recipe), or keep the paper's optimiser and add "
    "--set optim.grad_clip=1.0 --set optim.lr=0.001."
)
"""What ``srtrain fit --recipe paper`` says at start."""


def recipe_config(
    method: str, scale: int, marker: str, *, recipe: str = "default", store: str = ""
) -> RunConfig:
    """A training recipe for one (method, scale, marker).

    Both recipes share the benchmark's task (docs/protocol.md#recipe): batch 8 of 128² HR crops, 100
    epochs (one crop per training window per epoch), loss MSE − 5·SSIM(19, zero same padding),
    ROI-biased sampling (threshold 4 on the bicubic-upsampled LR), validation on the first 128 val
    windows of the official fold order every ⌊0.9·iters/epoch⌋ steps, model selection by ROI PSNR
    (a tie is a new best), seed 0. They differ only in `RECIPE_DIFFERENCES`.

    Parameters
    ----------
    method : str
        Registry name (``srtrain methods``).
    scale : {2, 4, 8}
    marker : {"CELL0", "CELL1", "CELL2"}
    recipe : {"default", "paper"}
        ``paper`` reproduces the benchmark's training, quirks included.
    store : str
        Store path (may stay empty in a saved recipe).

    Raises
    ------
    ConfigError
        Unknown recipe, method, scale or marker.
    """
    if recipe not in RECIPES:
        near = difflib.get_close_matches(str(recipe), RECIPES, n=1)
        hint = f" (did you mean {near[0]!r}?)" if near else ""
        raise ConfigError(f"recipe={recipe!r} is not one of {', '.join(RECIPES)}{hint}")
    cfg = RunConfig(
        recipe=recipe,  # type: ignore[arg-type]
        data=DataConfig(store=str(store), marker=marker, scale=int(scale)),
        model=ModelConfig(method=str(method).lower()),
    )
    return apply_overrides(cfg, [f"{d.key}={getattr(d, recipe)}" for d in RECIPE_DIFFERENCES])
