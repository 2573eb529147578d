"""End-to-end: a reduced `srtrain demo` (synth → store → fit → eval → tables → report)."""

from __future__ import annotations

import json
import re

import pytest
from click.testing import CliRunner

SMALL = ["--tiles", "3", "--hr-size", "1280", "--epochs", "2", "--samples-per-epoch", "48",
         "--set", "model.overrides.num_features=16", "--set", "model.overrides.num_trunk_layers=2",
         "--set", "eval.every=1.0", "--set", "eval.val_windows=2"]  # fmt: skip


@pytest.mark.slow
def test_reduced_demo_end_to_end(tmp_path):
    from cli.srtrain import main

    out = tmp_path / "demo"
    res = CliRunner().invoke(main, ["demo", "--out", str(out), *SMALL])
    assert res.exit_code == 0, res.output
    report = (out / "report.md").read_text()
    assert "## Results (test split)" in report and "| Bicubic |" in report and "| VDSR |" in report
    panels = re.findall(r"!\[[^\]]*\]\((panels/[^)]+\.png)\)", report)
    assert panels and all((out / p).stat().st_size > 1000 for p in panels)
    for name in ("vdsr", "bicubic"):
        summary = json.loads((out / "eval" / name / "summary.json").read_text())
        assert summary["split"] == "test" and summary["scale"] == 4 and summary["n_windows"] >= 1
    assert (out / "tables" / "table4_roi.tex").exists() and (out / "run" / "best.pt").exists()
    m = re.search(r"ROI PSNR on the test split: vdsr ([\d.]+) dB, bicubic ([\d.]+) dB", res.output)
    assert m, res.output
    # a second run reuses tiles and store (the build resumes) and retrains into the same folder
    res = CliRunner().invoke(main, ["demo", "--out", str(out), *SMALL])
    assert res.exit_code == 0, res.output
