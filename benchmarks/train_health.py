"""Training health: does every network of the registry train, full size, under each recipe?

For each network (the benchmark's architecture, no width reduction) at ×4 — and a subset at ×2 and
×8 — on a realistic synthetic store (`srcaco2.srdata.synth`, registered like the real data), it
runs `srcaco2.trainers.fit.fit` with the ``default`` recipe for a fixed CPU budget (small crops,
a step count from a measured probe step, at least `MIN_STEPS`) and records:

* the loss curve, whether the run diverged (the fit's divergence guard: non-finite loss, output
  MSE above ``train.explode_mse`` or a gradient-norm explosion) and at which step;
* whether the loss falls (mean of the last fifth of the steps below the mean of the first fifth);
* validation ROI-PSNR on the store's first val windows at the start (the initial weights) and at
  the end, beside bicubic's on the same windows;
* the time per step.

The same networks then run the first steps of the ``paper`` recipe (the benchmark's release:
SGD Nesterov lr 0.01, no clipping); a step is *diverged* when its loss is non-finite (the batch is
skipped, as the original code does) or its output MSE exceeds ``train.explode_mse``.

Budgets are CPU-sized (a few minutes a network on 2 cores; `--budget-s`); on a GPU pass larger
crops and budgets. JSON goes to ``benchmarks/results/train_health_<device>.json`` and a plot of the
loss curves to ``train_health_<device>.png``.

Run: ``python -m srcaco2.benchmarks.train_health [--methods vdsr,swinir] [--budget-s 180]``.
"""

from __future__ import annotations

import argparse
import dataclasses
import json
import logging
import math
import os
import platform
import statistics
import time
from collections.abc import Sequence
from pathlib import Path
from typing import Any

log = logging.getLogger(__name__)

MIN_STEPS = 12
"""Fewest default-recipe steps a network gets, whatever its step time."""
MAX_STEPS = 400
"""Most default-recipe steps a network gets."""
SUBSET = ("vdsr", "edsr_liif", "swinir", "dfcan", "mslapsrn")
"""Networks also run at ×2 and ×8 (pre-upsampling, post-upsampling CNN and transformer, FFT,
progressive)."""
RESIDUAL = ("vdsr", "drrn", "memnet")
"""Pre-upsampling networks that add their output to the bicubic input (global residual): with the
post-upsampling family, the networks the goal "at least at bicubic's level" applies to."""
RESULTS = Path(__file__).resolve().parent / "results"


@dataclasses.dataclass(frozen=True)
class HealthSettings:
    """How each network is trained.

    Attributes
    ----------
    h_size, batch_size : int
        HR crop side (px; multiple of 8) and crops per step.
    budget_s : float
        Training time budget per network and scale (s); steps = budget / probe step time.
    paper_steps : int
        Steps of the paper recipe per network.
    val_windows : int
        Validation windows (whole 512² windows of the val split).
    overrides : tuple of str
        More ``--set`` overrides for both recipes (e.g. tiny widths in tests).
    seed : int
    """

    h_size: int = 64
    batch_size: int = 4
    budget_s: float = 150.0
    paper_steps: int = 10
    val_windows: int = 2
    overrides: tuple[str, ...] = ()
    seed: int = 0


def make_store(work: Path, *, tiles: int = 6, hr_size: int = 1536, seed: int = 0) -> Path:
    """A registered synthetic store in `work` (reused when already built)."""
    from srcaco2.srdata.build import BuildConfig, build_store
    from srcaco2.srdata.synth import SynthParams, write_synth

    store = work / "store.zarr"
    if (store / "zarr.json").exists():
        return store
    raw = work / "raw"
    write_synth(raw, n_tiles=tiles, params=SynthParams(hr_size=hr_size, seed=seed))
    build_store(str(raw), str(store), BuildConfig(register_markers=("CELL2",)))
    return store


def _config(
    method: str, scale: int, recipe: str, store: Path, s: HealthSettings, extra: Sequence[str]
) -> Any:
    from srcaco2.trainers.config import apply_overrides
    from srcaco2.trainers.recipes import recipe_config

    cfg = recipe_config(method, scale, "CELL2", recipe=recipe, store=str(store))
    return apply_overrides(
        cfg,
        [
            f"data.h_size={s.h_size}",
            f"data.batch_size={s.batch_size}",
            "data.loader.samples_per_epoch=100000",
            f"eval.val_windows={s.val_windows}",
            "eval.every=1000000",
            "train.tensorboard=false",
            "train.sync_every=1",
            f"train.seed={s.seed}",
            *s.overrides,
            *extra,
        ],
    )


def probe_step_s(method: str, scale: int, s: HealthSettings) -> float:
    """Seconds of one training step (forward, loss, backward, Adam) on random crops: the best of 2 after
    a warm-up step."""
    import torch

    from srcaco2.trainers.config import LossConfig, apply_overrides
    from srcaco2.trainers.losses import SRLoss
    from srcaco2.trainers.models import build_model
    from srcaco2.trainers.recipes import recipe_config

    overrides = apply_overrides(recipe_config(method, scale, "CELL2"), list(s.overrides)).model.overrides
    torch.manual_seed(0)
    net = build_model(method, scale, **overrides).train()
    opt = torch.optim.Adam(net.parameters(), 1e-5)
    crit = SRLoss(LossConfig())
    hr = torch.rand(s.batch_size, 1, s.h_size, s.h_size) * 0.2
    lr = torch.nn.functional.avg_pool2d(hr, scale)
    times = []
    for _ in range(3):
        t0 = time.perf_counter()
        loss, _ = crit(net(lr), hr)
        opt.zero_grad()
        loss.backward()
        opt.step()
        times.append(time.perf_counter() - t0)
    return min(times[1:])


def initial_scores(cfg: Any) -> tuple[dict[str, float], dict[str, float]]:
    """Validation means of the initial weights (built as `fit` builds them) and of bicubic."""
    import torch

    from srcaco2.trainers.engine.validation import make_val_loader
    from srcaco2.trainers.evaluate import evaluate_model
    from srcaco2.trainers.metrics import mean_metrics
    from srcaco2.trainers.models import build_model

    torch.manual_seed(cfg.train.seed)  # as fit: seed, then build
    net = build_model(cfg.model.method, cfg.data.scale, in_channels=1, **cfg.model.overrides)
    loader = make_val_loader(cfg, pin_memory=False)
    try:
        start = mean_metrics(evaluate_model(net, loader, cfg.data.scale))
        bicubic = mean_metrics(evaluate_model("bicubic", loader, cfg.data.scale))
    finally:
        loader.close()
    return start, bicubic


def _falls(losses: Sequence[float]) -> bool:
    finite = [v for v in losses if math.isfinite(v)]
    if len(finite) < 4 or len(finite) < len(losses):
        return False
    k = max(1, len(finite) // 5)
    return statistics.fmean(finite[-k:]) < statistics.fmean(finite[:k])


def run_default(method: str, scale: int, store: Path, work: Path, s: HealthSettings) -> dict[str, Any]:
    """One network under the default recipe (see the module docstring)."""
    from srcaco2.trainers.fit import TrainingDivergedError, fit

    probe = probe_step_s(method, scale, s)
    steps = int(min(MAX_STEPS, max(MIN_STEPS, s.budget_s // max(probe, 1e-6))))
    cfg = _config(method, scale, "default", store, s, [f"train.max_steps={steps}"])
    start, bicubic = initial_scores(cfg)
    rows: list[dict[str, Any]] = []
    end: dict[str, float] | None = None

    def callback(event: str, info: dict[str, Any]) -> None:
        nonlocal end
        if event == "step":
            rows.append(info)
        elif event == "val":
            end = info["metrics"]

    t0 = time.perf_counter()
    diverged_at, message = None, None
    try:
        fit(cfg, work / f"{method}_x{scale}_default", force=True, callback=callback)
    except TrainingDivergedError as exc:
        diverged_at, message = (rows[-1]["step"] + 1 if rows else 1), str(exc)
    wall = time.perf_counter() - t0
    losses = [r["loss"] for r in rows]
    step_times = [r["step_time_s"] for r in rows[1:]] or [float("nan")]
    out = {
        "method": method,
        "scale": scale,
        "recipe": "default",
        "steps": len(rows),
        "planned_steps": steps,
        "budget_s": s.budget_s,
        "probe_step_s": round(probe, 4),
        "step_s": round(statistics.median(step_times), 4),
        "wall_s": round(wall, 1),
        "diverged": diverged_at is not None,
        "diverged_at": diverged_at,
        "message": message,
        "loss_first": losses[0] if losses else None,
        "loss_last": losses[-1] if losses else None,
        "loss_falls": _falls(losses),
        "losses": [round(v, 5) for v in losses],
        "grad_norms": [round(r["grad_norm"], 4) for r in rows],
        "val_start_roi_psnr": start["roi_psnr"],
        "val_end_roi_psnr": None if end is None else end["roi_psnr"],
        "val_start_psnr": start["psnr"],
        "val_end_psnr": None if end is None else end["psnr"],
        "bicubic_roi_psnr": bicubic["roi_psnr"],
        "bicubic_psnr": bicubic["psnr"],
    }
    out["at_bicubic"] = end is not None and end["roi_psnr"] >= bicubic["roi_psnr"]
    return out


def run_paper(method: str, scale: int, store: Path, work: Path, s: HealthSettings) -> dict[str, Any]:
    """The first `HealthSettings.paper_steps` steps of the paper recipe (no validation)."""
    from srcaco2.trainers.fit import TrainingDivergedError, fit

    cfg = _config(method, scale, "paper", store, s, [f"train.max_steps={s.paper_steps}"])
    rows: list[dict[str, Any]] = []
    stopped = None
    logging.getLogger("srcaco2.trainers").setLevel(logging.ERROR)  # its warnings are the point here
    try:
        fit(
            cfg,
            work / f"{method}_x{scale}_paper",
            force=True,
            callback=lambda e, i: rows.append(i) if e == "step" else None,
        )
    except TrainingDivergedError as exc:
        stopped = str(exc)
    finally:
        bad = diverged_steps(rows, cfg.train.explode_mse)  # the guard's warnings stay silenced too
        logging.getLogger("srcaco2.trainers").setLevel(logging.NOTSET)
    return {
        "method": method,
        "scale": scale,
        "recipe": "paper",
        "steps": len(rows),
        "diverged": bool(bad) or stopped is not None,
        "diverged_at": bad[0] if bad else (len(rows) + 1 if stopped else None),
        "stopped": stopped,
        "max_mse": max((r["mse"] for r in rows if math.isfinite(r["mse"])), default=None),
        "losses": [r["loss"] if math.isfinite(r["loss"]) else str(r["loss"]) for r in rows],
        "mses": [r["mse"] if math.isfinite(r["mse"]) else str(r["mse"]) for r in rows],
    }


def diverged_steps(rows: Sequence[dict[str, Any]], explode_mse: float) -> list[int]:
    """Steps the fit's divergence guard flags (`srcaco2.trainers.engine.guard`, the same rule): a
    skipped (non-finite) batch or an explosion (output MSE above `explode_mse` and 10× the run's
    lowest, or a gradient-norm explosion)."""
    from srcaco2.trainers.engine.guard import DivergenceGuard

    guard = DivergenceGuard("report", explode_mse, max_skipped=10**9)
    out = []
    for r in rows:
        if r["skipped"] or not math.isfinite(r["loss"]):
            out.append(r["step"])
            continue
        seen = guard.explosions
        guard.check(r, None, None)  # the guard's own rule, as the run applied it
        if guard.explosions > seen:
            out.append(r["step"])
    return out


def plot(results: Sequence[dict[str, Any]], path: Path) -> Path:
    """Loss curves of the default-recipe runs, one small panel per (network, scale), as PNG."""
    import numpy as np
    from PIL import Image, ImageDraw

    from srcaco2.trainers.report import line_plot

    runs = [r for r in results if r["recipe"] == "default" and r["losses"]]
    cols = 4
    rows = max(1, math.ceil(len(runs) / cols))
    w, h = 300, 200
    img = Image.new("RGB", (cols * w, rows * h), (255, 255, 255))
    draw = ImageDraw.Draw(img)
    for i, r in enumerate(runs):
        left, top = (i % cols) * w, (i // cols) * h
        y = np.asarray(r["losses"], np.float64)
        x = np.arange(1, len(y) + 1, dtype=np.float64)
        verdict = (
            "DIVERGED" if r["diverged"] else ("at/above bicubic" if r["at_bicubic"] else "below bicubic")
        )
        line_plot(draw, (left, top, left + w, top + h), [(x, y, (20, 20, 160))],
                  title=f"{r['method']} x{r['scale']}: {verdict}")  # fmt: skip
    path.parent.mkdir(parents=True, exist_ok=True)
    img.save(path)
    return path


def markdown(results: Sequence[dict[str, Any]]) -> str:
    """The README's tables: default-recipe runs (steps, divergence, loss, ROI-PSNR start / end /
    bicubic, s/step) and the paper recipe's first steps."""
    rows = [
        "| network | scale | steps | diverged | loss first → last | val ROI-PSNR start → end (bicubic) "
        "| s / step |",
        "|---|---:|---:|---|---|---|---:|",
    ]
    for r in (r for r in results if r["recipe"] == "default"):
        end = "n/a" if r["val_end_roi_psnr"] is None else f"{r['val_end_roi_psnr']:.2f}"
        mark = " ✓" if r["at_bicubic"] else ""
        div = f"yes (step {r['diverged_at']})" if r["diverged"] else "no"
        rows.append(
            f"| {r['method']} | ×{r['scale']} | {r['steps']} | {div} | {r['loss_first']:.3f} → "
            f"{r['loss_last']:.3f} | {r['val_start_roi_psnr']:.2f} → {end}{mark} "
            f"({r['bicubic_roi_psnr']:.2f}) | {r['step_s']:.2f} |"
        )
    paper = [r for r in results if r["recipe"] == "paper"]
    if paper:
        rows += [
            "",
            "| network (paper recipe, ×4) | steps run | diverged | max output MSE |",
            "|---|---:|---|---:|",
        ]
        for r in paper:
            div = f"**yes** (step {r['diverged_at']})" if r["diverged"] else "no"
            rows.append(f"| {r['method']} | {r['steps']} | {div} | {r['max_mse']:.3g} |")
    return "\n".join(rows) + "\n"


def summarise(results: Sequence[dict[str, Any]]) -> dict[str, Any]:
    """Counts over the default and paper runs (the benchmark's goals)."""
    from srcaco2.trainers.models.registry import model_info

    default = [r for r in results if r["recipe"] == "default"]
    paper = [r for r in results if r["recipe"] == "paper"]
    residual_or_post = [
        r for r in default if r["method"] in RESIDUAL or model_info(r["method"]).family == "post-upsampling"
    ]
    return {
        "default_runs": len(default),
        "default_diverged": sum(r["diverged"] for r in default),
        "default_loss_falls": sum(r["loss_falls"] for r in default),
        "default_at_bicubic": sum(r["at_bicubic"] for r in default),
        "default_below_bicubic": [f"{r['method']} x{r['scale']}" for r in default if not r["at_bicubic"]],
        "residual_or_post_at_bicubic": (
            f"{sum(r['at_bicubic'] for r in residual_or_post)}/{len(residual_or_post)}"
        ),
        "paper_runs": len(paper),
        "paper_diverged": [
            f"{r['method']} x{r['scale']} (step {r['diverged_at']})" for r in paper if r["diverged"]
        ],
    }


def main(argv: Sequence[str] | None = None) -> dict[str, Any]:
    import torch

    from srcaco2.trainers.models.registry import model_info, model_names

    ap = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    ap.add_argument("--methods", help="comma list (default: every network)")
    ap.add_argument("--subset", default=",".join(SUBSET), help="networks also run at x2 and x8 ('' = none)")
    ap.add_argument("--budget-s", type=float, default=HealthSettings.budget_s)
    ap.add_argument("--paper-steps", type=int, default=HealthSettings.paper_steps)
    ap.add_argument("--work", default="runs/train_health", help="store and run folders")
    ap.add_argument("--threads", type=int, default=None, help="torch threads (default: torch's)")
    ap.add_argument(
        "--recipes", default="default,paper",
        help="which recipes to run; results of the others already in --out are kept",
    )  # fmt: skip
    ap.add_argument(
        "--out", default=None, help="JSON path (default benchmarks/results/train_health_<device>.json)"
    )
    args = ap.parse_args(argv)
    logging.basicConfig(level=logging.WARNING, format="%(levelname)s %(name)s: %(message)s")
    if args.threads:
        torch.set_num_threads(args.threads)
    methods = args.methods.split(",") if args.methods else [m for m in model_names() if m != "bicubic"]
    subset = [m for m in args.subset.split(",") if m and m in methods]
    s = HealthSettings(budget_s=args.budget_s, paper_steps=args.paper_steps)
    work = Path(args.work)
    work.mkdir(parents=True, exist_ok=True)
    store = make_store(work)
    device = "cuda" if torch.cuda.is_available() else "cpu"
    out_path = Path(args.out) if args.out else RESULTS / f"train_health_{device}.json"
    plan = [(m, 4) for m in methods] + [
        (m, sc) for m in subset for sc in (2, 8) if sc in model_info(m).scales
    ]
    recipes = [r for r in args.recipes.split(",") if r]
    results: list[dict[str, Any]] = []
    if out_path.exists() and set(recipes) != {"default", "paper"}:  # keep the other recipe's runs
        results = [r for r in json.loads(out_path.read_text())["results"] if r["recipe"] not in recipes]

    def save() -> None:
        payload = {
            "benchmark": "train_health",
            "device": device,
            "machine": f"{platform.processor() or platform.machine()}, {os.cpu_count()} cores, torch threads "
            f"{torch.get_num_threads()}",
            "torch": torch.__version__,
            "settings": dataclasses.asdict(s),
            "store": "synthetic: 6 tiles of 1536² (srdata synth), CELL2 registered (TV-L1)",
            "summary": summarise(results),
            "results": results,
        }
        out_path.parent.mkdir(parents=True, exist_ok=True)
        out_path.write_text(json.dumps(payload, indent=1))
        plot(results, out_path.with_suffix(".png"))

    for method, scale in plan if "default" in recipes else ():
        r = run_default(method, scale, store, work, s)
        results.append(r)
        log.warning("%s x%d default: %d steps, diverged %s, loss %.3f -> %.3f, val ROI PSNR %.2f -> %s "
                    "(bicubic %.2f)",
                    method, scale, r["steps"], r["diverged"], r["loss_first"] or float("nan"),
                    r["loss_last"] or float("nan"), r["val_start_roi_psnr"],
                    "n/a" if r["val_end_roi_psnr"] is None else f"{r['val_end_roi_psnr']:.2f}",
                    r["bicubic_roi_psnr"])  # fmt: skip
        save()
    if "paper" in recipes:
        for method in methods:
            r = run_paper(method, 4, store, work, s)
            results.append(r)
            log.warning("%s x4 paper: diverged %s at %s", method, r["diverged"], r["diverged_at"])
            save()
    save()
    return summarise(results)


if __name__ == "__main__":
    print(json.dumps(main(), indent=1))
