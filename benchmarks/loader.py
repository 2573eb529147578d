"""Loader throughput: `srcaco2.srdata.loader` against a per-file TIFF baseline (the original's way).

    python -m srcaco2.benchmarks.loader [--store PATH] [--scale 4] [--h-size 128] [--batch-size 8]
                                [--samples 2000] [--repeats 3] [--workers 0,1,2]

Builds a synthetic store with `srcaco2.srdata.writer` (unless ``--store`` is given), writes every window
of the train split as a registered HR/LR TIFF pair in the released naming (``hr_div_1/…``,
``hr_div_s/…``), then times, over the same windows, crop size, batch size and worker counts:

* ``baseline``: a map-style torch Dataset that, per sample, picks a random window, reads its two
  TIFFs (tifffile), does what docs/protocol.md#training-crops does (OpenCV bicubic upsampling of the LR, ROI ≥
  4, weights exp(5·ROI)+1 at crop centres, categorical top-left draw, random dihedral transform) and
  returns float32 tensors; default collation.
* ``srdata``: `make_loader` (chunk cache, batch keys, uint8 across the worker pipe), measured on
  the first, cold epoch of fresh loaders (worker start-up included) and on warm epochs (the cache
  filled by a first epoch, the steady state of training).
* ``srdata preload``: the same with ``preload=True`` (each worker decodes the split in one
  chunk-aligned read per tile and array before its first batch).
* ``srdata float32 transfer``: ``worker_transfer="float32"``, the previous transport (float32
  tensors made in the worker, sent through shared memory), for comparison.
* ``srdata zarrs codecs``: zarr's ``codec_pipeline.path`` set to ``zarrs.ZarrsCodecPipeline``
  (Rust); only when the optional ``zarrs`` package is importable, skipped otherwise, and only
  without workers: with zarrs 0.2.3, forked workers hang once the parent process has read through
  it (make_loader reads the LR to check the ROI threshold).

Reports samples/s, MB/s of delivered float32 LR+HR, and bytes decoded per sample; prints a table
and writes ``benchmarks/results/loader.json`` (machine, date, params, medians). No assertions.
"""

from __future__ import annotations

import argparse
import contextlib
import datetime
import importlib.util
import json
import os
import platform
import statistics
import tempfile
import time

import numpy as np

RESULTS = os.path.join(os.path.dirname(__file__), "results", "loader.json")


def build_store(path: str, *, n_tiles: int = 3, tile_size: int = 2048, seed: int = 0) -> None:
    """Synthetic store: cells as bright squares on a dark background, LR = area means, shifts 0."""
    from srcaco2.srdata.array_store import write_store_from_arrays
    from srcaco2.srdata.schema import SCALES, STRIDE, WINDOW_SIZE

    rng = np.random.default_rng(seed)
    images: dict[int, dict[int, np.ndarray]] = {}
    cols: dict[str, list] = {"tile": [], "y0": [], "x0": [], "official_patch_id": []}
    for t in range(1, n_tiles + 1):
        hr = rng.integers(0, 4, (3, tile_size, tile_size), dtype=np.uint8)
        for _ in range(tile_size**2 // 4000):
            y, x = rng.integers(0, tile_size - 64, 2)
            hr[:, y : y + 48, x : x + 48] = rng.integers(30, 256, (3, 48, 48), dtype=np.uint8)
        images[t] = {1: hr}
        for s in SCALES:
            lr = hr.reshape(3, tile_size // s, s, tile_size // s, s).mean(axis=(2, 4))
            images[t][s] = np.rint(lr).astype(np.uint8)
        pid = 0
        for y0 in range(0, tile_size - WINDOW_SIZE, STRIDE):
            for x0 in range(0, tile_size - WINDOW_SIZE, STRIDE):
                for k, v in (("tile", t), ("y0", y0), ("x0", x0), ("official_patch_id", pid)):
                    cols[k].append(v)
                pid += 1
    windows = {k: np.asarray(v) for k, v in cols.items()}
    windows["roi_fraction"] = np.full(len(cols["tile"]), 0.5)  # size 640, accepted, shifts 0 by default
    windows["split"] = np.zeros(len(cols["tile"]))  # all train
    write_store_from_arrays(
        path,
        images,
        chunk=512,
        windows=windows,
        pixel_size_um=0.1,
        roi={"threshold": 4},
        source={"kind": "benchmark"},
        n_levels=1,
    )


def write_tiffs(store: str, out: str, scale: int, marker: str) -> list[tuple[str, str]]:
    """Every train window of the store as a registered (HR, LR) TIFF pair; returns the pairs."""
    import tifffile

    from srcaco2.srdata.loader import WindowDataset

    ds = WindowDataset(store, "train", scale, marker)
    pairs = []
    os.makedirs(os.path.join(out, "hr_div_1"), exist_ok=True)
    os.makedirs(os.path.join(out, f"hr_div_{scale}"), exist_ok=True)
    lr_name = {2: "LowRes512", 4: "LowRes256", 8: "LowRes128"}[scale]
    for k in range(len(ds)):
        s = ds[k]
        i, j = int(ds.y0[k]), int(ds.x0[k])
        hr_p = os.path.join(
            out, "hr_div_1", f"tile_HighRes1024-{s['tile']}_{k}_{i}_{i + 640}_{j}_{j + 640}_{marker}.tif"
        )
        lr_p = os.path.join(
            out,
            f"hr_div_{scale}",
            f"tile_{lr_name}-{s['tile']}_{k}_{i // scale}_"
            f"{(i + 640) // scale}_{j // scale}_{(j + 640) // scale}_{marker}.tif",
        )
        tifffile.imwrite(hr_p, np.rint(s["hr"][0].numpy() * 255).astype(np.uint8))
        tifffile.imwrite(lr_p, np.rint(s["lr"][0].numpy() * 255).astype(np.uint8))
        pairs.append((hr_p, lr_p))
    ds.close()
    return pairs


class BaselineDataset:
    """Per sample: random window -> two TIFF reads -> ROI-biased crop (docs/protocol.md#training-crops) ->
    tensors."""

    def __init__(self, pairs: list[tuple[str, str]], scale: int, h_size: int, n: int, seed: int = 0) -> None:
        self.pairs, self.scale, self.h, self.n, self.seed = pairs, scale, h_size, n, seed

    def __len__(self) -> int:
        return self.n

    def __getitem__(self, i: int) -> dict:
        import cv2
        import tifffile
        import torch

        from srcaco2.srdata.transforms import dihedral

        rng = np.random.default_rng([self.seed, i])
        hp, lp = self.pairs[int(rng.integers(len(self.pairs)))]
        hr, lr = tifffile.imread(hp), tifffile.imread(lp)
        up = cv2.resize(lr, (512, 512), interpolation=cv2.INTER_CUBIC)
        h, s = self.h, self.scale
        roi = (up >= 4).astype(np.float64)
        w = np.exp(5.0 * roi[h // 2 : 512 - h // 2 - 1, h // 2 : 512 - h // 2 - 1]) + 1.0
        k = rng.choice(w.size, p=(w / w.sum()).ravel())
        y0, x0 = divmod(int(k), w.shape[1])
        hr_c = hr[y0 : y0 + h, x0 : x0 + h]
        lr_c = lr[y0 // s : y0 // s + h // s, x0 // s : x0 // s + h // s]
        mode = int(rng.integers(8))
        hr_c, lr_c = dihedral(hr_c, mode), dihedral(lr_c, mode)
        return {
            "lr": torch.from_numpy(lr_c[None].astype(np.float32) / 255.0),
            "hr": torch.from_numpy(hr_c[None].astype(np.float32) / 255.0),
        }


def _time_epoch(loader, n_batches: int | None = None) -> tuple[float, int, int]:
    t0, n, nbytes = time.perf_counter(), 0, 0
    for i, batch in enumerate(loader):
        n += batch["hr"].shape[0]
        nbytes += batch["hr"].nbytes + batch["lr"].nbytes
        if n_batches is not None and i + 1 >= n_batches:
            break
    return time.perf_counter() - t0, n, nbytes


def _uptime() -> str:
    """The 1, 5 and 15 min load averages (the machine may be shared)."""
    return " ".join(f"{v:.2f}" for v in os.getloadavg())


def _machine() -> dict:
    import torch
    import zarr

    return {
        "platform": platform.platform(),
        "processor": platform.processor(),
        "cpus": os.cpu_count(),
        "python": platform.python_version(),
        "torch": torch.__version__,
        "zarr": zarr.__version__,
    }


def main(argv: list[str] | None = None) -> dict:
    import torch.utils.data

    ap = argparse.ArgumentParser(description=__doc__.split("\n")[0])
    ap.add_argument("--store", default=None)
    ap.add_argument("--scale", type=int, default=4)
    ap.add_argument("--marker", default="CELL2")
    ap.add_argument("--h-size", type=int, default=128)
    ap.add_argument("--batch-size", type=int, default=8)
    ap.add_argument("--samples", type=int, default=2000, help="samples per timed epoch (srdata)")
    ap.add_argument("--baseline-samples", type=int, default=400)
    ap.add_argument("--repeats", type=int, default=3)
    ap.add_argument("--workers", default="0,1,2")
    ap.add_argument("--out", default=RESULTS)
    args = ap.parse_args(argv)
    workers = [int(w) for w in args.workers.split(",")]
    uptime0 = _uptime()
    print(f"load average before: {uptime0}")
    tmp = tempfile.TemporaryDirectory(prefix="bench_loader_")
    store = args.store or os.path.join(tmp.name, "bench.zarr")
    if args.store is None:
        t0 = time.perf_counter()
        build_store(store)
        print(f"built synthetic store in {time.perf_counter() - t0:.1f} s: {store}")
    pairs = write_tiffs(store, os.path.join(tmp.name, "tiffs"), args.scale, args.marker)
    common = dict(scale=args.scale, h_size=args.h_size, batch_size=args.batch_size)
    zarrs_ok = importlib.util.find_spec("zarrs") is not None
    if not zarrs_ok:
        print("zarrs not installed: no 'zarrs codecs' rows (pip install zarrs to add them)")
    rows = []
    for nw in workers:
        ctx = "fork" if nw else None
        # baseline: the same windows, crop size, batch size and workers
        base = BaselineDataset(pairs, args.scale, args.h_size, args.baseline_samples)
        runs = []
        for r in range(args.repeats):
            base.seed = r
            dl = torch.utils.data.DataLoader(
                base,
                batch_size=args.batch_size,
                shuffle=False,
                num_workers=nw,
                multiprocessing_context=ctx,
                drop_last=True,
            )
            runs.append(_time_epoch(dl))
        rows.append(_row("baseline (TIFF pair per sample)", nw, runs, None))
        variants = [("srdata", {}), ("srdata preload", {"preload": True})]
        variants.append(("srdata float32 transfer", {"worker_transfer": "float32"}))
        if zarrs_ok and nw == 0:  # forked workers hang once the parent process has used zarrs
            variants.append(("srdata zarrs codecs", {"_zarrs": True}))
        for name, opts in variants:
            opts = dict(opts)
            with _zarrs_pipeline(opts.pop("_zarrs", False)):
                rows.extend(_time_srdata(name, store, args, nw, ctx, opts))
    base0 = {r["workers"]: r["samples_per_s"] for r in rows if r["loader"].startswith("baseline")}
    print(
        f"\nscale x{args.scale}, h_size {args.h_size}, batch {args.batch_size}, {len(pairs)} windows, "
        f"{args.marker}; medians of {args.repeats}"
    )
    print(
        f"{'loader':44s} {'workers':>7s} {'samples/s':>10s} {'MB/s':>8s} "
        f"{'× base':>7s} {'decoded B/smp':>15s}"
    )
    for r in rows:
        r["speedup_vs_baseline"] = r["samples_per_s"] / base0[r["workers"]]
        dec = "" if r["bytes_decoded_per_sample"] is None else f"{r['bytes_decoded_per_sample']:.0f}"
        print(
            f"{r['loader']:44s} {r['workers']:7d} {r['samples_per_s']:10.0f} {r['mb_per_s']:8.1f} "
            f"{r['speedup_vs_baseline']:7.1f} {dec:>15s}"
        )
    result = {
        "benchmark": "loader",
        "date": datetime.datetime.now(datetime.timezone.utc).isoformat(),
        "machine": _machine(),
        "params": {
            **common,
            "marker": args.marker,
            "windows": len(pairs),
            "samples": args.samples,
            "baseline_samples": args.baseline_samples,
            "repeats": args.repeats,
            "workers": workers,
            "store": "synthetic 3 x 2048² tiles, chunk 512" if args.store is None else args.store,
            "mb_per_s": "float32 LR+HR bytes delivered per second",
        },
        "zarrs": zarrs_ok,
        "uptime_before": uptime0,
        "uptime_after": _uptime(),
        "rows": rows,
    }
    os.makedirs(os.path.dirname(args.out), exist_ok=True)
    with open(args.out, "w") as fh:
        json.dump(result, fh, indent=2)
    print(f"wrote {args.out}")
    tmp.cleanup()
    return result


def _time_srdata(
    name: str, store: str, args: argparse.Namespace, nw: int, ctx: str | None, opts: dict
) -> list:
    """Cold: first epoch of `repeats` fresh loaders (new workers, empty caches, worker start-up
    included). Warm: `repeats` further epochs of the last one (its caches filled)."""
    from srcaco2.srdata.loader import make_loader

    cold, warm, cold_bps = [], [], []
    for r in range(args.repeats):
        ld = make_loader(
            store,
            "train",
            args.scale,
            args.marker,
            args.batch_size,
            args.h_size,
            num_workers=nw,
            samples_per_epoch=args.samples,
            multiprocessing_context=ctx,
            **opts,
        )
        cold.append(_time_epoch(ld))
        cold_bps.append(ld.bytes_decoded_per_sample)
        if r + 1 < args.repeats:
            ld.close()
    for r in range(args.repeats):
        ld.set_epoch(r + 1)
        before, seen = ld.bytes_decoded, ld.samples_seen
        warm.append(_time_epoch(ld))
    bps = (ld.bytes_decoded - before) / max(ld.samples_seen - seen, 1)
    ld.close()
    return [
        _row(f"{name} cold (first epoch)", nw, cold, statistics.median(cold_bps)),
        _row(f"{name} warm (cache filled)", nw, warm, bps),
    ]


@contextlib.contextmanager
def _zarrs_pipeline(on: bool):
    """zarr's codec pipeline set to the `zarrs` one (Rust) inside the block, when `on`."""
    if not on:
        yield
        return
    import zarr

    with zarr.config.set({"codec_pipeline.path": "zarrs.ZarrsCodecPipeline"}):
        yield


def _row(name: str, workers: int, runs: list[tuple[float, int, int]], decoded: float | None) -> dict:
    sps = statistics.median(n / t for t, n, _ in runs)
    mbs = statistics.median(b / t / 1e6 for t, _, b in runs)
    return {
        "loader": name,
        "workers": workers,
        "samples_per_s": sps,
        "mb_per_s": mbs,
        "bytes_decoded_per_sample": decoded,
        "runs": [{"seconds": t, "samples": n} for t, n, _ in runs],
    }


if __name__ == "__main__":
    main()
