"""srcaco2.kernels._compile: the package's Triton launches compile for sm_90 on this CPU machine (no GPU)
within
their budgets (no spills, SSIM forward ≤ 128 registers with ≥ 4 blocks/SM, pixel shuffle ≤ 16 SASS
instructions per element with 128-bit stores). Errors the interpreter tolerates fail here."""

from __future__ import annotations

import json
import os
import subprocess
import sys

import pytest

from srcaco2.kernels import _compile

triton = pytest.importorskip("triton")
_BIN = os.path.join(os.path.dirname(triton.__file__), "backends", "nvidia", "bin")
_ROOT = os.path.dirname(os.path.dirname(os.path.dirname(os.path.abspath(__file__))))
pytestmark = pytest.mark.skipif(
    not all(os.path.exists(os.path.join(_BIN, t)) for t in ("ptxas", "cuobjdump", "nvdisasm")),
    reason="the triton wheel's ptxas/cuobjdump/nvdisasm are missing",
)


@pytest.mark.parametrize(
    ("arch", "regs", "warps", "smem", "want"),
    [
        (90, 212, 4, 1024, 2),  # the old SSIM forward: 7 warps' worth of registers per 4-warp block
        (90, 93, 4, 2048, 5),  # 96 allocated → 21 warps → 5 blocks of 4
        (90, 32, 4, 0, 16),  # thread-limited: 2048 / 128
        (90, 16, 1, 0, 32),  # block-limited
        (80, 40, 4, 100 * 1024, 1),  # shared-memory-limited on sm_80 (164 KiB)
        (90, 40, 4, 100 * 1024, 2),  # ... and on sm_90 (228 KiB)
    ],
)
def test_blocks_per_sm_arithmetic(arch, regs, warps, smem, want):
    assert _compile.blocks_per_sm(arch, regs, warps, smem) == want


def test_ci_subset_compiles_for_sm90_within_budgets(tmp_path):
    # A fresh process, as CI and users run it: once a kernel has run under TRITON_INTERPRET=1, the
    # interpreter has patched triton.language in this process, and real compilation no longer works.
    out = tmp_path / "compile.json"
    env = {k: v for k, v in os.environ.items() if k != "TRITON_INTERPRET"}
    env["PYTHONPATH"] = os.pathsep.join([_ROOT, env.get("PYTHONPATH", "")])
    proc = subprocess.run(
        [
            sys.executable,
            "-m",
            "srcaco2.benchmarks.kernels",
            "--compile-only",
            "--arch",
            "90",
            "--subset",
            "ci",
            "--json",
            str(out),
        ],
        cwd=_ROOT,
        env=env,
        capture_output=True,
        text=True,
        timeout=600,
    )
    assert proc.returncode == 0, proc.stdout[-3000:] + proc.stderr[-3000:]
    rows = json.loads(out.read_text())
    assert {r["kernel"] for r in rows} == {"ssim_fwd", "ssim_bwd", "loss_fwd", "loss_bwd", "pixel_shuffle"}
    required = {
        "kernel",
        "arch",
        "constexprs",
        "num_warps",
        "registers",
        "spill_bytes",
        "shared_bytes",
        "sass_instructions",
        "blocks_per_sm",
    }
    for r in rows:
        assert required <= set(r) and r["arch"] == 90
        assert r["registers"] > 0 and r["sass_instructions"] > 50 and r["constexprs"]
        assert r["budget_failures"] == [], (r["labels"], r["budget_failures"])
        if r["kernel"] == "pixel_shuffle":  # the recorded launch is the runtime one (4 warps, 16 per thread)
            assert r["elements_per_thread"] == 16
    assert "0 miss a budget" in proc.stdout


def test_budget_checker_flags_a_violation():
    r = _compile.CompileResult(
        kernel="ssim_fwd",
        arch=90,
        constexprs={},
        num_warps=4,
        registers=180,
        spill_bytes=8,
        local_instructions=2,
        shared_bytes=0,
        sass_instructions=1000,
        blocks_per_sm=2,
        stores={"32": 1},
        loads={},
        labels={},
    )
    assert _compile.budget_failures(r) == ["no_spills", "ssim_fwd_registers"]
