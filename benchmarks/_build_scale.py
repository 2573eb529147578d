"""Full-size-tile, ome-zarr and projection sections of benchmarks/build.py.

* fulltile: one synthetic 9,344² tile (3 markers, `srcaco2.srdata.synth.write_synth`, seed 5), built in
  a fresh subprocess per scheduler (``threads``; ``processes``, the `LocalCluster` of 2 worker
  processes that the build starts itself; ``distributed``, a `LocalCluster` of 2 worker processes made
  beforehand and given by address), all 9 registrations (3 markers x 3 scales) of every accepted window. A
  sampler thread polls the RSS and CPU time of the client and of every descendant process
  (psutil, every 0.1 s): peak RSS per process, CPU seconds per stage. ``--fulltile-windows K``
  raises the ROI acceptance fraction so that about K windows are accepted (all 9 registrations
  each); ``--fulltile-windows 0`` keeps the build's own rule: every accepted window of the tile
  (~650) registered, ~5,800 estimates.
* omezarr: ``srdata build --no-register`` of that tile vs ``ome_zarr.writer.write_image`` of the
  same four TIFFs (tifffile.imread, chunks (1, c/s, c/s), the same blosc codec, as many levels).
* projection: the 22 real tiles (9,937 accepted windows, 9 estimates each) on one 16-core machine
  and on N workers: from the measured CPU seconds per estimate (numba, 1 thread; perfect scaling),
  and from the measured full tile (CPU per accepted window, CPU per tile outside registration and
  the parallel efficiency measured on 2 workers).
"""

from __future__ import annotations

import json
import os
import subprocess
import sys
import threading
import time
from typing import Any

import numpy as np

REAL_TILES = 22
REAL_WINDOWS = 9937
ESTIMATES_PER_WINDOW = 9


class TreeSampler:
    """Peak RSS and last CPU time of this process and all its descendants, polled in a thread."""

    def __init__(self, period: float = 0.1) -> None:
        import psutil

        self._ps = psutil
        self.me = psutil.Process()
        self.period = period
        self.peak: dict[int, int] = {}
        self.cpu: dict[int, float] = {}
        self.name: dict[int, str] = {}
        self._stop = threading.Event()
        self._t = threading.Thread(target=self._run, daemon=True)

    def _poll(self) -> None:
        procs = [self.me]
        try:
            procs += self.me.children(recursive=True)
        except self._ps.Error:
            pass
        for p in procs:
            try:
                with p.oneshot():
                    rss = p.memory_info().rss
                    ct = p.cpu_times()
                    if p.pid not in self.name:
                        self.name[p.pid] = " ".join(p.cmdline()[:4])[-120:]
            except self._ps.Error:
                continue
            self.peak[p.pid] = max(self.peak.get(p.pid, 0), rss)
            self.cpu[p.pid] = ct.user + ct.system

    def _run(self) -> None:
        while not self._stop.is_set():
            self._poll()
            time.sleep(self.period)

    def start(self) -> TreeSampler:
        self._poll()
        self._t.start()
        return self

    def stop(self) -> None:
        self._stop.set()
        self._t.join()
        self._poll()

    def cpu_total(self) -> float:
        return float(sum(self.cpu.values()))


def fulltile_child(raw: str, store: str, mode: str, min_fraction: float, register: bool) -> dict[str, Any]:
    """Run in a fresh process: one build of `raw` with `mode`, measured."""
    import dask.array  # noqa: F401 - imports before the baseline
    import zarr  # noqa: F401

    import srcaco2.srdata.registration.tvl1  # noqa: F401
    from srcaco2.srdata.build import BuildConfig, build_store

    sampler = TreeSampler().start()
    base_rss = sampler.me.memory_info().rss
    cluster = None
    scheduler, workers = mode, 2
    if mode == "distributed":
        from dask.distributed import LocalCluster

        cluster = LocalCluster(n_workers=2, threads_per_worker=1, processes=True, dashboard_address=None)
        scheduler, workers = cluster.scheduler_address, None
    marks: dict[str, tuple[float, float]] = {}

    def on_event(ev: Any) -> None:
        key = {"write": "write", "roi": "roi", "register": "register"}.get(ev.stage)
        if key and key not in marks:
            marks[key] = (time.perf_counter(), sampler.cpu_total())
        if ev.stage == "finished":
            marks["finished"] = (time.perf_counter(), sampler.cpu_total())

    cfg = BuildConfig(register=register, roi_min_fraction=min_fraction, overwrite=True)
    t0, c0 = time.perf_counter(), sampler.cpu_total()
    summary = build_store(raw, store, cfg, scheduler=scheduler, workers=workers, progress=on_event)
    wall = time.perf_counter() - t0
    sampler._poll()
    cpu = sampler.cpu_total() - c0
    if cluster is not None:
        cluster.close()
    sampler.stop()
    me = sampler.me.pid
    reg = None
    if "register" in marks and "finished" in marks:
        reg = {
            "wall_s": marks["finished"][0] - marks["register"][0],
            "cpu_s": marks["finished"][1] - marks["register"][1],
            "estimates": summary["accepted"] * ESTIMATES_PER_WINDOW,
        }
    return {
        "mode": mode,
        "wall_s": wall,
        "cpu_s": cpu,
        "before_register_wall_s": (marks.get("register", marks.get("finished", (t0 + wall, 0)))[0] - t0),
        "registration": reg,
        "accepted": summary["accepted"],
        "windows": summary["windows"],
        "client_peak_rss_MiB": sampler.peak[me] / 2**20,
        "client_rss_after_imports_MiB": base_rss / 2**20,
        "workers_peak_rss_MiB": {
            f"{pid} {sampler.name.get(pid, '')}": v / 2**20 for pid, v in sampler.peak.items() if pid != me
        },
    }


def _child(args: list[str], timeout: float) -> dict[str, Any]:
    cmd = [sys.executable, "-m", "srcaco2.benchmarks.build", "--child", json.dumps(args)]
    proc = subprocess.run(cmd, capture_output=True, text=True, timeout=timeout)
    if proc.returncode != 0:
        raise RuntimeError(f"child {args} failed: {proc.stderr[-3000:]}")
    return json.loads(proc.stdout.strip().splitlines()[-1])


def run_fulltile(work: str, *, size: int, windows: int, timeout: float) -> dict[str, Any]:
    from srcaco2.srdata.synth import SynthParams, write_synth

    raw = os.path.join(work, f"full{size}")
    t0 = time.perf_counter()
    if not os.path.exists(os.path.join(raw, "synth.json")):
        write_synth(raw, n_tiles=1, params=SynthParams(hr_size=size, seed=5))
    t_synth = time.perf_counter() - t0
    store = os.path.join(work, f"full{size}.zarr")
    out: dict[str, Any] = {"hr_size": size, "synth_s": t_synth, "runs": {}}
    # the ROI fractions from the raw CELL2 plane (numpy, here), to pick the registered windows
    import tifffile

    from srcaco2.srdata.build import BuildConfig
    from srcaco2.srdata.layout import tile_path
    from srcaco2.srdata.roi import window_grid, window_roi_fraction

    cell2 = tifffile.imread(tile_path(raw, 1, 1))[2]
    y0, x0 = window_grid(*cell2.shape)
    fr = window_roi_fraction((cell2 >= 4).view(np.uint8), y0, x0)
    del cell2
    frac = np.sort(fr)[::-1]
    out["accepted_at_0.2"] = int((fr >= 0.2).sum())
    out["windows"] = len(fr)
    # windows <= 0: the build's own ROI rule (every accepted window registered, 9 estimates each)
    thr = float(frac[min(windows, len(frac)) - 1]) if windows > 0 else BuildConfig().roi_min_fraction
    out["registration_min_fraction"] = thr
    out["registered_windows"] = int((fr >= thr).sum())
    # every scheduler: the whole tile written (pyramids, ROI), all 9 registrations of the
    # ~`windows` most cell-covered windows
    for mode in ("threads", "processes", "distributed"):
        out["runs"][f"{mode}_register"] = _child([raw, store, mode, thr, True], timeout)
    out["raw"] = raw
    return out


def run_omezarr(raw: str, work: str, *, chunk: int = 512) -> dict[str, Any]:
    """``srdata build --no-register`` vs ome-zarr-py write_image of the same TIFFs, same chunks/codec."""
    import shutil

    import tifffile
    import zarr
    from ome_zarr.writer import write_image

    from srcaco2.srdata.build import BuildConfig, build_store
    from srcaco2.srdata.layout import tile_path
    from srcaco2.srdata.ome import default_n_levels
    from srcaco2.srdata.store import compressors

    tiles = json.load(open(os.path.join(raw, "synth.json")))["tiles"]
    files = [tile_path(raw, t, s) for t in tiles for s in (1, 2, 4, 8)]
    raw_bytes = sum(os.path.getsize(f) for f in files)
    for f in files:  # warm page cache for both
        tifffile.imread(f)
    store = os.path.join(work, "omz_srdata.zarr")
    t0 = time.perf_counter()
    build_store(raw, store, BuildConfig(chunk=chunk, register=False, overwrite=True), scheduler="threads")
    t_srdata = time.perf_counter() - t0
    shutil.rmtree(store, ignore_errors=True)
    dst = os.path.join(work, "omz_omezarr.zarr")
    shutil.rmtree(dst, ignore_errors=True)
    t0 = time.perf_counter()
    root = zarr.open_group(dst, mode="w", zarr_format=3)
    for t in tiles:
        for s in (1, 2, 4, 8):
            data = tifffile.imread(tile_path(raw, t, s))
            c = chunk // s
            n = default_n_levels(data.shape[-2:], c)
            grp = root.create_group(f"{t}/{s}")
            write_image(
                data, grp, axes="cyx", scale_factors=tuple(2**k for k in range(1, n)),
                storage_options={"chunks": (1, c, c), "compressor": compressors()},
            )  # fmt: skip
    t_omz = time.perf_counter() - t0
    shutil.rmtree(dst, ignore_errors=True)
    return {
        "raw_bytes": raw_bytes,
        "srdata_build_no_register_s": t_srdata,
        "ome_zarr_write_image_s": t_omz,
        "srdata_MBps": raw_bytes / 1e6 / t_srdata,
        "ome_zarr_MBps": raw_bytes / 1e6 / t_omz,
        "srdata_over_ome_zarr_time": t_srdata / t_omz,
        "notes": "srdata also writes the ROI mask + its pyramid and computes the window table; "
        "ome-zarr-py uses its default pyramid method (resize), same levels, chunks and codec",
    }


def cpu_per_estimate(n: int = 4) -> dict[str, float]:
    """CPU seconds (process time, this thread) per 640² estimate, numba and skimage, on real-like data."""
    from skimage.registration import optical_flow_tvl1 as sk

    from srcaco2.benchmarks._build_tvl1 import _single_thread
    from srcaco2.srdata.registration.tvl1 import optical_flow_tvl1 as nb
    from srcaco2.srdata.synth import SynthParams, synth_tile

    _single_thread()
    acq = synth_tile(1, SynthParams(hr_size=1280, seed=2))
    hr, lr = acq[1][2, 320:960, 320:960], acq[2][2, 160:480, 160:480]
    up = np.repeat(np.repeat(lr, 2, 0), 2, 1)
    nb(hr, up)
    out = {}
    for name, fn, k in (("numba", nb, n), ("skimage", sk, max(1, n // 2))):
        c0, t0 = time.process_time(), time.perf_counter()
        for _ in range(k):
            fn(hr, up)
        out[f"{name}_cpu_s"] = (time.process_time() - c0) / k
        out[f"{name}_wall_s"] = (time.perf_counter() - t0) / k
    out["speedup_cpu"] = out["skimage_cpu_s"] / out["numba_cpu_s"]
    return out


def projection(cpu_est: dict[str, float], fulltile: dict[str, Any] | None, cores: int = 16) -> dict[str, Any]:
    """22 real tiles: registration CPU from the per-estimate cost, the rest from the full-tile run."""
    reg_cpu = REAL_WINDOWS * ESTIMATES_PER_WINDOW * cpu_est["numba_cpu_s"]
    reg_cpu_sk = REAL_WINDOWS * ESTIMATES_PER_WINDOW * cpu_est["skimage_cpu_s"]
    other_cpu = None
    if fulltile:
        run = fulltile["runs"].get("threads_register")
        if run and run["registration"]:
            other_cpu = REAL_TILES * (run["cpu_s"] - run["registration"]["cpu_s"])
    total = reg_cpu + (other_cpu or 0.0)
    out = {
        "assumptions": f"{REAL_TILES} tiles of ~9344² HR, {REAL_WINDOWS} accepted windows x "
        f"{ESTIMATES_PER_WINDOW} estimates; CPU seconds measured here (1 thread per estimate); perfect "
        "scaling over cores (registration tasks are independent, ~0.2 s each; writes are Dask blocks)",
        "registration_cpu_h_numba": reg_cpu / 3600,
        "registration_cpu_h_skimage": reg_cpu_sk / 3600,
        "other_cpu_h": None if other_cpu is None else other_cpu / 3600,
        f"wall_h_{cores}_cores_numba": total / cores / 3600,
        f"wall_h_{cores}_cores_skimage": (reg_cpu_sk + (other_cpu or 0.0)) / cores / 3600,
        "wall_h_on_N_workers_of_16_cores": {str(n): total / (16 * n) / 3600 for n in (1, 2, 4, 8)},
    }
    run = (fulltile or {}).get("runs", {}).get("distributed_register")
    if run and run.get("registration") and run["accepted"]:
        # from the measured full tile (every accepted window registered, LocalCluster of 2 workers):
        # CPU per accepted window, the non-registration CPU per tile, and the parallel efficiency
        # measured on 2 workers (CPU / (2 x wall)), applied to 16 cores
        per_window = run["registration"]["cpu_s"] / run["accepted"]
        per_tile = run["cpu_s"] - run["registration"]["cpu_s"]
        eff = min(1.0, run["cpu_s"] / (2 * run["wall_s"]))
        cpu = REAL_WINDOWS * per_window + REAL_TILES * per_tile
        out["from_measured_full_tile"] = {
            "basis": f"{run['accepted']} windows x 9 estimates of one 9,344² tile on a 2-worker "
            f"LocalCluster: {run['wall_s']:.0f} s wall, {run['cpu_s']:.0f} CPU-s",
            "cpu_s_per_accepted_window": per_window,
            "other_cpu_s_per_tile": per_tile,
            "parallel_efficiency_2_workers": eff,
            "cpu_h_22_tiles": cpu / 3600,
            f"wall_h_{cores}_cores": cpu / (cores * eff) / 3600,
            "wall_h_on_N_workers_of_16_cores": {str(n): cpu / (16 * n * eff) / 3600 for n in (1, 2, 4, 8)},
        }
    return out
