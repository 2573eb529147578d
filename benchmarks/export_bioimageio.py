"""Every network of the registry as a bioimage.io package: does bioimageio.core accept and run it?

For each network at one scale (x4 by default), tiny widths (`ModelInfo.tiny_overrides`) with seeded
weights fitted for a few steps towards bicubic (random tiny weights of some networks output ~0,
which bioimageio refuses as a test tensor), saved as a checkpoint of ours, it runs
`srcaco2.trainers.export.api.export_model` (bioimageio.core's ``test_model`` inside) and records:

* the test status, the weight formats (torchscript where tracing is exact), halo and minimum input;
* bioimageio.core's whole-image prediction of a 64 x 72 real-sample crop against the toolkit's
  (``load_pretrained(M.zip)`` + `predict_tiled`, as ``srtrain predict --input``), the maximum
  difference inside and in the border band of width halo (where consumers mirror-pad);
* bioimageio.core's tiled prediction (smallest blocks) against its whole-image one;
* the export time.

JSON goes to ``benchmarks/results/export_bioimageio_x<scale>.json``.

Run: ``python -m srcaco2.benchmarks.export_bioimageio [--methods vdsr,swinir] [--scale 4]``
(``BIOIMAGEIO_PERFORM_IO_CHECKS=false`` is set: nothing is downloaded).
"""

from __future__ import annotations

import argparse
import json
import os
import platform
import tempfile
import time
from pathlib import Path
from typing import Any

import numpy as np

os.environ.setdefault("BIOIMAGEIO_PERFORM_IO_CHECKS", "false")

RESULTS = Path(__file__).parent / "results"


def fit_briefly(net: Any, scale: int, steps: int = 25) -> None:
    """A few Adam steps towards bicubic on a real-sample crop: random tiny weights of some networks
    output ~0 everywhere, which bioimageio's test refuses as a test tensor (and tests nothing)."""
    import torch
    import torch.nn.functional as F

    from srcaco2.srdata.real_sample import load_real_sample

    lr = torch.from_numpy(load_real_sample()[scale][:24, :24].astype(np.float32) / 255.0)[None, None]
    target = F.interpolate(lr, scale_factor=scale, mode="bicubic", align_corners=False)
    opt = torch.optim.Adam(net.parameters(), lr=2e-3)
    net.train()
    for _ in range(steps):
        out = net(lr)
        out = out if isinstance(out, torch.Tensor) else out[-1]
        loss = (out - target).abs().mean()
        opt.zero_grad()
        loss.backward()
        opt.step()
    net.eval()


def _bio_predict(package: Path, lr: np.ndarray, block: int | None = None) -> np.ndarray:
    from bioimageio.core import load_model_description, predict

    kwargs = {} if block is None else {"blocksize_parameter": block}
    out = predict(model=load_model_description(package), inputs={"lr": lr[None, None]}, **kwargs)
    return np.asarray(out.members["sr"].data.values)[0, 0]


def run_one(method: str, scale: int, work: Path) -> dict[str, Any]:
    """Export one tiny network and measure its package (see the module docstring)."""
    import torch

    from srcaco2.srdata.real_sample import load_real_sample
    from srcaco2.trainers.checkpoints import load_pretrained, save_checkpoint
    from srcaco2.trainers.export.api import export_model
    from srcaco2.trainers.models import build_model, model_info
    from srcaco2.trainers.predict import predict_tiled

    ov = model_info(method).tiny_overrides(scale)
    torch.manual_seed(0)
    net = build_model(method, scale, **ov)
    fit_briefly(net, scale)
    (work / method).mkdir()
    meta = {"method": method, "scale": scale, "marker": "CELL2", "overrides": ov}
    ckpt = save_checkpoint(work / method / "best.pt", model_state=net.state_dict(), config={}, meta=meta)
    pkg = work / f"{method}.zip"
    t0 = time.perf_counter()
    try:
        out = export_model(ckpt, pkg)
    except Exception as exc:  # recorded, the other networks still run
        return {"method": method, "test": "failed", "error": str(exc).splitlines()[0][:300]}
    keys = ("test", "weights", "halo", "min_input", "step", "global", "measured_diff")
    row: dict[str, Any] = {"method": method, "export_s": round(time.perf_counter() - t0, 2)}
    row.update({k: out[k] for k in keys})
    lr = load_real_sample()[scale]
    step, low = out["step"], out["min_input"]
    hy, wx = (low + step * max(0, -(-(n - low) // step)) for n in (64, 72))  # valid sizes near 64 x 72
    lr = lr[:hy, :wx]
    model, _ = load_pretrained(pkg)
    ours = predict_tiled(model, lr[None], scale, halo=None)[0].astype(np.float64)  # srtrain predict
    whole = _bio_predict(pkg, lr)
    h = out["halo"]
    band = np.ones(whole.shape, bool)
    band[h : whole.shape[0] - h, h : whole.shape[1] - h] = False
    diff = np.abs(whole - ours)
    row["max_diff_vs_srtrain_inside"] = float(diff[~band].max()) if (~band).any() else None
    row["max_diff_vs_srtrain_border_band"] = float(diff[band].max()) if band.any() else 0.0
    if not out["global"]:
        row["max_diff_tiled_vs_whole"] = float(np.abs(_bio_predict(pkg, lr, block=1) - whole).max())
    return row


def main(argv: list[str] | None = None) -> None:
    import torch

    from srcaco2.trainers.models import model_names

    ap = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    ap.add_argument("--methods", help="comma-separated (default: the 16 networks)")
    ap.add_argument("--scale", type=int, default=4)
    args = ap.parse_args(argv)
    torch.set_num_threads(max(1, int(os.environ.get("OMP_NUM_THREADS", "2"))))
    methods = args.methods.split(",") if args.methods else [m for m in model_names() if m != "bicubic"]
    rows = []
    with tempfile.TemporaryDirectory() as tmp:
        for m in methods:
            row = run_one(m, args.scale, Path(tmp))
            print(json.dumps(row))
            rows.append(row)
    import bioimageio.core
    import bioimageio.spec
    import pydantic

    payload = {
        "scale": args.scale, "machine": platform.processor() or platform.machine(),
        "versions": {"bioimageio.core": bioimageio.core.__version__,
                     "bioimageio.spec": bioimageio.spec.__version__, "pydantic": pydantic.VERSION,
                     "torch": torch.__version__},
        "passed": sum(r.get("test") == "passed" for r in rows), "networks": len(rows), "rows": rows,
    }  # fmt: skip
    RESULTS.mkdir(exist_ok=True)
    path = RESULTS / f"export_bioimageio_x{args.scale}.json"
    path.write_text(json.dumps(payload, indent=2) + "\n")
    print(path)


if __name__ == "__main__":
    main()
