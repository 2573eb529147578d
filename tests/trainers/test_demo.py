"""`srtrain demo` end to end (synth → registered store → fit → eval → tables → real sample → report),
and the report's pieces."""

from __future__ import annotations

import json
import os
import re

import pytest
from click.testing import CliRunner

SMALL = ["--tiles", "3", "--hr-size", "1280", "--epochs", "2", "--samples-per-epoch", "48",
         "--set", "model.overrides.num_features=16", "--set", "model.overrides.num_trunk_layers=2",
         "--set", "eval.every=1.0", "--set", "eval.val_windows=2"]  # fmt: skip


@pytest.mark.slow
def test_reduced_demo_end_to_end(tmp_path, monkeypatch):
    from srcaco2.cli.srtrain import main

    monkeypatch.chdir(tmp_path)  # a relative --out, as `make demo` passes it
    res = CliRunner().invoke(main, ["demo", "--out", "runs/demo", *SMALL])
    assert res.exit_code == 0, res.output
    out = tmp_path / "runs" / "demo"
    report = (out / "report.md").read_text()
    assert "## Synthetic test split: model vs bicubic" in report and "| Bicubic |" in report
    assert "| VDSR |" in report and "Table 4 layout" in report and "Table 5 layout" in report
    # every image link resolves relative to the report's own folder (any Markdown viewer)
    links = re.findall(r"!\[[^\]]*\]\(([^)]+)\)", report)
    assert links and not [p for p in links if os.path.isabs(p) or p.startswith("runs/")], links
    monkeypatch.chdir(out.parent.parent.parent)  # the links must not depend on the working directory
    assert all((out / p).is_file() and (out / p).stat().st_size > 1000 for p in links), links
    assert "curves.png" in links and "panels/real_sample_x4.png" in links
    assert len([p for p in links if p.startswith("panels/tile")]) == 3
    # the real sample, scored honestly: both numbers in the report, the verdict matches them
    real = json.loads((out / "real_sample.json").read_text())
    assert real["scale"] == 4 and real["shift"] == [1, -7]  # the sample's documented TV-L1 shift
    assert abs(real["bicubic"]["roi_psnr"] - 31.2) < 0.1  # the sample's documented registered bicubic
    assert f"| {real['bicubic']['roi_psnr']:.2f} |" in report
    assert f"| {real['sr']['roi_psnr']:.2f} |" in report
    beats = real["sr"]["roi_psnr"] > real["bicubic"]["roi_psnr"]
    assert ("does NOT beat bicubic on the real sample" in report) == (not beats)
    # the build registered CELL2 x4 (the synthetic LR scans are offset)
    assert "registered by the build" in report
    for name in ("vdsr", "bicubic"):
        summary = json.loads((out / "eval" / name / "summary.json").read_text())
        assert summary["split"] == "test" and summary["scale"] == 4 and summary["n_windows"] >= 1
    assert (out / "tables" / "table4_roi.tex").exists() and (out / "run" / "best.pt").exists()
    m = re.search(r"ROI PSNR on the test split: vdsr ([\d.]+) dB, bicubic ([\d.]+) dB", res.output)
    assert m, res.output
    assert re.search(r"ROI PSNR on the real sample: vdsr ([\d.]+) dB, bicubic ([\d.]+) dB", res.output)
    # a second run reuses tiles and store (the build resumes) and retrains into the same folder
    res = CliRunner().invoke(main, ["demo", "--out", str(out), *SMALL])
    assert res.exit_code == 0, res.output


def test_report_links_are_relative_to_the_report(tmp_path, monkeypatch):
    """write_report turns absolute and cwd-relative image paths into links from the report's folder."""
    from PIL import Image

    from srcaco2.trainers.report import write_report

    monkeypatch.chdir(tmp_path)
    (tmp_path / "a" / "b" / "panels").mkdir(parents=True)
    Image.new("RGB", (4, 4)).save(tmp_path / "a" / "b" / "panels" / "p.png")
    Image.new("RGB", (4, 4)).save(tmp_path / "a" / "b" / "c.png")
    rep = write_report("a/b/report.md", title="t", what={"x": 1}, table_md="|a|\n|-|",
                       panels=["a/b/panels/p.png"],
                       images=[("curves", tmp_path / "a" / "b" / "c.png")])  # fmt: skip
    text = rep.read_text()
    assert "](panels/p.png)" in text and "](c.png)" in text


def test_real_sample_score_and_panel(tmp_path):
    """Bicubic as the 'model': both columns agree, and the figures are the sample's documented ones."""
    import numpy as np
    from PIL import Image

    from srcaco2.trainers.demo import score_real_sample

    real = score_real_sample("bicubic", 4, panel=tmp_path / "real.png", sr_label="bicubic-again")
    assert real["shift"] == [1, -7] and real["sr"] == real["bicubic"]
    assert abs(real["bicubic"]["roi_psnr"] - 31.22) < 0.05 and abs(real["bicubic"]["psnr"] - 34.63) < 0.05
    img = np.asarray(Image.open(real["panel"]))
    assert img.shape[1] >= 4 * 192 * 2 and img.shape[0] >= 2 * 192 * 2  # full-resolution crops, zoomed x2


def test_training_curves_png(tmp_path):
    import numpy as np
    from PIL import Image

    from srcaco2.trainers.report import write_training_curves

    run = tmp_path / "run"
    run.mkdir()
    (run / "metrics.csv").write_text("step,epoch,loss\n" + "".join(f"{i},0,{1 / i}\n" for i in range(1, 30)))
    (run / "val.csv").write_text("step,epoch,roi_psnr\n10,0,25.0\n20,0,27.5\n")
    png = write_training_curves(run, tmp_path / "curves.png", bicubic_roi_psnr=26.0)
    img = Image.open(png).convert("RGB")
    assert img.size == (920, 320)
    px = {tuple(v) for v in np.asarray(img).reshape(-1, 3).tolist()}
    assert (200, 0, 0) in px and (20, 120, 20) in px and (20, 20, 160) in px  # bicubic line, val curve, loss
