"""The architecture file of a package builds every network with torch alone (srcaco2 not importable)."""

from __future__ import annotations

import json
import os
import subprocess
import sys
from pathlib import Path

import numpy as np
import pytest
import torch

from srcaco2.trainers.export.standalone_source import ENTRY_POINT, standalone_source, vendored_modules
from srcaco2.trainers.models import build_model, model_info, model_names

_CHILD = r"""
import importlib.abc, importlib.util, json, sys
import numpy as np, torch

ENTRY = sys.argv[2]
torch.set_num_threads(1)  # the parent computes its reference on one thread too: same summation order

class _NoSrcaco2(importlib.abc.MetaPathFinder):
    def find_spec(self, name, path=None, target=None):
        if name == "srcaco2" or name.startswith("srcaco2."):
            raise ImportError("srcaco2 is blocked in this process")
        return None

sys.meta_path.insert(0, _NoSrcaco2())
try:
    import srcaco2  # noqa: F401
    raise SystemExit("srcaco2 was importable")
except ImportError:
    pass
for job in json.loads(sys.argv[1]):
    spec = importlib.util.spec_from_file_location("arch_" + job["name"], job["file"])
    mod = importlib.util.module_from_spec(spec)
    spec.loader.exec_module(mod)
    net = getattr(mod, ENTRY)(job["scale"], **job["overrides"])
    net.load_state_dict(torch.load(job["weights"], weights_only=True), strict=True)
    x = torch.from_numpy(np.load(job["input"]))
    torch.manual_seed(1)
    with torch.no_grad():
        np.save(job["output"], net(x).numpy())
    assert not any(k.startswith("srcaco2") for k in sys.modules), "srcaco2 leaked in"
"""


def test_every_network_runs_from_its_file_without_srcaco2(tmp_path: Path) -> None:
    """All registered networks x4 (tiny, seeded): the generated file, imported where srcaco2 cannot be,
    loads our state_dict strictly and gives our model's output bit for bit."""
    jobs, ours = [], {}
    threads = torch.get_num_threads()
    torch.set_num_threads(1)  # as the child: bit-for-bit needs one summation order
    try:
        _references(jobs, ours, tmp_path)
    finally:
        torch.set_num_threads(threads)
    env = {k: v for k, v in os.environ.items() if k != "PYTHONPATH"}
    res = subprocess.run([sys.executable, "-c", _CHILD, json.dumps(jobs), ENTRY_POINT], env=env, cwd=tmp_path,
                         capture_output=True, text=True, timeout=600)  # fmt: skip
    assert res.returncode == 0, res.stderr[-3000:]
    for name, ref in ours.items():
        got = np.load(tmp_path / f"{name}.out.npy")
        assert got.shape == ref.shape and np.array_equal(got, ref), name


def _references(jobs: list, ours: dict, tmp_path: Path) -> None:
    for name in model_names():
        info = model_info(name)
        ov = info.tiny_overrides(4)
        torch.manual_seed(0)
        net = build_model(name, 4, **ov).eval()
        side = max(20, info.min_input_size(ov, 4))
        side = -(-side // info.input_grid) * info.input_grid
        x = torch.rand(1, 1, side, side + info.input_grid, generator=torch.Generator().manual_seed(2))
        torch.manual_seed(0)  # the file's forward runs under seed 0 (NLSN draws random rotations)
        with torch.no_grad():
            ours[name] = net(x).numpy()
        base = tmp_path / name
        (base.with_suffix(".py")).write_text(standalone_source(name), encoding="utf-8")
        torch.save(net.state_dict(), base.with_suffix(".pt"))
        np.save(base.with_suffix(".in.npy"), x.numpy())
        jobs.append({"name": name, "file": str(base.with_suffix(".py")), "scale": 4, "overrides": ov,
                     "weights": str(base.with_suffix(".pt")), "input": str(base.with_suffix(".in.npy")),
                     "output": str(base.with_suffix(".out.npy"))})  # fmt: skip


def test_vendored_modules_come_dependencies_first_and_registry_is_a_stand_in() -> None:
    mods = [m for m, _, _ in vendored_modules("grl")]
    assert mods.index("srcaco2.trainers.models.swinir") < mods.index("srcaco2.trainers.models._grl_blocks")
    assert mods[-1] == "srcaco2.trainers.models.grl"
    sources = dict((m, src) for m, _, src in vendored_modules("grl"))
    assert "def register_model(name, **facts)" in sources["srcaco2.trainers.models.registry"]
    assert "triton" not in sources["srcaco2.kernels.pixel_shuffle"]


def test_an_import_without_a_stand_in_is_refused(monkeypatch: pytest.MonkeyPatch) -> None:
    import srcaco2.trainers.export.standalone_source as ss

    with pytest.raises(ValueError, match="stand-in"):
        ss._short("srcaco2.srdata.store")
