"""`srtrain eval-runs` (one process) against one `srtrain eval` process per run (the ``eval_all.sh`` way).

    python -m srcaco2.benchmarks.eval_runs [--windows 2] [--methods dbpn,srfbn,nlsn,swinir] [--scale 4]
                                   [--threads 2] [--keep DIR]

Builds a synthetic store (``--windows`` test windows per marker) and a fake tree of original run
directories (the archive's directory names, ``config_model.yml``, ``best-models/G-model.pth`` with
random weights of each network's tiny configuration, `srcaco2.trainers.models.tiny`) for every method ×
CELL0..CELL2 at one scale, then times, on CPU with ``--threads`` torch threads:

* ``per-run processes``: ``srtrain eval --checkpoint RUN`` for every run plus ``srtrain eval
  --method bicubic`` once per marker, one process after the other (each process imports torch,
  opens the store and decodes the windows again);
* ``eval-runs``: one ``srtrain eval-runs ROOT`` process over the same tree (the store opened and
  each marker's windows decoded once).

Both score the same windows with the same code, so their numbers must agree (checked). Reports
windows/s of each and the ratio, prints them and writes ``benchmarks/results/eval_runs.json``.
With few windows per run (the default, a quick check) the per-process start-up dominates and the
ratio is large; with many windows per run and full-size networks the forward pass dominates and
the ratio tends to 1 (the JSON records the settings). No assertions beyond equal results.

The fake-tree helpers (`write_original_run`, `write_our_run`, `build_store`) are also used by
``tests/trainers/test_eval_runs.py``.
"""

from __future__ import annotations

import argparse
import datetime
import json
import os
import platform
import subprocess
import sys
import tempfile
import time
from collections.abc import Mapping
from pathlib import Path
from typing import Any

import numpy as np

ORIGINAL_NET_NAMES: dict[str, str] = {
    "act": "ACT", "dbpn": "DBPN", "dfcan": "DFCAN", "drrn": "DRRN", "edsr_liif": "EDSR_LIIF",
    "enlcn": "ENLCN", "grl": "GRL", "mslapsrn": "MSLapSRN", "memnet": "MemNet", "nlsn": "NLSN",
    "omnisr": "OmniSR", "prosr": "ProSR", "srcnn": "SRCNN", "srfbn": "SRFBN", "vdsr": "VDSR",
    "swinir": "swinir",
}  # fmt: skip
"""Registry name -> the original's ``netG_{NET}`` spelling (docs/protocol.md#weights-archive)."""


def original_run_dir(
    root: str | Path, method: str, scale: int, marker: str, *, run_id: str | None = None
) -> Path:
    """The archive's path of a run under `root` (docs/protocol.md#weights-archive), not created."""
    net = ORIGINAL_NET_NAMES[method]
    run_id = run_id or "01_11_2024_23_29_32_039193__8492855"
    return (
        Path(root) / "shared-trained-models" / "SURVEY_ABLATIONS" / "super-resolution" / net
        / f"caco2_train_X_{scale}_in_{512 // scale}_out_512_cell_{marker}"
        / f"id_{run_id}-tsk_super-resolution-x_{scale}-netG_{net}-sd_0-l2_yes-ssim_yes"
    )  # fmt: skip


def _yml(method: str, scale: int, marker: str, overrides: Mapping[str, Any]) -> str:
    import yaml

    cfg = {
        "net_type": ORIGINAL_NET_NAMES[method],
        "scale": int(scale),
        "train_dsets": f"caco2_train_X_{scale}_in_{512 // scale}_out_512_cell_{marker}",
        "test_dsets": f"caco2_test_X_{scale}_in_{512 // scale}_out_512_cell_{marker}",
        "myseed": 0,
        **{k: (list(v) if isinstance(v, tuple) else v) for k, v in overrides.items()},
    }
    return yaml.safe_dump(cfg, sort_keys=False)


def tiny_yml_overrides(method: str, scale: int) -> dict[str, Any]:
    """The tiny configuration's overrides that an original ``config_model.yml`` can carry (those
    among the network's reference hyperparameters, the only ones `load_pretrained` reads)."""
    from srcaco2.trainers.models.registry import reference_layout
    from srcaco2.trainers.models.tiny import tiny_overrides

    hp = (reference_layout(method, scale) or {}).get("hyperparameters") or {}
    return {k: v for k, v in tiny_overrides(method, scale).items() if k in hp}


def write_original_run(
    root: str | Path,
    method: str,
    scale: int,
    marker: str,
    *,
    overrides: Mapping[str, Any] | None = None,
    seed: int = 0,
    run_id: str | None = None,
) -> Path:
    """An original run directory with random weights in the original key layout.

    ``overrides`` (default `tiny_yml_overrides`) go to ``config_model.yml`` and to the network
    whose ``state_dict()`` is saved as ``best-models/G-model.pth``. Returns the run directory.
    """
    import torch

    from srcaco2.trainers.models import build_model

    ov = tiny_yml_overrides(method, scale) if overrides is None else dict(overrides)
    run = original_run_dir(root, method, scale, marker, run_id=run_id)
    (run / "best-models").mkdir(parents=True, exist_ok=True)
    (run / "config_model.yml").write_text(_yml(method, scale, marker, ov))
    torch.manual_seed(seed)
    model = build_model(method, scale, **ov)
    torch.save(model.state_dict(), run / "best-models" / "G-model.pth")
    return run


def write_our_run(
    run_dir: str | Path,
    method: str,
    scale: int,
    marker: str,
    *,
    overrides: Mapping[str, Any] | None = None,
    seed: int = 0,
) -> Path:
    """A run directory of ours (``config.yaml`` + ``best.pt``) with random tiny weights; returns best.pt."""
    import torch

    from srcaco2.trainers.checkpoints import save_checkpoint
    from srcaco2.trainers.models import build_model
    from srcaco2.trainers.models.tiny import tiny_overrides

    ov = tiny_overrides(method, scale) if overrides is None else dict(overrides)
    run = Path(run_dir)
    run.mkdir(parents=True, exist_ok=True)
    torch.manual_seed(seed)
    model = build_model(method, scale, **ov)
    meta = {"method": method, "scale": int(scale), "marker": marker, "overrides": ov}
    (run / "config.yaml").write_text(f"model:\n  method: {method}\n")
    return save_checkpoint(run / "best.pt", model_state=model.state_dict(), config={}, meta=meta)


def build_store(path: str | Path, *, n_test: int = 2, seed: int = 0) -> str:
    """A synthetic store whose test split holds `n_test` windows (blobs; LR = HR area means)."""
    from scipy.ndimage import gaussian_filter

    from srcaco2.srdata.array_store import write_store_from_arrays
    from srcaco2.srdata.schema import MARKERS, SCALES, STRIDE, WINDOW_SIZE

    rng = np.random.default_rng(seed)
    size = 1024
    starts = list(range(0, size - WINDOW_SIZE, STRIDE))
    per_tile = len(starts) ** 2
    n_tiles = max(1, -(-n_test // per_tile))
    images: dict[int, dict[int, np.ndarray]] = {}
    cols: dict[str, list] = {k: [] for k in ("tile", "y0", "x0", "split", "official_patch_id")}
    for t in range(1, n_tiles + 1):
        hr = np.zeros((len(MARKERS), size, size), np.float32)
        for c in range(len(MARKERS)):
            ys, xs = rng.integers(0, size, 260), rng.integers(0, size, 260)
            np.add.at(hr[c], (ys, xs), rng.uniform(40, 200, 260).astype(np.float32) * 2 * np.pi * 36)
            hr[c] = gaussian_filter(hr[c], 6.0)
        hr8 = np.round(np.clip(hr, 0, 255)).astype(np.uint8)
        images[t] = {1: hr8}
        for s in SCALES:
            lr = hr8.reshape(len(MARKERS), size // s, s, size // s, s).astype(np.float64).mean(axis=(2, 4))
            images[t][s] = np.round(lr).astype(np.uint8)
        for n, (y0, x0) in enumerate((y, x) for y in starts for x in starts):
            k = (t - 1) * per_tile + n
            for key, v in (("tile", t), ("y0", y0), ("x0", x0), ("split", 2 if k < n_test else 0),
                           ("official_patch_id", n)):  # fmt: skip
                cols[key].append(v)
    windows = {k: np.asarray(v) for k, v in cols.items()}
    windows["roi_fraction"] = np.full(len(cols["tile"]), 0.5, np.float32)
    write_store_from_arrays(
        str(path), images, chunk=256, windows=windows,
        pixel_size_um={"hr": 0.1, "x2": 0.2, "x4": 0.4, "x8": 0.8},
        roi={"threshold": 4, "min_fraction": 0.2, "method": "threshold", "marker": "CELL2"},
        source={"kind": "benchmark"}, n_levels=1,
    )  # fmt: skip
    return str(path)


# ------------------------------------------------------------------------------------------- timing
def _srtrain(args: list[str], env: dict[str, str]) -> tuple[float, float]:
    """Run ``srtrain ARGS`` in a fresh process: (wall seconds, CPU seconds of the process)."""
    import resource

    before = resource.getrusage(resource.RUSAGE_CHILDREN)
    t0 = time.perf_counter()
    cmd = [sys.executable, "-m", "srcaco2.cli.srtrain", *args]
    proc = subprocess.run(cmd, env=env, capture_output=True, text=True)
    wall = time.perf_counter() - t0
    after = resource.getrusage(resource.RUSAGE_CHILDREN)
    if proc.returncode != 0:
        raise RuntimeError(f"{' '.join(cmd)} failed ({proc.returncode}):\n{proc.stderr[-2000:]}")
    cpu = (after.ru_utime - before.ru_utime) + (after.ru_stime - before.ru_stime)
    return wall, cpu


def _machine() -> dict:
    import torch

    return {
        "platform": platform.platform(),
        "cpus": os.cpu_count(),
        "python": platform.python_version(),
        "torch": torch.__version__,
        "load_average": [round(v, 2) for v in os.getloadavg()],
    }


def main(argv: list[str] | None = None) -> dict:
    ap = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    ap.add_argument("--windows", type=int, default=2, help="Test windows per marker.")
    ap.add_argument("--methods", default="dbpn,srfbn,nlsn,swinir")
    ap.add_argument("--scale", type=int, default=4)
    ap.add_argument("--threads", type=int, default=2)
    ap.add_argument("--keep", help="Build the store, tree and outputs here (kept) instead of a temp dir.")
    ap.add_argument("--out", default=str(Path(__file__).parent / "results" / "eval_runs.json"))
    a = ap.parse_args(argv)
    methods = [m.strip() for m in a.methods.split(",") if m.strip()]
    markers = ("CELL0", "CELL1", "CELL2")
    repo = str(Path(__file__).resolve().parent.parent)
    pythonpath = os.pathsep.join(p for p in (repo, os.environ.get("PYTHONPATH")) if p)
    env = dict(os.environ, OMP_NUM_THREADS=str(a.threads), MKL_NUM_THREADS=str(a.threads),
               CUDA_VISIBLE_DEVICES="", PYTHONPATH=pythonpath)  # fmt: skip
    with tempfile.TemporaryDirectory() as tmp:
        base = Path(a.keep or tmp)
        store = build_store(base / "store.zarr", n_test=a.windows)
        root = base / "runs"
        cells = [(m, c) for m in methods for c in markers]
        runs = [write_original_run(root, m, a.scale, c, seed=i) for i, (m, c) in enumerate(cells)]
        n_evals = len(runs) + len(markers)  # + bicubic per marker
        n_windows = n_evals * a.windows
        common = ["--store", store, "--split", "test", "--device", "cpu"]
        t_sep = c_sep = 0.0
        jobs = [(f"bicubic_x{a.scale}_{c}", c, ["--method", "bicubic"]) for c in markers]
        jobs += [(f"{m}_x{a.scale}_{c}", c, ["--checkpoint", str(r)]) for (m, c), r in zip(cells, runs)]
        for name, c, what in jobs:
            args = [
                "eval",
                *common,
                "--marker",
                c,
                "--scale",
                str(a.scale),
                *what,
                "--out",
                str(base / "sep" / name),
            ]
            w, cpu = _srtrain(args, env)
            t_sep, c_sep = t_sep + w, c_sep + cpu
        t_one, c_one = _srtrain(["eval-runs", str(root), *common, "--out", str(base / "one")], env)
        # the same numbers both ways, window by window
        for name, _, _ in jobs:
            one = (base / "one" / "runs" / name / "windows.csv").read_bytes()
            if (base / "sep" / name / "windows.csv").read_bytes() != one:
                raise RuntimeError(f"eval-runs and srtrain eval disagree on {name}")
    result = {
        "benchmark": "eval_runs",
        "date": datetime.datetime.now(datetime.timezone.utc).isoformat(timespec="seconds"),
        "machine": _machine(),
        "params": {
            "windows_per_run": a.windows,
            "methods": methods,
            "scale": a.scale,
            "markers": list(markers),
            "torch_threads": a.threads,
            "evaluations": n_evals,
            "networks": "tiny configurations (srcaco2.trainers.models.tiny) as original run directories",
        },
        "per_run_processes": {
            "seconds": round(t_sep, 2), "cpu_seconds": round(c_sep, 2),
            "windows_per_s": round(n_windows / t_sep, 3),
        },
        "eval_runs": {
            "seconds": round(t_one, 2), "cpu_seconds": round(c_one, 2),
            "windows_per_s": round(n_windows / t_one, 3),
        },
        "ratio": round(t_sep / t_one, 2),
        "cpu_ratio": round(c_sep / c_one, 2),
        "results_identical": True,
    }  # fmt: skip
    what = f"{', '.join(methods)} x{a.scale}, CPU, {a.threads} threads"
    print(f"{n_evals} evaluations x {a.windows} windows ({what})")
    for label, key in (("one srtrain eval per run", "per_run_processes"), ("srtrain eval-runs", "eval_runs")):
        r = result[key]
        times = f"{r['seconds']:7.1f} s wall ({r['cpu_seconds']:.1f} s CPU)"
        print(f"  {label:<25} {times}  {r['windows_per_s']:.2f} windows/s")
    print(f"  ratio: {result['ratio']:.2f}x wall, {result['cpu_ratio']:.2f}x CPU time (identical numbers)")
    Path(a.out).parent.mkdir(parents=True, exist_ok=True)
    Path(a.out).write_text(json.dumps(result, indent=2) + "\n")
    return result


if __name__ == "__main__":
    main()
