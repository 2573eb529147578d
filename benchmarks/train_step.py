"""Training-step time and peak memory per method: the original's way vs this toolkit's fast path.

It times `srtrain fit`'s own step, `srcaco2.trainers.engine.step.train_step` (forward, loss
``MSE − 5·SSIM(19, same)``, backward, SGD Nesterov step; no host read inside), in two variants:

* ``baseline``: fp32, eager, NCHW, the SSIM as 5 dense depthwise convolutions
  (`srcaco2.kernels.ssim.ssim_5conv`, the original's formulation);
* ``fast``: the training loss exactly as `fit` builds it (`SRLoss` defaults: the fused Triton
  MSE − SSIM kernel of `srcaco2.kernels.fused_loss` on CUDA), bf16 autocast (CUDA), channels-last,
  and ``torch.compile`` with ``--compile``.

On a CUDA machine the default is the benchmark's batch (8 crops of 128²) and full networks. On a
CPU it runs a REDUCED version (batch 2 of 64² crops, a few methods, fewer steps) and says so in the
table and the JSON: CPU numbers only show that the script works, not what a GPU gains.

``step_ms`` is the median of single steps, each followed by a device synchronisation (batch copy
from pinned memory included); ``pipelined_step_ms`` the mean over `steps` steps run back to back
with one read at the end, as `fit` runs between its reads (``train.sync_every``).

Run: ``python -m srcaco2.benchmarks.train_step [--methods vdsr,swinir] [--scale 4] [--steps 10] [--compile]``;
JSON goes to ``benchmarks/results/train_step_<device>.json``.
"""

from __future__ import annotations

import argparse
import json
import os
import platform
import statistics
import sys
import time
from pathlib import Path

import torch

from srcaco2.trainers.engine.step import StepContext, batch_to_device, train_step

CPU_METHODS = ("srcnn", "vdsr", "dfcan", "mslapsrn")
"""The reduced CPU run's methods (small and quick); on CUDA every registered network is timed."""


def _cuda_methods() -> list[str]:
    from srcaco2.trainers.models.registry import model_names

    return [m for m in model_names() if m != "bicubic"]  # every network of the registry


def bench_one(method: str, variant: str, *, scale: int, batch: int, h_size: int, steps: int, warmup: int,
              device: torch.device, compile_model: bool) -> dict:  # fmt: skip
    """Median step time (ms) and peak memory (MiB, CUDA only) of one method and variant."""
    from srcaco2.kernels.ssim import ssim_5conv
    from srcaco2.trainers.config import LossConfig
    from srcaco2.trainers.losses import SRLoss
    from srcaco2.trainers.models import build_model

    torch.manual_seed(0)
    fast = variant == "fast"
    model = build_model(method, scale).to(device).train()
    channels_last = fast and device.type == "cuda"
    if channels_last:
        model = model.to(memory_format=torch.channels_last)
    if fast and compile_model:
        model = torch.compile(model)
    # fast: fit's own loss (fused MSE - SSIM on CUDA); baseline: the original's 5-conv SSIM
    criterion = SRLoss(LossConfig()) if fast else SRLoss(LossConfig(), ssim_fn=ssim_5conv)
    opt = torch.optim.SGD(model.parameters(), lr=1e-4, momentum=0.9, nesterov=True)
    ctx = StepContext(net=model, model=model, criterion=criterion, optimizer=opt, device=device,
                      amp=fast and device.type == "cuda", channels_last=channels_last)  # fmt: skip
    g = torch.Generator(device="cpu").manual_seed(1)
    hr = torch.rand(batch, 1, h_size, h_size, generator=g)
    cpu_batch = {"hr": hr, "lr": torch.nn.functional.avg_pool2d(hr, scale)}
    if device.type == "cuda":  # as the loader delivers them: page-locked, copied without blocking
        cpu_batch = {k: v.pin_memory() for k, v in cpu_batch.items()}
    times = []
    if device.type == "cuda":
        torch.cuda.synchronize()
        torch.cuda.reset_peak_memory_stats()
    for i in range(warmup + steps):
        t0 = time.perf_counter()
        lr, hr_dev = batch_to_device(cpu_batch, device, channels_last=channels_last)
        train_step(ctx, lr, hr_dev)
        if device.type == "cuda":
            torch.cuda.synchronize()
        if i >= warmup:
            times.append(1e3 * (time.perf_counter() - t0))
    t0 = time.perf_counter()  # as fit runs: no wait between steps, one read at the end
    for _ in range(steps):
        lr, hr_dev = batch_to_device(cpu_batch, device, channels_last=channels_last)
        out = train_step(ctx, lr, hr_dev)
    out.loss.item()
    pipelined = 1e3 * (time.perf_counter() - t0) / steps
    peak = torch.cuda.max_memory_allocated() / 2**20 if device.type == "cuda" else None
    return {"method": method, "variant": variant, "step_ms": statistics.median(times),
            "pipelined_step_ms": pipelined, "peak_mib": peak,
            "params": sum(p.numel() for p in model.parameters())}  # fmt: skip


def main(argv: list[str] | None = None) -> list[dict]:
    ap = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    ap.add_argument("--methods", help="comma-separated registry names")
    ap.add_argument("--scale", type=int, default=4)
    ap.add_argument("--batch", type=int)
    ap.add_argument("--h-size", type=int)
    ap.add_argument("--steps", type=int)
    ap.add_argument("--warmup", type=int, default=2)
    ap.add_argument("--compile", action="store_true", help="torch.compile the model in the fast variant")
    ap.add_argument("--out", default="benchmarks/results")
    args = ap.parse_args(argv)
    device = torch.device("cuda" if torch.cuda.is_available() else "cpu")
    reduced = device.type == "cpu"
    methods = args.methods.split(",") if args.methods else (list(CPU_METHODS) if reduced else _cuda_methods())
    batch = args.batch or (2 if reduced else 8)
    h_size = args.h_size or (64 if reduced else 128)
    steps = args.steps or (3 if reduced else 20)
    if reduced:
        print(f"NOTE: no CUDA device: REDUCED CPU run (batch {batch}, {h_size}² crops, {steps} steps, "
              f"methods {','.join(methods)}); bf16, Triton SSIM, channels-last: CUDA only.")  # fmt: skip
    rows = []
    for m in methods:
        for variant in ("baseline", "fast"):
            try:
                r = bench_one(m, variant, scale=args.scale, batch=batch, h_size=h_size, steps=steps,
                              warmup=args.warmup, device=device, compile_model=args.compile)  # fmt: skip
            except Exception as exc:  # a method that cannot run here is reported, not fatal
                r = {"method": m, "variant": variant, "error": f"{type(exc).__name__}: {exc}"}
            rows.append(r)
            peak = "-" if r.get("peak_mib") is None else f"{r['peak_mib']:.0f}"
            ms = f"{r['step_ms']:.1f}" if "step_ms" in r else r["error"][:60]
            pipe = f"{r['pipelined_step_ms']:.1f}" if "pipelined_step_ms" in r else "-"
            print(f"{m:10s} {variant:9s} step {ms:>10} ms  pipelined {pipe:>8} ms  peak {peak:>6} MiB")
    out = Path(args.out)
    out.mkdir(parents=True, exist_ok=True)
    path = out / f"train_step_{device.type}.json"
    name = platform.processor() or "cpu"
    if device.type == "cuda":
        name = torch.cuda.get_device_name()
    meta = {"device": name, "torch": torch.__version__, "reduced": reduced, "scale": args.scale,
            "batch": batch, "h_size": h_size, "steps": steps, "compile": args.compile,
            "step_fn": "srcaco2.trainers.engine.step.train_step", "cpu_count": os.cpu_count(),
            "load_avg_1min_at_end": os.getloadavg()[0], "command": "python -m srcaco2.benchmarks.train_step "
            + " ".join(argv if argv is not None else sys.argv[1:])}  # fmt: skip
    path.write_text(json.dumps({"meta": meta, "results": rows}, indent=2))
    print(f"-> {path}")
    return rows


if __name__ == "__main__":
    main()
