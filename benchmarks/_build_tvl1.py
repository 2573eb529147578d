"""TV-L1 section of benchmarks/build.py: numba vs skimage on the same windows (agreement, speed).

Windows: synthetic tiles (`srcaco2.srdata.synth.write_synth`, noise on, *no* built-in misregistration),
accepted 640² windows (CELL2 ROI rule), each marker x each scale, the LR window read at an offset of
1-2 LR px (random sign per axis and estimate: dy, dx in {-2, -1, 1, 2} LR px = s..2s HR px), i.e.
realistic misregistrations; plus the real sample (``/work/shared/reference/real_sample``, CELL2,
512², x2/x4/x8). Every estimate runs both implementations back to back in one single-threaded
process (a pool of `procs` such processes shares the machine), timing each.
"""

from __future__ import annotations

import functools
import json
import os
import time
from typing import Any

import numpy as np

REAL_SAMPLE = os.environ.get("SRCACO2_REAL_SAMPLE", "/work/shared/reference/real_sample")


def _single_thread() -> None:
    for k in ("OMP_NUM_THREADS", "OPENBLAS_NUM_THREADS", "MKL_NUM_THREADS", "NUMBA_NUM_THREADS"):
        os.environ[k] = "1"


@functools.lru_cache(maxsize=8)
def _tile(raw: str, tile: int, scale: int) -> np.ndarray:
    import tifffile

    from srcaco2.srdata.layout import tile_path

    return tifffile.imread(tile_path(raw, tile, scale))


def _pair(task: dict[str, Any]) -> tuple[np.ndarray, np.ndarray, int]:
    from srcaco2.srdata.registration import upsample_nearest

    if task["kind"] == "real":
        import tifffile

        hr = tifffile.imread(os.path.join(REAL_SAMPLE, "div1.tif"))
        lr = tifffile.imread(os.path.join(REAL_SAMPLE, f"div{task['scale']}.tif"))
        return hr, upsample_nearest(lr, task["scale"]), task["scale"]
    s, y0, x0, c = task["scale"], task["y0"], task["x0"], task["marker"]
    hr = _tile(task["raw"], task["tile"], 1)[c, y0 : y0 + 640, x0 : x0 + 640]
    ly, lx = y0 // s + task["dy"], x0 // s + task["dx"]
    lr = _tile(task["raw"], task["tile"], s)[c, ly : ly + 640 // s, lx : lx + 640 // s]
    return hr, upsample_nearest(lr, s), s


def run_estimate(task: dict[str, Any]) -> dict[str, Any]:
    """Both implementations on one (window, marker, scale): means, rounded shifts, seconds."""
    _single_thread()
    from skimage.registration import optical_flow_tvl1 as sk_tvl1

    from srcaco2.srdata.registration.tvl1 import optical_flow_tvl1 as nb_tvl1

    hr, up, _ = _pair(task)
    t0 = time.perf_counter()
    f_sk = sk_tvl1(hr, up)
    t_sk = time.perf_counter() - t0
    t0 = time.perf_counter()
    f_nb = nb_tvl1(hr, up)
    t_nb = time.perf_counter() - t0
    m_sk = [float(v) for v in f_sk.reshape(2, -1).mean(axis=1)]
    m_nb = [float(v) for v in f_nb.reshape(2, -1).mean(axis=1)]
    return {
        **{k: v for k, v in task.items() if k != "raw"},
        "skimage_mean": m_sk,
        "numba_mean": m_nb,
        "skimage_shift": [int(np.round(v)) for v in m_sk],
        "numba_shift": [int(np.round(v)) for v in m_nb],
        "flow_identical": bool(np.array_equal(f_sk, f_nb)),
        "flow_max_abs_diff": float(np.abs(f_sk - f_nb).max()),
        "skimage_s": t_sk,
        "numba_s": t_nb,
    }


def _warm() -> float:
    """Import + first call of the numba TV-L1 in a fresh process (cache load or compile), seconds."""
    _single_thread()
    t0 = time.perf_counter()
    from srcaco2.srdata.registration.tvl1 import optical_flow_tvl1

    optical_flow_tvl1(np.zeros((64, 64), np.uint8), np.ones((64, 64), np.uint8))
    return time.perf_counter() - t0


def make_tasks(raw: str, n_windows: int, seed: int = 0) -> tuple[list[dict[str, Any]], int]:
    """Real sample first (seed 0 only), then `n_windows` synthetic windows x 3 markers x 3 scales (a
    random sample of the accepted windows and of the offsets, drawn with `seed`)."""
    from srcaco2.srdata.roi import window_grid, window_roi_fraction
    from srcaco2.srdata.schema import MARKERS, SCALES

    tasks: list[dict[str, Any]] = (
        [{"kind": "real", "scale": s, "marker": 2} for s in SCALES] if seed == 0 else []
    )
    rng = np.random.default_rng(seed)
    cand = []
    tiles = sorted(json.load(open(os.path.join(raw, "synth.json")))["tiles"])
    for t in tiles:
        hr = _tile(raw, t, 1)
        y0, x0 = window_grid(hr.shape[1], hr.shape[2])
        frac = window_roi_fraction((hr[2] >= 4).view(np.uint8), y0, x0)
        for y, x in zip(y0[frac >= 0.2], x0[frac >= 0.2], strict=True):
            cand.append((t, int(y), int(x)))
    order = rng.permutation(len(cand))[:n_windows]
    for i in order:
        t, y, x = cand[i]
        for c in range(len(MARKERS)):
            for s in SCALES:
                hr_len = _tile(raw, t, 1).shape[1]
                d = []
                for pos in (y, x):
                    mag = int(rng.integers(1, 3))
                    sign = 1 if rng.random() < 0.5 else -1
                    if pos // s - mag < 0:
                        sign = 1
                    if (pos + 640) // s + mag > hr_len // s:
                        sign = -1
                    d.append(sign * mag)
                tasks.append({"kind": "synth", "raw": raw, "tile": t, "y0": y, "x0": x, "marker": c,
                              "scale": s, "dy": d[0], "dx": d[1]})  # fmt: skip
    return tasks, len(cand)


def summarise(rows: list[dict[str, Any]]) -> dict[str, Any]:
    agree = [r["skimage_shift"] == r["numba_shift"] for r in rows]
    dis = [
        {
            k: r[k]
            for k in ("kind", "tile", "y0", "x0", "marker", "scale", "skimage_mean", "numba_mean")
            if k in r
        }
        | {
            "rounding_tie": bool(
                any(abs(abs(v) % 1 - 0.5) < 1e-3 for v in r["skimage_mean"] + r["numba_mean"])
            )
        }
        for r, a in zip(rows, agree, strict=True)
        if not a
    ]
    t_sk = np.array([r["skimage_s"] for r in rows])
    t_nb = np.array([r["numba_s"] for r in rows])
    synth = [r for r in rows if r["kind"] == "synth"]
    windows = {(r["tile"], r["y0"], r["x0"]) for r in synth}
    return {
        "estimates": len(rows),
        "synthetic_windows": len(windows),
        "synthetic_estimates": len(synth),
        "real_sample_estimates": len(rows) - len(synth),
        "agreement_rate": float(np.mean(agree)) if rows else None,
        "flows_bit_identical": int(sum(r["flow_identical"] for r in rows)),
        "flow_max_abs_diff": float(max((r["flow_max_abs_diff"] for r in rows), default=0.0)),
        "disagreements": dis,
        "skimage_s_per_estimate_mean": float(t_sk.mean()) if rows else None,
        "numba_s_per_estimate_mean": float(t_nb.mean()) if rows else None,
        "speedup_total_time": float(t_sk.sum() / t_nb.sum()) if rows else None,
        "speedup_median_per_estimate": float(np.median(t_sk / t_nb)) if rows else None,
        "real_sample": [
            {
                "scale": r["scale"],
                "skimage_shift": r["skimage_shift"],
                "numba_shift": r["numba_shift"],
                "skimage_mean": r["skimage_mean"],
                "numba_mean": r["numba_mean"],
            }
            for r in rows
            if r["kind"] == "real"
        ],  # fmt: skip
    }


def run(
    work: str, *, n_windows: int, procs: int, budget_s: float, out_json: str, seed: int = 0
) -> dict[str, Any]:
    """Run the agreement/speed section, rewriting `out_json` after every estimate (stoppable)."""
    from concurrent.futures import FIRST_COMPLETED, ProcessPoolExecutor, wait

    from srcaco2.srdata.registration import _mp_context
    from srcaco2.srdata.synth import SynthParams, write_synth

    raw = os.path.join(work, "tvl1_raw")
    if not os.path.exists(os.path.join(raw, "synth.json")):
        n_tiles = max(2, int(np.ceil(n_windows / 15)))
        write_synth(raw, n_tiles=n_tiles, params=SynthParams(hr_size=2048, misregistration=False, seed=seed))
    tasks, n_cand = make_tasks(raw, n_windows, seed)
    t_start = time.perf_counter()
    rows: list[dict[str, Any]] = []
    with ProcessPoolExecutor(procs, mp_context=_mp_context()) as ex:
        warm = [f.result() for f in [ex.submit(_warm) for _ in range(procs)]]
        it = iter(tasks)
        running = {ex.submit(run_estimate, t) for t in (next(it) for _ in range(min(procs, len(tasks))))}
        stopped = False
        while running:
            done, running = wait(running, return_when=FIRST_COMPLETED)
            for f in done:
                rows.append(f.result())
                if not stopped and time.perf_counter() - t_start < budget_s:
                    nxt = next(it, None)
                    if nxt is not None:
                        running.add(ex.submit(run_estimate, nxt))
                else:
                    stopped = True
            result = {
                "date": time.strftime("%Y-%m-%dT%H:%M:%SZ", time.gmtime()),
                "planned_windows": n_windows, "candidate_windows": n_cand, "processes": procs,
                "stopped_by_budget": stopped or len(rows) < len(tasks), "budget_s": budget_s,
                "first_call_s_fresh_process": warm, "load_avg": os.getloadavg(),
                **summarise(rows),
                "shift_lr_px": "dy, dx in {-2,-1,1,2} LR px per estimate (s..2s HR px)",
            }  # fmt: skip
            with open(out_json, "w") as fh:
                json.dump({"summary": result, "rows": rows}, fh, indent=1)
    return result


def numba_first_call() -> dict[str, float]:
    """Seconds to import + first call in fresh processes: with an empty numba cache (compile), then
    with the cache it left (load)."""
    import subprocess
    import sys
    import tempfile

    code = (
        "import time; t = time.perf_counter(); import numpy as np; "
        "from srcaco2.srdata.registration.tvl1 import optical_flow_tvl1 as f; "
        "f(np.zeros((64, 64), np.uint8), np.ones((64, 64), np.uint8)); print(time.perf_counter() - t)"
    )
    out = {}
    with tempfile.TemporaryDirectory() as cache:
        env = {**os.environ, "NUMBA_CACHE_DIR": cache}
        for name in ("compile_s", "cached_s"):
            proc = subprocess.run(
                [sys.executable, "-c", code], env=env, capture_output=True, text=True, check=True
            )
            out[name] = float(proc.stdout.strip().splitlines()[-1])
    out["load_avg"] = os.getloadavg()[0]
    return out
