"""Build benchmark: `srdata build` wall time vs a plain tifffile read, store bytes vs released patches.

Run ``python -m benchmarks.build [--tiles 3] [--hr-size 2048] [--register-windows 2]``.

* read: ``tifffile.imread`` of every raw TIFF of the set (the floor any builder pays); goal:
  build (without registration) <= 2x read.
* bytes: the whole store (all levels, ROI, index) vs the same accepted windows written as the
  released data holds them: one 2-D uint8 TIFF per marker and resolution (512² HR, (512/s)² LR);
  goal <= 0.5x.
* registration: TV-L1 seconds per window (9 estimates), measured on a few windows, reported
  separately (it dominates a real build and scales with the number of accepted windows).

Prints a table and writes ``benchmarks/results/build.json``.
"""

from __future__ import annotations

import argparse
import datetime
import json
import os
import platform
import shutil
import tempfile
import time

import numpy as np

RESULTS = os.path.join(os.path.dirname(os.path.abspath(__file__)), "results", "build.json")


def _du(path: str) -> int:
    total = 0
    for d, _, names in os.walk(path):
        total += sum(os.path.getsize(os.path.join(d, n)) for n in names)
    return total


def _write_released(store: str, out: str) -> int:
    """Write the accepted windows as released 512-patch TIFFs (registered LR), return their bytes."""
    import tifffile

    from srdata.schema import MARKERS, SCALES, open_root, read_hr_patch, read_index, read_lr_patch

    root = open_root(store)
    idx = read_index(root)
    os.makedirs(out, exist_ok=True)
    planes: dict[tuple[int, int], np.ndarray] = {}
    for n in np.flatnonzero(idx["accepted"]):
        t, y0, x0 = int(idx["tile"][n]), int(idx["y0"][n]), int(idx["x0"][n])
        for c, marker in enumerate(MARKERS):
            key = (t, 1)
            if key not in planes:
                planes = {k: v for k, v in planes.items() if k[0] == t}
                planes[key] = root[f"tiles/{t}/hr/0"][...]
            hr = read_hr_patch(planes[key][c], y0, x0)
            tifffile.imwrite(os.path.join(out, f"hr_{t}_{n}_{marker}.tif"), hr)
            for k, s in enumerate(SCALES):
                if (t, s) not in planes:
                    planes[(t, s)] = root[f"tiles/{t}/x{s}/0"][...]
                dy, dx = (int(v) for v in idx["shift"][n, c, k])
                lr = read_lr_patch(planes[(t, s)][c], y0, x0, dy, dx, s)
                tifffile.imwrite(os.path.join(out, f"x{s}_{t}_{n}_{marker}.tif"), lr)
    return _du(out)


def main(argv: list[str] | None = None) -> dict:
    ap = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    ap.add_argument("--tiles", type=int, default=3)
    ap.add_argument("--hr-size", type=int, default=2048)
    ap.add_argument("--chunk", type=int, default=512)
    ap.add_argument("--scheduler", default="threads")
    ap.add_argument("--register-windows", type=int, default=2, help="windows timed for TV-L1 (0: skip)")
    ap.add_argument("--keep", default=None, help="keep the work directory here")
    args = ap.parse_args(argv)

    import tifffile

    from srdata.build import BuildConfig, build_store
    from srdata.layout import FOLDERS, tile_path
    from srdata.registration import register_windows
    from srdata.schema import open_root, read_index
    from srdata.synth import SynthParams, write_synth

    work = args.keep or tempfile.mkdtemp(prefix="srdata-bench-")
    raw, store = os.path.join(work, "raw"), os.path.join(work, "store.zarr")
    try:
        t0 = time.perf_counter()
        tiles = write_synth(raw, n_tiles=args.tiles, params=SynthParams(hr_size=args.hr_size))
        t_synth = time.perf_counter() - t0
        raw_bytes = sum(os.path.getsize(tile_path(raw, t, s)) for t in tiles for s in FOLDERS)

        t0 = time.perf_counter()
        for t in tiles:
            for s in FOLDERS:
                tifffile.imread(tile_path(raw, t, s))
        t_read = time.perf_counter() - t0

        import dask.array  # noqa: F401 - warm imports: time the build, not the interpreter
        import skimage.filters  # noqa: F401
        import zarr  # noqa: F401

        t0 = time.perf_counter()
        summary = build_store(
            raw,
            store,
            BuildConfig(chunk=args.chunk, register=False, overwrite=True),
            scheduler=args.scheduler,
        )
        t_build = time.perf_counter() - t0
        store_bytes = _du(store)
        level0_bytes = sum(
            _du(os.path.join(store, "tiles", str(t), a, "0")) for t in tiles for a in ("hr", "x2", "x4", "x8")
        )
        released_bytes = _write_released(store, os.path.join(work, "released"))

        t_reg = None
        if args.register_windows > 0:
            idx = read_index(open_root(store))
            sel = np.flatnonzero(idx["accepted"] & (idx["tile"] == idx["tile"][idx["accepted"]][0]))[
                : args.register_windows
            ]
            t = int(idx["tile"][sel[0]])
            root = open_root(store)
            hr = root[f"tiles/{t}/hr/0"][...]
            lrs = {s: root[f"tiles/{t}/x{s}/0"][...] for s in (2, 4, 8)}
            t0 = time.perf_counter()
            register_windows(hr, lrs, idx["y0"][sel], idx["x0"][sel])
            t_reg = (time.perf_counter() - t0) / len(sel)
    finally:
        if not args.keep:
            shutil.rmtree(work, ignore_errors=True)

    result = {
        "benchmark": "build",
        "date": datetime.datetime.now(datetime.timezone.utc).isoformat(timespec="seconds"),
        "machine": {
            "platform": platform.platform(), "python": platform.python_version(), "cpus": os.cpu_count()
        },
        "sizes": {
            "tiles": len(tiles), "hr_size": args.hr_size, "chunk": args.chunk, "windows": summary["windows"],
            "accepted": summary["accepted"], "raw_bytes": raw_bytes,
        },
        "times_s": {
            "synth": t_synth, "tifffile_read": t_read, "build_no_register": t_build, "tvl1_per_window": t_reg
        },
        "bytes": {"store": store_bytes, "store_level0": level0_bytes, "released_patch_tiffs": released_bytes},
        "ratios": {
            "build_over_read": t_build / t_read,
            "store_over_released": store_bytes / max(released_bytes, 1),
            "store_over_raw": store_bytes / raw_bytes,
        },
        "goals": {"build_over_read": 2.0, "store_over_released": 0.5},
    }  # fmt: skip
    os.makedirs(os.path.dirname(RESULTS), exist_ok=True)
    with open(RESULTS, "w") as fh:
        json.dump(result, fh, indent=2)

    rows = [
        ("tifffile read of the raw set", f"{t_read:.2f} s", ""),
        ("srdata build (no registration)", f"{t_build:.2f} s", f"{t_build / t_read:.2f}x read (goal <= 2x)"),
        ("TV-L1 registration per window", "-" if t_reg is None else f"{t_reg:.2f} s", "9 estimates / window"),
        ("raw TIFFs", f"{raw_bytes / 1e6:.1f} MB", ""),
        (
            "store (all levels + ROI + index)",
            f"{store_bytes / 1e6:.1f} MB",
            f"{store_bytes / raw_bytes:.2f}x raw",
        ),
        ("store level 0 only", f"{level0_bytes / 1e6:.1f} MB", ""),
        (
            f"released patch TIFFs ({summary['accepted']} windows)",
            f"{released_bytes / 1e6:.1f} MB",
            f"store = {store_bytes / max(released_bytes, 1):.2f}x (goal <= 0.5x)",
        ),
    ]
    print(f"build benchmark: {len(tiles)} tiles of {args.hr_size}² HR, chunk {args.chunk}, {args.scheduler}")
    for name, val, note in rows:
        print(f"  {name:<42} {val:>12}  {note}")
    print(f"  -> {RESULTS}")
    return result


if __name__ == "__main__":
    main()
