"""Tables 4/5 from several synthetic `srtrain eval` outputs: layout, means, bold, formats."""

from __future__ import annotations

import csv
import json

import pytest
from click.testing import CliRunner

from srcaco2.trainers.evaluate import EvalResult, read_eval, write_eval
from srcaco2.trainers.tables import build_table, render_markdown, write_tables


def _write(tmp_path, method, scale, marker, base):
    metrics = {"psnr": base, "nrmse": 1.0 / base, "ssim": base / 100, "roi_psnr": base - 5,
               "roi_nrmse": 2.0 / base, "roi_ssim": (base - 5) / 100}  # fmt: skip
    meta = {
        "method": method,
        "scale": scale,
        "marker": marker,
        "split": "test",
        "store": "s.zarr",
        "n_windows": 2,
    }
    rows = [{"tile": 9, "window": i, "y0": 0, "x0": 256 * i, **metrics} for i in range(2)]
    d = tmp_path / f"{method}_x{scale}_{marker}"
    write_eval(d, EvalResult(rows=rows, summary=metrics, meta=meta))
    return d


@pytest.fixture
def evals(tmp_path):
    dirs = []
    for method, off in (("bicubic", 30.0), ("vdsr", 32.0), ("swinir", 31.0), ("prosr", 33.0)):
        for scale in (2, 4):
            for k, marker in enumerate(("CELL0", "CELL1", "CELL2")):
                dirs.append(_write(tmp_path, method, scale, marker, off + k - scale))
    return dirs


def test_layout_means_and_bold(evals):
    t = build_table([read_eval(d) for d in evals], kind="roi")
    assert [r[1] for r in t.rows] == ["bicubic"] * 2 + ["vdsr"] * 2 + ["swinir"] * 2 + ["prosr"] * 2
    assert [r[0] for r in t.rows][:4] == ["bicubic", "bicubic", "pre-upsampling", "pre-upsampling"]
    v = t.values[("vdsr", 2)]
    assert v[("psnr", "CELL1")] == pytest.approx(32.0 + 1 - 2 - 5)
    assert v[("psnr", "Mean")] == pytest.approx((25 + 26 + 27) / 3)
    # best per scale: ProSR has the highest PSNR and lowest NRMSE at both scales
    assert t.best[(2, "psnr", "Mean")] == t.values[("prosr", 2)][("psnr", "Mean")]
    assert t.best[(4, "nrmse", "CELL0")] == t.values[("prosr", 4)][("nrmse", "CELL0")]
    md = render_markdown(t)
    prosr_line = next(line for line in md.splitlines() if "ProSR" in line and "×2" in line)
    bic_line = next(line for line in md.splitlines() if "Bicubic" in line and "×2" in line)
    assert prosr_line.count("**") == 24 and "**" not in bic_line.replace("| Bicubic |", "")
    assert "Iterative" not in md and "Progressive" in md and "Post-upsampling" in md


def test_write_all_formats_and_cli(evals, tmp_path):
    from srcaco2.cli.srtrain import main

    out = tmp_path / "tables"
    res = CliRunner().invoke(main, ["table", *map(str, evals), "--out", str(out)])
    assert res.exit_code == 0, res.output
    for stem in ("table4_roi", "table5_full"):
        assert (out / f"{stem}.md").exists() and (out / f"{stem}.tex").exists()
        rows = list(csv.DictReader((out / f"{stem}.csv").open()))
        assert len(rows) == 8 and rows[0]["method"] == "bicubic"
    full = list(csv.DictReader((out / "table5_full.csv").open()))
    assert float(full[2]["psnr_CELL2"]) == pytest.approx(32.0 + 2 - 2)
    tex = (out / "table4_roi.tex").read_text()
    assert r"\textbf{" in tex and r"\midrule" in tex and "ProSR" in tex
    assert "ProSR" in res.output  # the Markdown table is echoed to stdout


def test_duplicates_and_mixed_splits_are_refused(evals, tmp_path):
    summaries = [read_eval(d) for d in evals]
    with pytest.raises(ValueError, match="two evaluations of vdsr x2 CELL0"):
        build_table(summaries + [summaries[6]], kind="roi")
    other = dict(summaries[0], split="val", method="drrn")
    with pytest.raises(ValueError, match="different splits"):
        build_table(summaries + [other], kind="full")
    with pytest.raises(ValueError, match="no evaluation summaries"):
        write_tables([], tmp_path / "t")
    (tmp_path / "notaneval").mkdir()
    with pytest.raises(FileNotFoundError, match="not an `srtrain eval` output"):
        read_eval(tmp_path / "notaneval")
    (tmp_path / "x.json").write_text(json.dumps({"method": "a"}))
    with pytest.raises(ValueError, match="has no 'scale'"):
        read_eval(tmp_path / "x.json")
