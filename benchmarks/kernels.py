"""Kernel microbenchmarks: fused SSIM (forward, forward + backward, peak memory) and pixel shuffle (GB/s).

    python -m srcaco2.benchmarks.kernels [--repeats 7] [--compile/--no-compile] [--quick]
    python -m srcaco2.benchmarks.kernels --compile-only [--arch 80,90] [--json FILE] [--subset all|ci]
    [--jobs N]

``--compile-only`` needs no GPU: it compiles every Triton specialisation the package launches (see
``srcaco2.kernels._compile``: SSIM forward/backward × window 11/19 × same/valid × modes × fp32/bf16/fp16, the
fused loss, pixel shuffle × r 2/3/4/8 × layouts × element widths × epilogues) for each ``--arch``,
prints registers, spills, shared memory, SASS instructions, resident blocks per SM and the budgets each
row misses, writes the rows as a JSON list (default ``benchmarks/results/kernels_compile.json``) and
exits 1 when a budget is missed or a specialisation fails to compile.

SSIM (zero-"same" padding, σ 1.5, windows 11 and 19; shapes 8×1×512², 32×1×256², 5×5×1080×1920),
providers: ``triton`` (ours, ``srcaco2.kernels.ssim.ssim``), ``reference`` (separable torch), ``5conv`` (the
benchmark's 5 dense depthwise convs), ``pytorch_msssim`` (if importable; its own valid-padding SSIM,
timed for scale only), ``compile`` (``torch.compile`` of the reference). Reported: forward ms,
forward + backward ms (gradient w.r.t. x) and peak extra memory (MiB above the inputs).

Pixel shuffle (r = 2 and 3, float32 and float16, NCHW and channels_last): ``triton`` (ours), ``eager``
(``F.pixel_shuffle``), ``compile``; and the fused epilogue (bias + ReLU + clamp) against the same three
as separate ops. GB/s counts one read and one write of the tensor; ``%copy`` is that rate over a
measured device copy (``out.copy_(x)``) of the same bytes.

On CUDA, times are ``triton.testing.do_bench`` medians. On CPU only the torch paths run (the Triton
interpreter is a test vehicle, not a performance path), on shapes scaled down 4× per side, timed by
``time.perf_counter`` medians; the table and the JSON say so. Results go to
``benchmarks/results/kernels_<device>.json`` (device name, date, parameters, rows). No assertions.
"""

from __future__ import annotations

import argparse
import datetime
import json
import os
import platform
import re
import statistics
import time
from collections.abc import Callable
from typing import Any

import torch
import torch.nn.functional as F

RESULTS_DIR = os.path.join(os.path.dirname(__file__), "results")
SSIM_SHAPES = [(8, 1, 512, 512), (32, 1, 256, 256), (5, 5, 1080, 1920)]
SHUFFLE_SHAPES = [(8, 256, 128, 128, 2), (8, 576, 64, 64, 3)]  # (B, C·r², H, W, r): EDSR-like upsamplers


def _timer(device: str, repeats: int) -> Callable[[Callable[[], Any]], float]:
    """Median milliseconds of ``fn()``: do_bench on CUDA, perf_counter on CPU."""
    if device == "cuda":
        from triton.testing import do_bench

        return lambda fn: float(do_bench(fn, warmup=25, rep=100, return_mode="median"))

    def cpu(fn: Callable[[], Any]) -> float:
        fn()
        times = []
        for _ in range(repeats):
            t0 = time.perf_counter()
            fn()
            times.append((time.perf_counter() - t0) * 1e3)
        return statistics.median(times)

    return cpu


def _peak_mib(device: str, fn: Callable[[], Any]) -> float | None:
    """Peak memory allocated by ``fn()`` above what was allocated before (CUDA only)."""
    if device != "cuda":
        return None
    torch.cuda.synchronize()
    base = torch.cuda.memory_allocated()
    torch.cuda.reset_peak_memory_stats()
    fn()
    torch.cuda.synchronize()
    return (torch.cuda.max_memory_allocated() - base) / 2**20


def _ssim_providers(device: str, compile_: bool) -> dict[str, Callable[..., torch.Tensor] | None]:
    from srcaco2.kernels.ssim import _reduce, _reference, ssim, ssim_5conv

    def reference(x, y, window):
        return _reduce(_reference(x, y, window, 1.5, "same", 1.0), None, "mean")

    providers: dict[str, Callable[..., torch.Tensor] | None] = {
        "triton": (lambda x, y, w: ssim(x, y, window=w, backend="triton")) if device == "cuda" else None,
        "reference": reference,
        "5conv": lambda x, y, w: ssim_5conv(x, y, window=w),
    }
    try:
        from pytorch_msssim import ssim as ms_ssim

        providers["pytorch_msssim"] = lambda x, y, w: ms_ssim(x, y, data_range=1.0, win_size=w)
    except ImportError:
        providers["pytorch_msssim"] = None
    compiled = torch.compile(reference, dynamic=False) if compile_ else None
    providers["compile"] = compiled
    return providers


def bench_ssim(device: str, timer, compile_: bool, quick: bool) -> list[dict[str, Any]]:
    rows = []
    div = 1 if device == "cuda" else 4
    shapes = [(b, c, h // div, w // div) for b, c, h, w in SSIM_SHAPES][: 1 if quick else None]
    providers = _ssim_providers(device, compile_)
    g = torch.Generator(device=device).manual_seed(0)
    for shape in shapes:
        x = torch.rand(shape, generator=g, device=device)
        y = (x + 0.1 * torch.randn(shape, generator=g, device=device)).clamp(0, 1)
        for window in (11, 19):
            for name, fn in providers.items():
                row: dict[str, Any] = {"op": "ssim", "shape": list(shape), "window": window, "provider": name}
                if fn is None:
                    rows.append(
                        {
                            **row,
                            "skipped": "not installed"
                            if name == "pytorch_msssim"
                            else ("CPU: reference paths only" if name == "triton" else "--no-compile"),
                        }
                    )
                    continue
                xg = x.clone().requires_grad_(True)

                def fwd(fn=fn, window=window, x=x, y=y):
                    with torch.no_grad():
                        return fn(x, y, window)

                def fwd_bwd(fn=fn, window=window, xg=xg, y=y):
                    xg.grad = None
                    fn(xg, y, window).backward()

                row["fwd_ms"] = timer(fwd)
                row["fwd_bwd_ms"] = timer(fwd_bwd)
                row["peak_extra_mib"] = _peak_mib(device, fwd_bwd)
                rows.append(row)
    return rows


def bench_shuffle(device: str, timer, compile_: bool, quick: bool) -> list[dict[str, Any]]:
    from srcaco2.kernels.pixel_shuffle import pixel_shuffle

    rows = []
    div = 1 if device == "cuda" else 4
    ours_backend = "triton" if device == "cuda" else "torch"
    ours = "triton" if device == "cuda" else "ours_torch_path"

    def separate(x, r, bias):
        return F.pixel_shuffle(x + bias.view(1, -1, 1, 1), r).relu().clamp(0.0, 1.0)

    comp_plain = torch.compile(F.pixel_shuffle, dynamic=False) if compile_ else None
    comp_fused = torch.compile(separate, dynamic=False) if compile_ else None
    for b, c, h, w, r in SHUFFLE_SHAPES[: 1 if quick else None]:
        for dtype in (torch.float32, torch.float16):
            for layout in ("nchw", "channels_last"):
                x = torch.randn(b, c, h // div, w // div, device=device, dtype=dtype)
                if layout == "channels_last":
                    x = x.to(memory_format=torch.channels_last)
                bias = torch.randn(c, device=device, dtype=dtype)
                out = torch.empty_like(x)
                nbytes = 2 * x.numel() * x.element_size()
                copy_ms = timer(lambda x=x, out=out: out.copy_(x))
                cases = {
                    ("plain", ours): lambda x=x, r=r: pixel_shuffle(x, r, backend=ours_backend),
                    ("plain", "eager"): lambda x=x, r=r: F.pixel_shuffle(x, r),
                    ("plain", "compile"): (lambda x=x, r=r: comp_plain(x, r)) if compile_ else None,
                    ("fused", ours): lambda x=x, r=r, bias=bias: pixel_shuffle(
                        x, r, bias=bias, activation="relu", clamp=(0.0, 1.0), backend=ours_backend
                    ),
                    ("fused", "eager"): lambda x=x, r=r, bias=bias: separate(x, r, bias),
                    ("fused", "compile"): (
                        (lambda x=x, r=r, bias=bias: comp_fused(x, r, bias)) if compile_ else None
                    ),
                }
                for (variant, name), fn in cases.items():
                    row = {
                        "op": f"pixel_shuffle_{variant}",
                        "shape": list(x.shape),
                        "r": r,
                        "dtype": str(dtype).replace("torch.", ""),
                        "layout": layout,
                        "provider": name,
                        "copy_gbps": nbytes / copy_ms / 1e6,
                    }
                    if fn is None:
                        rows.append({**row, "skipped": "--no-compile"})
                        continue
                    ms = timer(fn)
                    gbps = nbytes / ms / 1e6
                    rows.append({**row, "ms": ms, "gbps": gbps, "pct_copy": 100.0 * gbps / row["copy_gbps"]})
    return rows


def _fmt(v: Any) -> str:
    if v is None:
        return "-"
    return f"{v:.3f}" if isinstance(v, float) else str(v)


def _print_table(rows: list[dict[str, Any]], cols: list[str]) -> None:
    skip_col = {"fwd_ms", "ms"}
    table = [[_fmt(r.get(c, r.get("skipped") if c in skip_col else None)) for c in cols] for r in rows]
    widths = [max(len(c), *(len(t[i]) for t in table)) for i, c in enumerate(cols)]
    print("  ".join(c.ljust(wd) for c, wd in zip(cols, widths)))
    for t in table:
        print("  ".join(v.ljust(wd) for v, wd in zip(t, widths)))


def _compile_one(i: int) -> dict[str, Any]:
    """JSON row of launch i: its resources and missed budgets, or the compiler's error."""
    from srcaco2.kernels import _compile

    lc, arch = _LAUNCHES[i]
    try:
        r = _compile.compile_launch(lc, arch)
    except Exception as exc:  # reported as a failed row; the other specialisations still compile
        return {
            "kernel": lc.kernel,
            "arch": arch,
            "labels": dict(lc.labels),
            "constexprs": {k: str(v) for k, v in lc.kwargs.items()},
            "error": f"{type(exc).__name__}: {str(exc)[-1500:]}",
            "budget_failures": ["compiles"],
        }
    return {**r.as_dict(), "budget_failures": _compile.budget_failures(r)}


_LAUNCHES: list[tuple[Any, int]] = []


def compile_only(archs: list[int], json_path: str | None, subset: str, jobs: int, fp64: bool) -> int:
    """Compile every specialisation for ``archs``; print the table, write the JSON list; exit status."""
    import concurrent.futures
    import multiprocessing

    from srcaco2.kernels import _compile

    os.environ.setdefault("TRITON_DEFAULT_FP_FUSION", "1")  # Triton 3.9 warns when unset; 1 = its default
    launches = _compile.ci_launches() if subset == "ci" else _compile.all_launches(fp64=fp64)
    _LAUNCHES[:] = [(lc, a) for lc in launches for a in archs]
    t0 = time.perf_counter()
    print(
        f"# compiling {len(_LAUNCHES)} specialisations for sm_{', sm_'.join(map(str, archs))} "
        f"({jobs} job{'s' if jobs > 1 else ''})",
        flush=True,
    )
    if jobs > 1:
        ctx = multiprocessing.get_context("fork")
        with concurrent.futures.ProcessPoolExecutor(jobs, mp_context=ctx) as pool:
            results = list(pool.map(_compile_one, range(len(_LAUNCHES))))
    else:
        results = [_compile_one(i) for i in range(len(_LAUNCHES))]
    rows = results
    keys = (
        "kernel",
        "arch",
        "num_warps",
        "registers",
        "spill_bytes",
        "shared_bytes",
        "sass_instructions",
        "blocks_per_sm",
    )
    table = [
        {
            **r["labels"],
            **{k: r.get(k) for k in keys},
            "sass/elem": r.get("sass_per_element"),
            "st128": r.get("stores", {}).get("128", 0),
            "fails": ",".join(r["budget_failures"]) or "-",
        }
        for r in rows
    ]
    cols = [
        "arch",
        "kernel",
        "op",
        "dtype",
        "window",
        "padding",
        "r",
        "layout",
        "epilogue",
        "mode",
        "num_warps",
        "registers",
        "spill_bytes",
        "shared_bytes",
        "sass_instructions",
        "sass/elem",
        "st128",
        "blocks_per_sm",
        "fails",
    ]
    _print_table(table, cols)
    failed = [r for r in rows if r["budget_failures"]]
    print(
        f"\n{len(rows)} specialisations compiled in {time.perf_counter() - t0:.0f} s; "
        f"{len(failed)} miss a budget"
    )
    for name, text in {"compiles": "every specialisation compiles", **_compile.BUDGETS}.items():
        n = sum(name in r["budget_failures"] for r in rows)
        print(f"  {'MISSED' if n else 'ok':6s} {text}" + (f" ({n} rows)" if n else ""))
    path = json_path or os.path.join(RESULTS_DIR, "kernels_compile.json")
    os.makedirs(os.path.dirname(os.path.abspath(path)), exist_ok=True)
    with open(path, "w") as f:  # a JSON list, one specialisation per line
        f.write("[\n" + ",\n".join(json.dumps(r) for r in rows) + "\n]\n")
    print(f"wrote {path}")
    return 1 if failed else 0


def main(argv: list[str] | None = None) -> dict[str, Any]:
    p = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    p.add_argument(
        "--compile-only",
        action="store_true",
        help="compile every Triton specialisation for --arch on this machine (no GPU needed)",
    )
    p.add_argument("--arch", default="90", help="with --compile-only: comma-separated SM versions (80, 90)")
    p.add_argument("--json", dest="json_path", default=None, help="with --compile-only: output JSON file")
    p.add_argument("--subset", choices=("all", "ci"), default="all", help="with --compile-only")
    p.add_argument("--jobs", type=int, default=1, help="with --compile-only: parallel compile processes")
    p.add_argument("--fp64", action="store_true", help="with --compile-only: add the float64 SSIM kernels")
    p.add_argument("--repeats", type=int, default=7, help="CPU timing repeats (median)")
    p.add_argument(
        "--compile",
        dest="compile_",
        action=argparse.BooleanOptionalAction,
        default=None,
        help="include torch.compile providers (default: on for CUDA, off for CPU)",
    )
    p.add_argument("--quick", action="store_true", help="first shape of each op only")
    args = p.parse_args(argv)
    if args.compile_only:
        try:
            archs = [int(a) for a in args.arch.split(",") if a.strip()]
        except ValueError:
            p.error(f"--arch must be comma-separated integers such as 80,90, got {args.arch!r}")
        if not archs or any(a not in (80, 90) for a in archs):
            p.error(f"--arch: supported SM versions are 80 and 90, got {args.arch!r}")
        raise SystemExit(compile_only(archs, args.json_path, args.subset, max(1, args.jobs), args.fp64))
    device = "cuda" if torch.cuda.is_available() else "cpu"
    compile_ = (device == "cuda") if args.compile_ is None else args.compile_
    name = torch.cuda.get_device_name() if device == "cuda" else (platform.processor() or platform.machine())
    timer = _timer(device, args.repeats)
    note = (
        "CUDA: triton.testing.do_bench medians"
        if device == "cuda"
        else "CPU: reference (torch) paths only, shapes / 4 per side, time.perf_counter medians; "
        "the Triton kernels are not timed (the interpreter is a test vehicle)"
    )
    print(f"# kernels benchmark on {device} ({name}); {note}")
    ssim_rows = bench_ssim(device, timer, compile_, args.quick)
    _print_table(ssim_rows, ["shape", "window", "provider", "fwd_ms", "fwd_bwd_ms", "peak_extra_mib"])
    print()
    shuffle_rows = bench_shuffle(device, timer, compile_, args.quick)
    _print_table(shuffle_rows, ["op", "shape", "dtype", "layout", "provider", "ms", "gbps", "pct_copy"])
    result = {
        "benchmark": "kernels",
        "device": device,
        "device_name": name,
        "date": datetime.datetime.now(datetime.timezone.utc).isoformat(),
        "note": note,
        "machine": {
            "platform": platform.platform(),
            "cpus": os.cpu_count(),
            "torch": torch.__version__,
            "cuda": torch.version.cuda,
        },
        "params": {
            "repeats": args.repeats,
            "compile": compile_,
            "quick": args.quick,
            "sigma": 1.5,
            "padding": "same",
            "gbps": "2 × tensor bytes (one read, one write) / time",
        },
        "ssim": ssim_rows,
        "pixel_shuffle": shuffle_rows,
    }
    slug = "cpu" if device == "cpu" else re.sub(r"[^a-z0-9]+", "_", name.lower()).strip("_")
    os.makedirs(RESULTS_DIR, exist_ok=True)
    path = os.path.join(RESULTS_DIR, f"kernels_{slug}.json")
    with open(path, "w") as f:
        json.dump(result, f, indent=2)
    print(f"\nwrote {path}")
    return result


if __name__ == "__main__":
    main()
