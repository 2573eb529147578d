"""Compile the package's Triton launches for a GPU architecture on a machine without a GPU; read resources.

How
---
A launcher (``srcaco2.kernels.ssim._launch_forward`` …) is run on ``meta`` tensors of a real training shape
with a
:class:`Recorder` in place of its jitted kernel: the recorder keeps the exact arguments of
``kernel[grid](*args, **kwargs)``. :func:`compile_launch` then binds them as Triton's own launcher would
(the same integer/pointer specialisation: ints equal to 1 become constants, ints and pointers divisible
by 16 are marked so), compiles for ``GPUTarget("cuda", arch, 32)`` with the ptxas shipped in the Triton
wheel, and reads the cubin with the wheel's ``cuobjdump -res-usage`` (registers, local memory = spills,
static shared memory) and ``nvdisasm`` (static SASS instruction count, store widths, local loads/stores).
No GPU and no CUDA driver are needed; compile errors that the interpreter accepts surface here.

Resident blocks per SM
----------------------
``min(32, ⌊2048 / threads⌋, ⌊⌊65536 / (⌈32·regs / 256⌉·256)⌋ / warps⌋, ⌊smem_SM / (smem + 1 KiB)⌋)`` with
smem_SM = 164 KiB (sm_80) or 228 KiB (sm_90): the register file allocates 256-register chunks per warp,
and every block reserves 1 KiB of shared memory.
"""

from __future__ import annotations

import dataclasses
import os
import re
import subprocess
import tempfile
from collections.abc import Callable, Iterable
from typing import Any

__all__ = [
    "ARCH_LIMITS",
    "BUDGETS",
    "CompileResult",
    "Launch",
    "Recorder",
    "all_launches",
    "blocks_per_sm",
    "budget_failures",
    "ci_launches",
    "compile_launch",
    "shuffle_launches",
    "ssim_launches",
]

ARCH_LIMITS: dict[int, dict[str, int]] = {
    80: {
        "regs_per_sm": 65536,
        "threads_per_sm": 2048,
        "blocks_per_sm": 32,
        "smem_per_sm": 164 * 1024,
        "smem_reserved": 1024,
    },
    90: {
        "regs_per_sm": 65536,
        "threads_per_sm": 2048,
        "blocks_per_sm": 32,
        "smem_per_sm": 228 * 1024,
        "smem_reserved": 1024,
    },
}


@dataclasses.dataclass
class Launch:
    """One recorded ``kernel[grid](*args, **kwargs)`` call of a launcher, plus labels for the report.

    ``elements`` is the number of output elements one program writes (for instructions per element).
    """

    kernel: str
    fn: Any  # the plain Python kernel body (not jitted)
    grid: tuple[int, ...]
    args: tuple[Any, ...]
    kwargs: dict[str, Any]
    labels: dict[str, Any] = dataclasses.field(default_factory=dict)
    elements: int | None = None


class Recorder:
    """Stands in for a jitted kernel: ``rec[grid](*args, **kwargs)`` records the call instead of running."""

    def __init__(self, fn: Any, name: str | None = None) -> None:
        self.fn = fn
        self.name = name or fn.__name__
        self.calls: list[Launch] = []

    def __getitem__(self, grid: Any) -> Callable[..., None]:
        def call(*args: Any, **kwargs: Any) -> None:
            g = grid(kwargs) if callable(grid) else grid
            self.calls.append(Launch(self.name, self.fn, tuple(g), args, dict(kwargs)))

        return call


@dataclasses.dataclass
class CompileResult:
    """Resources of one compiled specialisation (the JSON row of ``srcaco2.benchmarks.kernels
    --compile-only``)."""

    kernel: str
    arch: int
    constexprs: dict[str, Any]
    num_warps: int
    registers: int
    spill_bytes: int
    local_instructions: int
    shared_bytes: int
    sass_instructions: int
    blocks_per_sm: int
    stores: dict[str, int]
    loads: dict[str, int]
    labels: dict[str, Any]
    elements_per_thread: float | None = None
    sass_per_element: float | None = None

    def as_dict(self) -> dict[str, Any]:
        return dataclasses.asdict(self)


def blocks_per_sm(arch: int, registers: int, num_warps: int, shared_bytes: int) -> int:
    """Resident blocks per SM allowed by threads, registers and shared memory (module docstring)."""
    lim = ARCH_LIMITS[arch]
    threads = 32 * num_warps
    by_threads = lim["threads_per_sm"] // threads
    per_warp = -(-32 * max(registers, 1) // 256) * 256
    by_regs = (lim["regs_per_sm"] // per_warp) // num_warps
    by_smem = lim["smem_per_sm"] // (shared_bytes + lim["smem_reserved"])
    return int(min(lim["blocks_per_sm"], by_threads, by_regs, by_smem))


def _tool(name: str) -> str:
    import triton

    path = os.path.join(os.path.dirname(triton.__file__), "backends", "nvidia", "bin", name)
    if not os.path.exists(path):
        raise FileNotFoundError(
            f"{name} not found at {path}: the triton wheel ships it under "
            "triton/backends/nvidia/bin; reinstall triton"
        )
    return path


def _constexpr_value(v: Any) -> Any:
    v = getattr(v, "value", v)
    return v if isinstance(v, (bool, int, float, str)) or v is None else str(v)


_INSTR = re.compile(r"/\*[0-9a-f]{4,}\*/\s+([^;]*);")


def inspect_cubin(cubin: bytes) -> dict[str, Any]:
    """Registers, local (spill) bytes, static shared bytes, SASS counts of a one-function cubin."""
    with tempfile.NamedTemporaryFile(suffix=".cubin") as f:
        f.write(cubin)
        f.flush()
        res = subprocess.run(
            [_tool("cuobjdump"), "-res-usage", f.name], capture_output=True, text=True, check=True
        ).stdout
        sass = subprocess.run([_tool("nvdisasm"), f.name], capture_output=True, text=True, check=True).stdout
    m = re.search(r"REG:(\d+)\s+STACK:(\d+)\s+SHARED:(\d+)\s+LOCAL:(\d+)", res)
    if m is None:
        raise RuntimeError(f"cannot parse cuobjdump -res-usage output:\n{res}")
    reg, stack, shared, local = (int(g) for g in m.groups())
    ops = [i.split()[0] if not i.lstrip().startswith("@") else i.split()[1] for i in _INSTR.findall(sass)]
    ops = [o for o in ops if o != "NOP"]
    stores: dict[str, int] = {}
    loads: dict[str, int] = {}
    for o in ops:
        base = o.split(".")[0]
        if base in ("STG", "LDG"):
            width = next((s for s in o.split(".")[1:] if s in ("128", "64", "U16", "S16", "U8", "S8")), "32")
            d = stores if base == "STG" else loads
            d[width] = d.get(width, 0) + 1
    n_local = sum(1 for o in ops if o.split(".")[0] in ("LDL", "STL"))
    return {
        "registers": reg,
        "spill_bytes": local + stack,
        "shared_static": shared,
        "sass_instructions": len(ops),
        "stores": stores,
        "loads": loads,
        "local_instructions": n_local,
    }


def compile_launch(launch: Launch, arch: int) -> CompileResult:
    """Compile ``launch`` for ``sm_<arch>`` as Triton's runtime launcher would, and inspect the cubin.

    Raises
    ------
    triton.CompilationError (or any compiler error)
        The specialisation does not compile for that target.
    """
    import triton
    from triton.backends.compiler import GPUTarget
    from triton.compiler import ASTSource, make_backend
    from triton.runtime.jit import JITFunction, create_function_from_signature

    if arch not in ARCH_LIMITS:
        raise ValueError(f"arch must be one of {sorted(ARCH_LIMITS)}, got {arch!r}")
    jf = JITFunction(launch.fn)
    target = GPUTarget("cuda", arch, 32)
    backend = make_backend(target)
    binder = create_function_from_signature(jf.signature, jf.params, backend)
    kwargs = dict(launch.kwargs)
    bound, spec, _ = binder(*launch.args, **kwargs)
    options, signature, constexprs, attrs = jf._pack_args(backend, kwargs, bound, spec, None)
    kernel = triton.compile(
        ASTSource(jf, signature, constexprs, attrs), target=target, options=options.__dict__
    )
    info = inspect_cubin(kernel.asm["cubin"])
    num_warps = int(kernel.metadata.num_warps)
    shared = max(int(kernel.metadata.shared), info["shared_static"])
    names = jf.arg_names
    cx = {
        names[k[0]]: _constexpr_value(v)
        for k, v in constexprs.items()
        if len(k) == 1 and names[k[0]] in launch.kwargs
    }
    ept = launch.elements / (32 * num_warps) if launch.elements else None
    return CompileResult(
        kernel=launch.kernel,
        arch=arch,
        constexprs=cx,
        num_warps=num_warps,
        registers=info["registers"],
        spill_bytes=info["spill_bytes"],
        local_instructions=info["local_instructions"],
        shared_bytes=shared,
        sass_instructions=info["sass_instructions"],
        blocks_per_sm=blocks_per_sm(arch, info["registers"], num_warps, shared),
        stores=info["stores"],
        loads=info["loads"],
        labels=dict(launch.labels),
        elements_per_thread=ept,
        sass_per_element=(info["sass_instructions"] / ept) if ept else None,
    )


def compile_all(launches: Iterable[Launch], archs: Iterable[int]) -> list[CompileResult]:
    """:func:`compile_launch` of every launch for every arch, in order (errors propagate)."""
    archs = list(archs)
    return [compile_launch(lc, a) for lc in launches for a in archs]


# ------------------------------------------------------------------------------ the package's specialisations
_DT = {"fp32": "float32", "bf16": "bfloat16", "fp16": "float16", "fp64": "float64"}
SSIM_SHAPE = (8, 1, 512, 512)  # the training batch of the benchmark (HR 512² patches; crops are smaller)
SHUFFLE_SHAPES = {2: (8, 256, 64, 64), 3: (8, 576, 64, 64), 4: (8, 1024, 32, 32), 8: (8, 64, 16, 16)}
# plain copies run on same-width integer views: one specialisation per element width
_PLAIN_DTYPES = {"8bit": "uint8", "16bit": "float16", "32bit": "float32", "64bit": "float64"}
_EPILOGUES: dict[str, dict[str, Any]] = {  # each flag alone, then the combination the networks use
    "bias": {"bias": True},
    "relu": {"activation": "relu"},
    "leaky_relu": {"activation": "leaky_relu"},
    "gelu": {"activation": "gelu"},
    "sigmoid": {"activation": "sigmoid"},
    "prelu1": {"activation": "prelu", "prelu": 1},
    "preluC": {"activation": "prelu", "prelu": "C"},
    "clamp": {"clamp": (0.0, 1.0)},
    "bias+relu+clamp": {"bias": True, "activation": "relu", "clamp": (0.0, 1.0)},
}


def _meta(shape: tuple[int, ...], dtype: str, channels_last: bool = False) -> Any:
    import torch

    t = torch.empty(shape, dtype=getattr(torch, _DT.get(dtype, dtype)), device="meta")
    return t.to(memory_format=torch.channels_last) if channels_last else t


def _take(rec: Recorder, kernel: str, **labels: Any) -> list[Launch]:
    """The launches ``rec`` recorded, named ``kernel`` and labelled; ``rec`` is emptied."""
    calls, rec.calls = rec.calls, []
    for c in calls:
        c.kernel = kernel
        c.labels.update(labels)
    return calls


_SSIM_MODES = [  # forward: (mode, store_map, mask, partials)
    ("value", False, False, 0),
    ("grad_x", False, False, 3),
    ("grad_xy", False, False, 4),
    ("map", True, False, 0),
    ("map+grad_x", True, False, 3),
    ("mask", False, True, 0),
    ("mask+grad_x", False, True, 3),
    ("mask+grad_xy", False, True, 4),
]


def ssim_launches(
    dtypes: Iterable[str] = ("fp32", "bf16", "fp16"),
    windows: Iterable[int] = (11, 19),
    shape: tuple[int, int, int, int] = SSIM_SHAPE,
) -> list[Launch]:
    """Every launch of ``srcaco2.kernels.ssim.ssim`` (forward and backward) and
    ``srcaco2.kernels.fused_loss`` at ``shape``.

    Forward: window × padding × dtype × {no grad, grad x (3 partials), grad x and y (4), map, map + grad,
    mask, mask + grad, mask + grad x and y}; backward: window × padding × dtype × {per-image, map
    weights} × {dx, dy, both}; fused loss (same padding): window × sr dtype (hr float32) × {no grad, dsr,
    dsr and dhr}, backward {dsr, both}.
    """
    from srcaco2.kernels import _ssim_ops, _ssim_triton
    from srcaco2.kernels._dispatch import jit_kernels

    jit_kernels(vars(_ssim_triton))  # binds tl in the module
    fwd, bwd = Recorder(_ssim_triton._kernel_ssim_fwd), Recorder(_ssim_triton._kernel_ssim_bwd)
    out: list[Launch] = []
    b, c, h, w = shape
    for dtype in dtypes:
        x = _meta(shape, dtype)
        acc = "fp64" if dtype == "fp64" else "fp32"
        for window in windows:
            for padding in ("same", "valid"):
                pad = window // 2 if padding == "same" else 0
                ho, wo = _ssim_ops.map_hw(h, w, window, pad)
                mask = _meta((b, 1, ho, wo), "bool")
                lab = {"op": "ssim", "dtype": dtype, "window": window, "padding": padding}
                for mode, store_map, has_mask, npart in _SSIM_MODES:
                    _ssim_ops.launch_forward(
                        x, x, mask if has_mask else None, window, 1.5, pad, 1.0, store_map, npart, kernel=fwd
                    )
                    out += _take(fwd, "ssim_fwd", **lab, mode=mode)
                parts = _meta((4, b * c, ho, wo), acc)
                for weights in ("per_image", "map"):
                    wmap = _meta((b, c, ho, wo), acc) if weights == "map" else None
                    for grads in ("dx", "dy", "dxdy"):
                        _ssim_ops.launch_backward(
                            x,
                            x,
                            parts,
                            wmap,
                            _meta((b,), acc),
                            window,
                            1.5,
                            pad,
                            "x" in grads,
                            "y" in grads,
                            kernel=bwd,
                        )
                        out += _take(bwd, "ssim_bwd", **lab, mode=f"{weights}:{grads}")
            hr = _meta(shape, "fp32")
            lab = {"op": "mse_ssim_loss", "dtype": dtype, "window": window, "padding": "same"}
            for mode, npart in (("value", 0), ("grad_sr", 3), ("grad_sr_hr", 4)):
                _ssim_ops.launch_forward(
                    x, hr, None, window, 1.5, window // 2, 1.0, False, npart, mse=True, kernel=fwd
                )
                out += _take(fwd, "loss_fwd", **lab, mode=mode)
            k1 = _meta((1,), acc)
            parts = _meta((4, b * c, h, w), acc)
            for grads in ("dx", "dxdy"):
                _ssim_ops.launch_backward(
                    x,
                    hr,
                    parts,
                    None,
                    k1,
                    window,
                    1.5,
                    window // 2,
                    True,
                    grads == "dxdy",
                    kmse=k1,
                    kernel=bwd,
                )
                out += _take(bwd, "loss_bwd", **lab, mode=f"backward:{grads}")
    return out


def shuffle_launches(
    rs: Iterable[int] = (2, 3, 4, 8),
    epilogue_dtypes: Iterable[str] = ("fp32", "bf16", "fp16"),
    epilogues: Iterable[str] = tuple(_EPILOGUES),
) -> list[Launch]:
    """Launches of ``srcaco2.kernels.pixel_shuffle.pixel_shuffle``: r × layout × (plain per element width,
    each epilogue per float dtype, fp64 with the network epilogue, the int64-index variant)."""
    from srcaco2.kernels import pixel_shuffle as ps
    from srcaco2.kernels._dispatch import jit_kernels

    jit_kernels(vars(ps))
    rec = Recorder(ps._kernel_pixel_shuffle)
    epilogues = list(epilogues)
    out: list[Launch] = []
    for r in rs:
        shape = SHUFFLE_SHAPES[r]
        for layout in ("nchw", "channels_last"):
            cl = layout == "channels_last"
            cases = [("plain", width, dt, {}) for width, dt in _PLAIN_DTYPES.items()]
            cases += [(e, dt, dt, _EPILOGUES[e]) for dt in epilogue_dtypes for e in epilogues]
            cases += [("bias+relu+clamp", "fp64", "fp64", _EPILOGUES["bias+relu+clamp"])]
            for name, label_dt, dt, epi in cases:
                x = _meta(shape, dt, cl)
                bias = _meta((shape[1],), dt) if epi.get("bias") else None
                prelu = epi.get("prelu")
                weight = _meta((1 if prelu == 1 else shape[1] // (r * r),), dt) if prelu else None
                ps._launch(x, r, bias, epi.get("activation"), 0.01, weight, epi.get("clamp"), kernel=rec)
                out += _take(
                    rec,
                    "pixel_shuffle",
                    op="pixel_shuffle",
                    r=r,
                    layout=layout,
                    dtype=label_dt,
                    epilogue=name,
                )
            # int64 per-element indices (inputs of ≥ 2**31 elements): W = 2**17
            ps._launch(_meta((*shape[:3], 2**17), "fp32", cl), r, None, None, 0.01, None, None, kernel=rec)
            out += _take(
                rec,
                "pixel_shuffle",
                op="pixel_shuffle",
                r=r,
                layout=layout,
                dtype="32bit",
                epilogue="plain:int64",
            )
    for lc in out:
        lc.elements = lc.kwargs["BR"] * lc.kwargs["BW"]
    return out


def all_launches(fp64: bool = False) -> list[Launch]:
    """:func:`ssim_launches` (fp32, bf16, fp16; + fp64 with ``fp64``) and :func:`shuffle_launches`."""
    dts = ("fp32", "bf16", "fp16") + (("fp64",) if fp64 else ())
    return ssim_launches(dtypes=dts) + shuffle_launches()


def ci_launches() -> list[Launch]:
    """A representative subset: the training and evaluation SSIM, the fused loss, the network shuffles."""
    keep = []
    for lc in ssim_launches(dtypes=("fp32", "bf16"), windows=(11, 19)):
        lb = lc.labels
        if (lb["op"], lb["window"], lb["padding"], lb["mode"], lb["dtype"]) in {
            ("ssim", 19, "same", "grad_x", "fp32"),
            ("ssim", 11, "valid", "mask", "fp32"),
            ("ssim", 19, "same", "per_image:dx", "fp32"),
            ("ssim", 11, "valid", "map:dxdy", "bf16"),
            ("mse_ssim_loss", 19, "same", "grad_sr", "bf16"),
            ("mse_ssim_loss", 19, "same", "backward:dx", "bf16"),
        }:
            keep.append(lc)
    for lc in shuffle_launches(
        rs=(2, 3, 8), epilogue_dtypes=("fp32",), epilogues=("bias+relu+clamp", "preluC")
    ):
        lb = lc.labels
        if (lb["r"], lb["layout"], lb["epilogue"], lb["dtype"]) in {
            (2, "nchw", "plain", "32bit"),
            (3, "channels_last", "plain", "16bit"),
            (8, "nchw", "plain", "16bit"),
            (2, "nchw", "bias+relu+clamp", "fp32"),
            (2, "channels_last", "preluC", "fp32"),
            (3, "nchw", "plain:int64", "32bit"),
        }:
            keep.append(lc)
    return keep


# ------------------------------------------------------------------------------------------------ budgets
BUDGETS = {
    "no_spills": "spill_bytes == 0 (every kernel)",
    "ssim_fwd_registers": "SSIM / fused-loss forward: registers <= 128 and >= 4 resident blocks per SM",
    "shuffle_sass": "pixel shuffle without epilogue: <= 16 static SASS instructions per output element",
    "shuffle_vector_stores": "pixel shuffle: 128-bit global stores (STG.E.128)",
}


def budget_failures(r: CompileResult) -> list[str]:
    """Names of the :data:`BUDGETS` that ``r`` misses (empty when all hold)."""
    bad = []
    if r.spill_bytes or r.local_instructions:
        bad.append("no_spills")
    if r.kernel in ("ssim_fwd", "loss_fwd") and (r.registers > 128 or r.blocks_per_sm < 4):
        bad.append("ssim_fwd_registers")
    if r.kernel == "pixel_shuffle":
        if r.labels.get("epilogue", "").startswith("plain") and (r.sass_per_element or 0) > 16:
            bad.append("shuffle_sass")
        if not r.stores.get("128"):
            bad.append("shuffle_vector_stores")
    return bad
