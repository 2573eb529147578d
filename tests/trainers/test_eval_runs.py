"""`srtrain eval-runs` over a fake tree of original runs (and one of ours) on the tiny trainer store.

The tree holds original run directories as the archive names them (``config_model.yml`` with the
fields `load_pretrained` reads, ``best-models/G-model.pth`` with random weights in the original key
layout, tiny configurations carried by the yml) for DBPN (a CNN), SwinIR (eval mirror padding),
SRFBN (multi-output) and NLSN (random draws in forward), and one run of ours (VDSR, ``best.pt``).
"""

from __future__ import annotations

import csv
import json
import os
import shutil
import signal
import subprocess
import sys
import time
from pathlib import Path

import pytest
import torch
from click.testing import CliRunner

from srcaco2.benchmarks.eval_runs import original_run_dir, write_original_run, write_our_run
from srcaco2.trainers.eval_runs import eval_runs
from srcaco2.trainers.run_discovery import discover_runs
from srcaco2.trainers.tables import DELTA_TOLERANCES, load_paper_tables

REPO = Path(__file__).resolve().parents[2]
ORIGINALS = ("dbpn", "swinir", "srfbn", "nlsn")


def _tree(root: Path) -> Path:
    for i, m in enumerate(ORIGINALS):
        write_original_run(root, m, 4, "CELL2", seed=i)
    write_our_run(root / "ours" / "vdsr_cell1", "vdsr", 4, "CELL1", seed=7)
    return root


@pytest.fixture(scope="module")
def tree(tmp_path_factory) -> Path:
    return _tree(tmp_path_factory.mktemp("tree") / "archive")


@pytest.fixture(scope="module")
def evaluated(tree, trainer_store, tmp_path_factory):
    """One uninterrupted `eval_runs` over the tree: (out dir, report)."""
    out = tmp_path_factory.mktemp("evaluated") / "out"
    report = eval_runs(tree, trainer_store, out, device="cpu")
    return out, report


def _files(d: Path) -> dict[str, bytes]:
    return {p.relative_to(d).as_posix(): p.read_bytes() for p in sorted(d.rglob("*")) if p.is_file()}


# --------------------------------------------------------------------------------------- discovery
def test_discovery_finds_runs_and_says_what_it_skips(tmp_path):
    root = _tree(tmp_path / "a")
    # an incomplete copy (yml only), a run without a validation yet, an unidentifiable run, a duplicate
    lonely = original_run_dir(root, "drrn", 2, "CELL0")
    lonely.mkdir(parents=True)
    (lonely / "config_model.yml").write_text("net_type: DRRN\nscale: 2\n")
    (root / "ours" / "young").mkdir(parents=True)
    for name in ("config.yaml", "last.pt"):
        (root / "ours" / "young" / name).write_text("x")
    odd = root / "misc" / "run_without_names"
    (odd / "best-models").mkdir(parents=True)
    (odd / "config_model.yml").write_text("lr: 0.1\n")
    torch.save({"w": torch.zeros(1)}, odd / "best-models" / "G-model.pth")
    write_our_run(root / "zz_second" / "vdsr", "vdsr", 4, "CELL1", seed=3)
    first, second = root / "ours" / "vdsr_cell1" / "best.pt", root / "zz_second" / "vdsr" / "best.pt"
    os.utime(first, (2e9, 2e9))  # the first in path order is the newest run of its cell
    os.utime(second, (1e9, 1e9))

    found = discover_runs(root)
    got = {(r.kind, r.method, r.scale, r.marker) for r in found.runs}
    assert got == {("original", m, 4, "CELL2") for m in ORIGINALS} | {("ours", "vdsr", 4, "CELL1")}
    vdsr = next(r for r in found.runs if r.method == "vdsr")
    assert vdsr.path == first  # --select latest: the newest is kept, whatever the path order
    nlsn = next(r for r in found.runs if r.method == "nlsn")
    assert nlsn.path == original_run_dir(root, "nlsn", 4, "CELL2") and nlsn.name == "nlsn_x4_CELL2"
    reasons = {s.path: s.reason for s in found.skipped}
    assert "no best-models/G-model.pth" in reasons[lonely]
    assert "last.pt but no best.pt" in reasons[root / "ours" / "young"]
    assert f"an older run than {first}" in reasons[second] and "--select all" in reasons[second]
    os.utime(second, (3e9, 3e9))  # now the second is the newest
    assert next(r for r in discover_runs(root).runs if r.method == "vdsr").path == second
    every = sorted((r.name, r.path) for r in discover_runs(root, select="all").runs if r.method == "vdsr")
    assert every == [("vdsr_x4_CELL1", second), ("vdsr_x4_CELL1.run2", first)]
    assert [b.path for b in found.broken] == [odd] and "cannot tell the method" in found.broken[0].reason

    picked = discover_runs(root, methods=["NLSN", "swinir"], markers=["CELL2"], scales=[4])
    assert sorted(r.method for r in picked.runs) == ["nlsn", "swinir"]
    assert any("not selected (--methods dbpn not asked)" in s.reason for s in picked.skipped)
    assert [r.method for r in discover_runs(root, markers=["CELL1"]).runs] == ["vdsr"]
    with pytest.raises(ValueError, match="unknown method"):
        discover_runs(root, methods=["swinIRR"])
    with pytest.raises(FileNotFoundError, match="does not exist"):
        discover_runs(tmp_path / "nowhere")


# --------------------------------------------------------------------------------------- evaluation
def test_outputs_layout_tables_and_report(evaluated, tree):
    out, report = evaluated
    assert not report.failed and {o.status for o in report.outcomes} == {"evaluated"}
    names = sorted(p.name for p in (out / "runs").iterdir())
    assert names == sorted([f"{m}_x4_CELL2" for m in ORIGINALS] + ["vdsr_x4_CELL1", "bicubic_x4_CELL1",
                                                                  "bicubic_x4_CELL2"])  # fmt: skip
    for stem in ("table4_roi", "table5_full", "table_frc"):
        for ext in ("md", "csv", "tex"):
            assert (out / "tables" / f"{stem}.{ext}").is_file()
    md = (out / "tables" / "table4_roi.md").read_text()
    order = [md.index(name) for name in ("Bicubic", "VDSR", "NLSN", "SwinIR", "DBPN", "SRFBN")]
    assert order == sorted(order)  # grouped by family as in the paper
    assert "Iterative up-and-down" in md and "Post-upsampling" in md
    delta = list(csv.DictReader((out / "tables" / "delta_paper.csv").open()))
    assert len(delta) == 2 * 3 * 7  # roi + full, 3 metrics, 7 (method, marker) cells; no Means
    paper = load_paper_tables()
    for row in delta:
        mine = json.loads((out / "runs" / f"{row['method']}_x4_{row['column']}" / "summary.json").read_text())
        key = ("roi_" if row["table"] == "roi" else "") + row["metric"]
        ref = paper[row["table"]][(row["method"], 4)][(row["metric"], row["column"])]
        assert float(row["ours"]) == mine["metrics"][key] and float(row["paper"]) == ref
        assert float(row["delta"]) == pytest.approx(mine["metrics"][key] - ref, abs=1e-12)
        assert row["beyond"] == str(int(abs(mine["metrics"][key] - ref) > DELTA_TOLERANCES[row["metric"]]))
    status = json.loads((out / "eval_runs.json").read_text())
    assert {r["status"] for r in status["runs"]} == {"done"} and len(status["runs"]) == 7
    assert status["runs"][0]["out"] == "runs/bicubic_x4_CELL1"


@pytest.mark.slow
def test_results_identical_to_separate_srtrain_eval_calls(evaluated, trainer_store, tmp_path):
    from srcaco2.cli.srtrain import main

    out, report = evaluated
    for job in report.jobs:
        e = job.entry
        args = ["eval", "--store", trainer_store, "--split", "test", "--marker", e.marker, "--scale",
                str(e.scale), "--device", "cpu", "--out", str(tmp_path / e.name)]  # fmt: skip
        args += ["--method", "bicubic"] if e.path is None else ["--checkpoint", str(e.path)]
        res = CliRunner().invoke(main, args)
        assert res.exit_code == 0, res.output
        for name in ("windows.csv", "summary.json"):
            assert (tmp_path / e.name / name).read_bytes() == (out / "runs" / e.name / name).read_bytes(), (
                e.name
            )


def test_rerun_keeps_complete_results_and_redoes_missing_ones(evaluated, tree, trainer_store, tmp_path):
    out, _ = evaluated
    work = tmp_path / "out"
    shutil.copytree(out, work)
    before = _files(work)
    (work / "runs" / "nlsn_x4_CELL2" / "summary.json").unlink()  # as if killed before its summary
    report = eval_runs(tree, trainer_store, work, device="cpu", methods=["nlsn", "dbpn"])
    status = {o.job.entry.name: o.status for o in report.outcomes}
    assert status == {"bicubic_x4_CELL2": "resumed", "nlsn_x4_CELL2": "evaluated", "dbpn_x4_CELL2": "resumed"}
    after = _files(work)
    assert after["runs/nlsn_x4_CELL2/summary.json"] == before["runs/nlsn_x4_CELL2/summary.json"]
    assert after["runs/nlsn_x4_CELL2/windows.csv"] == before["runs/nlsn_x4_CELL2/windows.csv"]


def _kill_tree(proc: subprocess.Popen) -> None:
    """SIGKILL the process group started for `proc` (it and every descendant), then reap it."""
    try:
        os.killpg(proc.pid, signal.SIGKILL)
    except ProcessLookupError:
        pass
    proc.wait(timeout=60)


@pytest.mark.slow
def test_sigkill_mid_way_then_rerun_gives_the_same_outputs(evaluated, tree, trainer_store, tmp_path):
    out, _ = evaluated
    work = tmp_path / "out"
    pythonpath = os.pathsep.join(filter(None, [str(REPO), os.environ.get("PYTHONPATH")]))
    env = dict(os.environ, PYTHONPATH=pythonpath, CUDA_VISIBLE_DEVICES="")
    cmd = [sys.executable, "-m", "srcaco2.cli.srtrain", "eval-runs", str(tree), "--store", trainer_store,
           "--out", str(work), "--device", "cpu"]  # fmt: skip
    proc = subprocess.Popen(cmd, env=env, cwd=REPO, start_new_session=True,
                            stdout=subprocess.DEVNULL, stderr=subprocess.DEVNULL)  # fmt: skip
    try:
        deadline = time.monotonic() + 300
        while time.monotonic() < deadline and proc.poll() is None:
            if len(list((work / "runs").glob("*/summary.json"))) >= 3:
                break
            time.sleep(0.05)
    finally:
        _kill_tree(proc)
    if proc.returncode != -signal.SIGKILL:
        pytest.skip(f"eval-runs ended ({proc.returncode}) before it could be killed")
    done = len(list((work / "runs").glob("*/summary.json")))
    if done == 7:
        pytest.skip("every run was finished before the kill")
    assert done >= 3 and not (work / "eval_runs.json").exists()
    from srcaco2.cli.srtrain import main

    # what a kill inside a write leaves: a temporary file beside the final name
    (work / "runs" / "nlsn_x4_CELL2").mkdir(parents=True, exist_ok=True)
    (work / "runs" / "nlsn_x4_CELL2" / ".summary.json.k1ll3d.tmp").write_text('{"half": ')
    args = ["eval-runs", str(tree), "--store", trainer_store, "--out", str(work), "--device", "cpu"]
    res = CliRunner().invoke(main, args)
    assert res.exit_code == 0, res.output
    assert f"{done} already complete (kept)" in res.output
    assert not [p for p in work.rglob("*.tmp")]
    ref, got = _files(out), _files(work)
    assert sorted(got) == sorted(ref) and [k for k in ref if ref[k] != got[k]] == []


def test_broken_runs_are_reported_and_the_others_go_on(trainer_store, tmp_path):
    from srcaco2.cli.srtrain import main

    root = tmp_path / "archive"
    good = write_our_run(root / "ours" / "vdsr", "vdsr", 2, "CELL0")
    trunc = write_original_run(root, "dbpn", 2, "CELL0")
    g = trunc / "best-models" / "G-model.pth"
    g.write_bytes(g.read_bytes()[:200])
    wrong = write_original_run(root, "srfbn", 2, "CELL0")
    torch.save(_dbpn_state(), wrong / "best-models" / "G-model.pth")  # another network's weights
    nan = write_original_run(root, "nlsn", 2, "CELL0")
    state = torch.load(nan / "best-models" / "G-model.pth", weights_only=True)
    nan_state = {k: v.fill_(float("nan")) if v.is_floating_point() else v for k, v in state.items()}
    torch.save(nan_state, nan / "best-models" / "G-model.pth")
    out = tmp_path / "out"
    args = ["eval-runs", str(root), "--store", trainer_store, "--out", str(out), "--device", "cpu",
            "--max-windows", "1"]  # fmt: skip
    res = CliRunner().invoke(main, args)
    assert res.exit_code == 1, res.output
    text = res.output
    assert f"FAILED {trunc}" in text and "truncated, corrupt" in text
    assert f"FAILED {wrong}" in text and "does not fit srfbn x2" in text
    assert f"FAILED {nan}" in text and "holds non-finite weights" in text  # refused at load
    assert "1 evaluated" not in text and "2 evaluated, 0 kept from before, 3 failed" in text
    for name in ("bicubic_x2_CELL0", "vdsr_x2_CELL0"):
        assert (out / "runs" / name / "summary.json").is_file()
    for name in ("dbpn_x2_CELL0", "srfbn_x2_CELL0", "nlsn_x2_CELL0"):
        assert not (out / "runs" / name / "summary.json").exists()
    status = {r["name"]: r for r in json.loads((out / "eval_runs.json").read_text())["runs"]}
    assert status["vdsr_x2_CELL0"]["status"] == "done" and status["vdsr_x2_CELL0"]["path"] == str(good)
    assert (
        status["nlsn_x2_CELL0"]["status"] == "failed"
        and "non-finite weights" in status["nlsn_x2_CELL0"]["reason"]
    )
    # the tables hold what could be evaluated
    assert "VDSR" in (out / "tables" / "table4_roi.md").read_text()


def _dbpn_state() -> dict:
    from srcaco2.trainers.models import build_model

    return build_model("dbpn", 2, base_filter=4, feat=8, num_stages=1).state_dict()


def test_cli_plan_dry_run_and_bad_input(tree, trainer_store, tmp_path):
    from srcaco2.cli.srtrain import main

    args = ["eval-runs", str(tree), "--store", trainer_store, "--out", str(tmp_path / "o"), "--dry-run"]
    res = CliRunner().invoke(main, [*args, "--methods", "nlsn,swinir"])
    assert res.exit_code == 0, res.output
    assert "found 2 run(s)" in res.output and "[todo] nlsn_x4_CELL2" in res.output
    assert "not selected" in res.output and not (tmp_path / "o").exists()
    res = CliRunner().invoke(main, ["eval-runs", str(tree), "--store", str(tmp_path / "none.zarr"),
                                    "--out", str(tmp_path / "o")])  # fmt: skip
    assert res.exit_code == 1 and "no such store" in res.output
    res = CliRunner().invoke(main, ["eval-runs", str(tree), "--store", trainer_store, "--out",
                                    str(tmp_path / "o"), "--scales", "x4"])  # fmt: skip
    assert res.exit_code == 1 and "--scales takes integers" in res.output
