"""One-shot GPU check of the kernels: correctness at real shapes, then timings (≤ 8 min on one H100/H200).

    bash benchmarks/gpu_check.sh            # or: python -m srcaco2.benchmarks.gpu_check [--quick] [--out DIR]

Nothing is downloaded; ``pytorch_msssim`` is timed only if it is installed. Exits 2 at once without
CUDA, 1 when a correctness check fails (timings still written), 0 otherwise.

1. Correctness (fresh random inputs per check; the caching allocator is filled with NaN first, so an
   output element that a kernel never writes shows up as NaN), 8×1×512², fp32 and bf16:
   SSIM window 19 "same" and window 11 "valid" + mask (values, dx, dy) against the float64 reference on
   the same rounded inputs; the fused loss (loss, mse, ssim, dsr); pixel shuffle r 2/3/4/8 NCHW and
   channels_last bit-exact, and its bias + ReLU + clamp epilogue.
2. Timings (``triton.testing.do_bench`` medians; it flushes L2 before every run):
   SSIM w19 forward + backward: Triton, the benchmark's 5-conv formulation, the separable reference,
   ``torch.compile`` of the reference, pytorch-msssim (if installed); the fused loss against the
   separate MSE + Triton SSIM and the eager / compiled reference; pixel shuffle (r 2, 8×256×128²,
   fp32/bf16, NCHW/channels_last) against eager and compiled torch, as GB/s and % of a device copy.
3. The training step of SwinIR ×8, batch 8, 128² HR: the benchmark's recipe (fp32, eager, 5-conv SSIM)
   against bf16 autocast + the fused Triton loss and shuffle (``srcaco2.trainers.engine.train_step`` when it
   exists, else the same step written here); median ms over 20 steps after 5 warm-up steps.

JSON: ``benchmarks/results/gpu_check_<device>.json`` (device, date, versions, shapes, medians, checks).
"""

from __future__ import annotations

import argparse
import datetime
import json
import os
import platform
import re
import statistics
import sys
import time
import traceback
from collections.abc import Callable
from typing import Any

import torch
import torch.nn.functional as F

RESULTS_DIR = os.path.join(os.path.dirname(__file__), "results")
SSIM_SHAPE = (8, 1, 512, 512)
# what the run uses; --self-test-cpu swaps in tiny shapes on CPU (Triton under TRITON_INTERPRET=1)
CFG: dict[str, Any] = {
    "device": "cuda",
    "ssim": SSIM_SHAPE,
    "shuffle": (8, 256, 128, 128),
    "train": (8, 128),
    "shuffle_check": {2: (8, 256, 128, 128), 3: (8, 576, 64, 64), 4: (8, 1024, 32, 32), 8: (8, 64, 64, 64)},
    "steps": (20, 5),
}
_SELF_TEST = {
    "device": "cpu",
    "ssim": (1, 1, 20, 40),
    "shuffle": (1, 8, 6, 10),
    "train": (1, 64),
    "shuffle_check": {2: (1, 8, 5, 6), 3: (1, 18, 4, 5), 4: (1, 16, 3, 4), 8: (1, 64, 2, 3)},
    "steps": (2, 1),
}
TOL = {torch.float32: {"val": 2e-5, "grad": 2e-4}, torch.bfloat16: {"val": 2e-5, "grad": 3e-2}}


def _poison_allocator() -> None:
    """Fill ~1 GiB of the caching allocator with NaN and free it: later ``torch.empty`` reuse it."""
    if CFG["device"] != "cuda":
        return
    t = torch.full((256 * 2**20,), float("nan"), device="cuda")
    del t


def _sync() -> None:
    if CFG["device"] == "cuda":
        torch.cuda.synchronize()


def _bench(fn: Callable[[], Any]) -> float:
    if CFG["device"] != "cuda":  # --self-test-cpu: one timed call, the numbers mean nothing
        t0 = time.perf_counter()
        fn()
        return 1e3 * (time.perf_counter() - t0)
    from triton.testing import do_bench

    return float(do_bench(fn, warmup=25, rep=100, return_mode="median"))


def _err(got: torch.Tensor, ref: torch.Tensor) -> dict[str, float]:
    got, ref = got.double(), ref.double()
    return {
        "max_abs": float((got - ref).abs().max()),
        "rel_l2": float((got - ref).norm() / ref.norm().clamp_min(1e-30)),
        "ref_max": float(ref.abs().max()),
        "nan": bool(torch.isnan(got).any()),
    }


class Checks:
    """Collects named pass/fail results with their error figures."""

    def __init__(self) -> None:
        self.rows: list[dict[str, Any]] = []

    def add(self, name: str, ok: bool, **info: Any) -> None:
        self.rows.append({"check": name, "ok": bool(ok), **info})
        print(f"  {'ok  ' if ok else 'FAIL'} {name} {json.dumps(info, default=str)[:160]}", flush=True)

    def close(self, name: str, got: torch.Tensor, ref: torch.Tensor, atol: float) -> None:
        e = _err(got, ref)
        self.add(name, not e["nan"] and e["max_abs"] <= atol, atol=atol, **e)

    @property
    def failed(self) -> int:
        return sum(not r["ok"] for r in self.rows)


def _pair(shape, dtype, seed):
    device = CFG["device"]
    g = torch.Generator(device=device).manual_seed(seed)
    y = torch.rand(shape, generator=g, device=device)
    x = y + 0.08 * torch.randn(shape, generator=g, device=device)
    return x.to(dtype), y.to(dtype)


# -------------------------------------------------------------------------------------------- correctness
def check_ssim(c: Checks, dtype: torch.dtype, seed: int) -> None:
    from srcaco2.kernels.ssim import _reference, ssim

    tol = TOL[dtype]
    for window, padding, masked in ((19, "same", False), (11, "valid", True)):
        _poison_allocator()
        x, y = _pair(CFG["ssim"], dtype, seed + window)
        ho, wo = (s - (window - 1 if padding == "valid" else 0) for s in CFG["ssim"][2:])
        mask = (torch.rand(CFG["ssim"][0], 1, ho, wo, device=CFG["device"]) > 0.3) if masked else None
        xg, yg = x.clone().requires_grad_(True), y.clone().requires_grad_(True)
        got = ssim(xg, yg, window=window, padding=padding, mask=mask, reduction="per_image", backend="triton")
        gx, gy = torch.autograd.grad(got.sum(), (xg, yg))
        xr, yr = x.double().requires_grad_(True), y.double().requires_grad_(True)
        smap = _reference(xr, yr, window, 1.5, padding, 1.0)
        if mask is None:
            want = smap.mean(dim=(1, 2, 3))
        else:
            m = mask.double()
            want = (smap * m).sum(dim=(1, 2, 3)) / m.sum(dim=(1, 2, 3))
        rx, ry = torch.autograd.grad(want.sum(), (xr, yr))
        name = f"ssim w{window} {padding}{' mask' if masked else ''} {str(dtype)[6:]}"
        c.close(f"{name} value", got, want.detach(), tol["val"])
        c.close(f"{name} dx", gx, rx, tol["grad"] * float(rx.abs().max()))
        c.close(f"{name} dy", gy, ry, tol["grad"] * float(ry.abs().max()))


def check_loss(c: Checks, dtype: torch.dtype, seed: int) -> None:
    from srcaco2.kernels.fused_loss import mse_ssim_loss

    tol = TOL[dtype]
    _poison_allocator()
    sr, hr = _pair(CFG["ssim"], dtype, seed)
    hr = hr.float()
    srg = sr.clone().requires_grad_(True)
    loss, mse, s = mse_ssim_loss(srg, hr, backend="triton")
    (g,) = torch.autograd.grad(loss, srg)
    srr = sr.double().requires_grad_(True)
    rl, rm, rs = mse_ssim_loss(srr, hr.double(), backend="torch")
    (rg,) = torch.autograd.grad(rl, srr)
    name = f"fused loss w19 {str(dtype)[6:]}"
    c.close(f"{name} loss", loss, rl.detach(), 6 * tol["val"])
    c.close(f"{name} mse", mse, rm.detach(), tol["val"])
    c.close(f"{name} ssim", s, rs.detach(), tol["val"])
    c.close(f"{name} dsr", g, rg, tol["grad"] * float(rg.abs().max()))


def check_shuffle(c: Checks, seed: int) -> None:
    from srcaco2.kernels.pixel_shuffle import pixel_shuffle

    for r, shape in CFG["shuffle_check"].items():
        for dtype in (torch.float32, torch.bfloat16):
            for cl in (False, True):
                _poison_allocator()
                x = torch.randn(
                    shape,
                    generator=torch.Generator(CFG["device"]).manual_seed(seed + r),
                    device=CFG["device"],
                )
                x = x.to(dtype)
                if cl:
                    x = x.to(memory_format=torch.channels_last)
                got = pixel_shuffle(x, r, backend="triton")
                want = F.pixel_shuffle(x, r)
                ok = torch.equal(
                    got.view(torch.int16 if dtype == torch.bfloat16 else torch.int32),
                    want.contiguous(
                        memory_format=torch.channels_last if cl else torch.contiguous_format
                    ).view(torch.int16 if dtype == torch.bfloat16 else torch.int32),
                ) and got.is_contiguous(memory_format=torch.channels_last if cl else torch.contiguous_format)
                c.add(
                    f"pixel_shuffle r{r} {str(dtype)[6:]} {'channels_last' if cl else 'nchw'} bit-exact", ok
                )
        bias = torch.randn(shape[1], device=CFG["device"])
        x = torch.randn(shape, device=CFG["device"])
        got = pixel_shuffle(x, r, bias=bias, activation="relu", clamp=(0.0, 1.0), backend="triton")
        want = F.pixel_shuffle(x + bias.view(1, -1, 1, 1), r).relu().clamp(0.0, 1.0)
        c.close(f"pixel_shuffle r{r} fp32 bias+relu+clamp", got, want, 1e-6)


# ------------------------------------------------------------------------------------------------ timings
def time_ssim(compile_: bool) -> list[dict[str, Any]]:
    from srcaco2.kernels.ssim import _reference, ssim, ssim_5conv

    x, y = _pair(CFG["ssim"], torch.float32, 11)
    xg = x.clone().requires_grad_(True)

    def reference(a, b):
        return _reference(a, b, 19, 1.5, "same", 1.0).mean()

    providers: dict[str, Callable[..., torch.Tensor] | None] = {
        "triton": lambda a, b: ssim(a, b, window=19, backend="triton"),
        "5conv (benchmark)": lambda a, b: ssim_5conv(a, b, window=19),
        "reference (separable)": reference,
    }
    if compile_:
        providers["torch.compile(reference)"] = torch.compile(reference)
    try:
        from pytorch_msssim import ssim as ms_ssim

        providers["pytorch_msssim (valid)"] = lambda a, b: ms_ssim(a, b, data_range=1.0, win_size=19)
    except ImportError:
        providers["pytorch_msssim (valid)"] = None
    rows = []
    for name, fn in providers.items():
        row: dict[str, Any] = {"op": "ssim w19 fwd+bwd", "shape": list(CFG["ssim"]), "provider": name}
        if fn is None:
            rows.append({**row, "skipped": "pytorch_msssim not installed"})
            continue

        def fwd_bwd(fn=fn):
            xg.grad = None
            fn(xg, y).backward()

        t0 = time.perf_counter()
        fwd_bwd()
        _sync()
        row["first_call_s"] = time.perf_counter() - t0  # includes compilation
        with torch.no_grad():
            row["fwd_ms"] = _bench(lambda fn=fn: fn(x, y))
        row["fwd_bwd_ms"] = _bench(fwd_bwd)
        rows.append(row)
    return rows


def time_loss(compile_: bool) -> list[dict[str, Any]]:
    return [row for dtype in (torch.float32, torch.bfloat16) for row in _loss_rows(dtype, compile_)]


def _loss_rows(dtype: torch.dtype, compile_: bool) -> list[dict[str, Any]]:
    from srcaco2.kernels.fused_loss import mse_ssim_loss
    from srcaco2.kernels.ssim import ssim, ssim_5conv

    sr, hr = _pair(CFG["ssim"], dtype, 12)
    hr = hr.float()
    srg = sr.clone().requires_grad_(True)

    def separate(a, b):
        return F.mse_loss(a.float(), b) - 5.0 * ssim(a.float(), b, window=19, backend="triton")

    def eager_ref(a, b):
        return F.mse_loss(a.float(), b) - 5.0 * ssim_5conv(a.float(), b, window=19)

    providers = {
        "fused (triton)": lambda a, b: mse_ssim_loss(a, b, backend="triton")[0],
        "mse + triton ssim": separate,
        "mse + 5conv (benchmark)": eager_ref,
    }
    if compile_:
        providers["torch.compile(mse + reference)"] = torch.compile(
            lambda a, b: mse_ssim_loss(a, b, backend="torch")[0]
        )
    rows = []
    for name, fn in providers.items():

        def fwd_bwd(fn=fn):
            srg.grad = None
            fn(srg, hr).backward()

        fwd_bwd()
        rows.append(
            {
                "op": "loss fwd+bwd",
                "shape": list(CFG["ssim"]),
                "dtype": str(dtype)[6:],
                "provider": name,
                "fwd_bwd_ms": _bench(fwd_bwd),
            }
        )
    return rows


def time_shuffle(compile_: bool) -> list[dict[str, Any]]:
    comp = torch.compile(F.pixel_shuffle) if compile_ else None
    comp_epi = torch.compile(_shuffle_bias_relu) if compile_ else None
    rows = []
    for dtype in (torch.float32, torch.bfloat16):
        for cl in (False, True):
            rows += _shuffle_rows(dtype, cl, comp, comp_epi)
    return rows


def _shuffle_bias_relu(x: torch.Tensor, r: int, bias: torch.Tensor) -> torch.Tensor:
    return F.pixel_shuffle(x + bias.view(1, -1, 1, 1), r).relu()


def _shuffle_rows(dtype: torch.dtype, cl: bool, comp: Any, comp_epi: Any) -> list[dict[str, Any]]:
    from srcaco2.kernels.pixel_shuffle import pixel_shuffle

    x = torch.randn(CFG["shuffle"], device=CFG["device"]).to(dtype)
    if cl:
        x = x.to(memory_format=torch.channels_last)
    bias = torch.randn(CFG["shuffle"][1], device=CFG["device"], dtype=dtype)
    out = torch.empty_like(x)
    nbytes = 2 * x.numel() * x.element_size()
    copy_ms = _bench(lambda: out.copy_(x))
    cases = {
        ("plain", "triton"): lambda: pixel_shuffle(x, 2, backend="triton"),
        ("plain", "eager"): lambda: F.pixel_shuffle(x, 2),
        ("plain", "compile"): (lambda: comp(x, 2)) if comp else None,
        ("bias+relu", "triton"): lambda: pixel_shuffle(x, 2, bias=bias, activation="relu", backend="triton"),
        ("bias+relu", "eager"): lambda: _shuffle_bias_relu(x, 2, bias),
        ("bias+relu", "compile"): (lambda: comp_epi(x, 2, bias)) if comp_epi else None,
    }
    rows = []
    for (variant, name), fn in cases.items():
        if fn is None:
            continue
        fn()
        ms = _bench(fn)
        rows.append(
            {
                "op": f"pixel_shuffle {variant}",
                "shape": list(x.shape),
                "r": 2,
                "dtype": str(dtype)[6:],
                "layout": "channels_last" if cl else "nchw",
                "provider": name,
                "ms": ms,
                "gbps": nbytes / ms / 1e6,
                "pct_copy": 100 * copy_ms / ms,
            }
        )
    return rows


def time_train_step() -> list[dict[str, Any]]:
    steps, warmup = CFG["steps"]
    rows = []
    for fast in (False, True):
        rows.append(_train_row(fast, steps, warmup))
        if CFG["device"] == "cuda":
            torch.cuda.empty_cache()
    return rows


def _train_row(fast: bool, steps: int, warmup: int) -> dict[str, Any]:
    """SwinIR ×8, batch 8, 128² HR: fp32 eager + 5-conv SSIM (``fast`` False) or bf16 + fused kernels."""
    from srcaco2.kernels.ssim import ssim_5conv
    from srcaco2.trainers.config import LossConfig
    from srcaco2.trainers.losses import SRLoss
    from srcaco2.trainers.models import build_model

    try:
        from srcaco2.trainers.engine import StepContext, train_step
    except ImportError:
        StepContext = train_step = None  # noqa: N806
    dev = torch.device(CFG["device"])
    batch, hr_size = CFG["train"]
    torch.manual_seed(0)
    model = build_model("swinir", 8).to(dev).train()
    crit = SRLoss(LossConfig()) if fast else SRLoss(LossConfig(), ssim_fn=ssim_5conv)
    opt = torch.optim.Adam(model.parameters(), lr=1e-4)
    g = torch.Generator(dev.type).manual_seed(1)
    hr = torch.rand(batch, 1, hr_size, hr_size, generator=g, device=dev)
    lr = F.avg_pool2d(hr, 8)
    if train_step is not None:
        ctx = StepContext(net=model, model=model, criterion=crit, optimizer=opt, device=dev, amp=fast)

        def step():
            return train_step(ctx, lr, hr)
    else:

        def step():
            with torch.autocast(dev.type, dtype=torch.bfloat16, enabled=fast):
                out = model(lr)
            loss, _ = crit(out, hr)
            opt.zero_grad(set_to_none=True)
            loss.backward()
            opt.step()
            return loss

    for _ in range(warmup):
        step()
    _sync()
    if dev.type == "cuda":
        torch.cuda.reset_peak_memory_stats()
    times = []
    for _ in range(steps):
        if dev.type != "cuda":
            t0 = time.perf_counter()
            step()
            times.append(1e3 * (time.perf_counter() - t0))
            continue
        start, end = torch.cuda.Event(enable_timing=True), torch.cuda.Event(enable_timing=True)
        start.record()
        step()
        end.record()
        end.synchronize()
        times.append(start.elapsed_time(end))
    return {
        "op": "train step swinir x8",
        "batch": batch,
        "hr": [hr_size, hr_size],
        "variant": "bf16 + fused Triton loss/shuffle"
        if fast
        else "benchmark recipe (fp32, eager, 5-conv SSIM)",
        "step": "srcaco2.trainers.engine.train_step" if train_step is not None else "local",
        "median_ms": statistics.median(times),
        "peak_mib": torch.cuda.max_memory_allocated() / 2**20 if dev.type == "cuda" else None,
    }


# ------------------------------------------------------------------------------------------------ driver
def main(argv: list[str] | None = None) -> int:
    ap = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    ap.add_argument("--out", default=RESULTS_DIR, help="folder for gpu_check_<device>.json")
    ap.add_argument(
        "--no-compile", dest="compile_", action="store_false", help="skip torch.compile providers"
    )
    ap.add_argument("--quick", action="store_true", help="correctness only, no timings")
    ap.add_argument(
        "--self-test-cpu",
        action="store_true",
        help="run every section on CPU with tiny shapes (needs TRITON_INTERPRET=1): checks the script",
    )
    args = ap.parse_args(argv)
    CFG.update(_SELF_TEST if args.self_test_cpu else {})
    if args.self_test_cpu:
        args.compile_ = False
        if os.environ.get("TRITON_INTERPRET") != "1":
            print("gpu_check --self-test-cpu: set TRITON_INTERPRET=1", file=sys.stderr)
            return 2
    elif not torch.cuda.is_available():
        print(
            "gpu_check: no CUDA device visible to torch (torch.cuda.is_available() is False; torch "
            f"{torch.__version__}, CUDA build {torch.version.cuda}). Run it on a machine with an NVIDIA GPU "
            "and a CUDA build of torch; on CPU use "
            "`python -m srcaco2.benchmarks.kernels --compile-only` instead.",
            file=sys.stderr,
        )
        return 2
    import triton

    os.environ.setdefault("TRITON_DEFAULT_FP_FUSION", "1")
    name = torch.cuda.get_device_name() if CFG["device"] == "cuda" else "cpu-self-test"
    t0 = time.perf_counter()
    result: dict[str, Any] = {
        "benchmark": "gpu_check",
        "device": name,
        "date": datetime.datetime.now(datetime.timezone.utc).isoformat(),
        "versions": {
            "torch": torch.__version__,
            "cuda": torch.version.cuda,
            "triton": triton.__version__,
            "python": platform.python_version(),
        },
        "shapes": {
            "ssim": list(CFG["ssim"]),
            "shuffle": [8, 256, 128, 128],
            "train_step": "swinir x8, 8x1x128² HR",
        },
        "timing": "triton.testing.do_bench medians (ms, L2 flushed per run); train step: CUDA events, median",
    }
    checks = Checks()
    print(f"# gpu_check on {name}: correctness", flush=True)
    for label, fn in (
        ("ssim fp32", lambda: check_ssim(checks, torch.float32, 1)),
        ("ssim bf16", lambda: check_ssim(checks, torch.bfloat16, 2)),
        ("loss fp32", lambda: check_loss(checks, torch.float32, 3)),
        ("loss bf16", lambda: check_loss(checks, torch.bfloat16, 4)),
        ("shuffle", lambda: check_shuffle(checks, 5)),
    ):
        try:
            fn()
        except Exception:
            checks.add(f"{label}: raised", False, error=traceback.format_exc()[-2000:])
            traceback.print_exc()
    result["checks"] = checks.rows
    sections = (
        []
        if args.quick
        else [
            ("ssim", lambda: time_ssim(args.compile_)),
            ("loss", lambda: time_loss(args.compile_)),
            ("pixel_shuffle", lambda: time_shuffle(args.compile_)),
            ("train_step", time_train_step),
        ]
    )
    for key, fn in sections:
        print(f"# timing: {key}", flush=True)
        try:
            result[key] = fn()
            for row in result[key]:
                print("  " + json.dumps(row, default=str), flush=True)
        except Exception:
            result[key] = {"error": traceback.format_exc()[-2000:]}
            print(result[key]["error"], file=sys.stderr)
    result["wall_s"] = time.perf_counter() - t0
    os.makedirs(args.out, exist_ok=True)
    slug = re.sub(r"[^a-z0-9]+", "_", name.lower()).strip("_")
    path = os.path.join(args.out, f"gpu_check_{slug}.json")
    with open(path, "w") as f:
        json.dump(result, f, indent=1, default=str)
    print(
        f"# {len(checks.rows) - checks.failed}/{len(checks.rows)} checks passed; {result['wall_s']:.0f} s; "
        f"wrote {path}"
    )
    return 1 if checks.failed else 0


if __name__ == "__main__":
    raise SystemExit(main())
