"""safetensors export and read-back; bad export / read-back input: one line, exit != 0, nothing written."""

from __future__ import annotations

import json
import zipfile
from pathlib import Path

import numpy as np
import pytest
import torch
import yaml
from click.testing import CliRunner


def _srtrain(*args: object):
    from srcaco2.cli.srtrain import main

    return CliRunner().invoke(main, [str(a) for a in args])


def _refused(res, *words: str) -> str:
    """Non-zero exit, no traceback, ONE error line holding every word; returns that line."""
    assert res.exit_code != 0, res.output
    assert "Traceback" not in res.output
    assert res.exception is None or isinstance(res.exception, SystemExit), repr(res.exception)
    lines = [ln for ln in res.output.splitlines() if ln.startswith("Error")]
    assert len(lines) == 1, res.output
    for w in words:
        assert w in lines[0], (w, lines[0])
    return lines[0]


def test_safetensors_holds_weights_and_facts_and_reads_back(make_checkpoint, tmp_path: Path) -> None:
    """The header holds method / scale / marker / overrides; load_pretrained, --init-from
    (load_init_weights) and `predict --checkpoint` read the file alone, with the same weights."""
    from safetensors import safe_open

    from srcaco2.trainers.checkpoints import load_init_weights, load_pretrained
    from srcaco2.trainers.models import build_model, model_info

    ckpt = make_checkpoint("drrn")
    out = tmp_path / "drrn.safetensors"
    res = _srtrain("export", "--checkpoint", ckpt.parent, "--output", out)  # the run directory
    assert res.exit_code == 0, res.output
    with safe_open(str(out), framework="pt") as fh:
        meta = fh.metadata()
    ov = model_info("drrn").tiny_overrides(4)
    assert json.loads(meta["method"]) == "drrn" and json.loads(meta["scale"]) == 4
    assert json.loads(meta["marker"]) == "CELL2" and json.loads(meta["overrides"]) == ov
    assert json.loads(meta["srcaco2"])["step"] == 7
    ref, _ = load_pretrained(ckpt)
    model, info = load_pretrained(out)
    assert info["format"] == "safetensors" and info["overrides"] == ov and info["marker"] == "CELL2"
    assert all(torch.equal(v, ref.state_dict()[k]) for k, v in model.state_dict().items())
    fresh = build_model("drrn", 4, **ov)
    assert load_init_weights(fresh, out, method="drrn", scale=4)["format"] == "safetensors"
    assert all(torch.equal(v, ref.state_dict()[k]) for k, v in fresh.state_dict().items())
    # re-export of an export keeps the facts
    again = tmp_path / "again.safetensors"
    assert _srtrain("export", "--checkpoint", out, "--output", again).exit_code == 0
    with safe_open(str(again), framework="pt") as fh:
        assert json.loads(fh.metadata()["srcaco2"])["step"] == 7


def test_predict_with_a_safetensors_checkpoint(make_checkpoint, tmp_path: Path) -> None:
    import tifffile

    from srcaco2.srdata.real_sample import REAL_SAMPLE_DIR

    ckpt = make_checkpoint("srcnn")
    out = tmp_path / "m.safetensors"
    assert _srtrain("export", "--checkpoint", ckpt, "--output", out).exit_code == 0
    tifffile.imwrite(tmp_path / "lr.tif", tifffile.imread(REAL_SAMPLE_DIR / "div4.tif")[:40, :44])
    got = {}
    for name, source in (("st", out), ("pt", ckpt)):
        res = _srtrain("predict", "--input", tmp_path / "lr.tif", "--checkpoint", source, "--device", "cpu",
                       "--output", tmp_path / f"{name}.tif")  # fmt: skip
        assert res.exit_code == 0, res.output
        got[name] = tifffile.imread(tmp_path / f"{name}.tif")
    assert np.array_equal(got["st"], got["pt"]) and got["st"].shape == (160, 176)


def test_a_foreign_safetensors_needs_method_and_scale(make_checkpoint, tmp_path: Path) -> None:
    from safetensors.torch import save_file

    from srcaco2.trainers.checkpoints import CheckpointError, load_pretrained

    ckpt = make_checkpoint("vdsr")
    ref, info = load_pretrained(ckpt)
    bare = tmp_path / "weights.safetensors"
    save_file({k: v.contiguous() for k, v in ref.state_dict().items()}, str(bare))
    with pytest.raises(CheckpointError, match="cannot tell which network"):
        load_pretrained(bare)
    with pytest.raises(CheckpointError, match="does not fit vdsr"):  # the benchmark's widths, not tiny
        load_pretrained(bare, method="vdsr", scale=4)


def test_existing_output_unknown_format_and_truncated_input_are_refused(
    make_checkpoint, tmp_path: Path
) -> None:
    ckpt = make_checkpoint("vdsr")
    existing = tmp_path / "m.safetensors"
    existing.write_bytes(b"keep me")
    _refused(_srtrain("export", "--checkpoint", ckpt, "--output", existing), "exists", "--overwrite")
    assert existing.read_bytes() == b"keep me"
    _refused(_srtrain("export", "--checkpoint", ckpt, "--output", tmp_path / "m.onnx"), "m.onnx", ".zip")
    res = _srtrain("export", "--checkpoint", ckpt, "--output", tmp_path / "m.zip", "--format", "onnx")
    assert res.exit_code == 2 and "onnx" in res.output  # click's choice error
    res = _srtrain("export", "--checkpoint", ckpt, "--output", tmp_path / "m.zip", "--format", "safetensors")
    _refused(res, "--format safetensors", ".zip")
    cut = tmp_path / "cut.pt"
    cut.write_bytes(ckpt.read_bytes()[: ckpt.stat().st_size // 2])
    _refused(
        _srtrain("export", "--checkpoint", cut, "--output", tmp_path / "x.safetensors"), "cut.pt", "truncated"
    )
    foreign = tmp_path / "notes.txt"
    foreign.write_text("not weights")
    _refused(_srtrain("export", "--checkpoint", foreign, "--output", tmp_path / "y.zip"), "notes.txt")
    assert sorted(p.name for p in tmp_path.iterdir()) == sorted(["cut.pt", "m.safetensors", "notes.txt",
                                                                 ckpt.parent.name])  # fmt: skip


def test_truncated_exports_and_a_foreign_package_are_refused_by_predict(
    make_checkpoint, tmp_path: Path
) -> None:
    import tifffile

    from srcaco2.srdata.real_sample import REAL_SAMPLE_DIR

    ckpt = make_checkpoint("vdsr")
    tifffile.imwrite(tmp_path / "lr.tif", tifffile.imread(REAL_SAMPLE_DIR / "div4.tif")[:32, :32])
    st = tmp_path / "m.safetensors"
    assert _srtrain("export", "--checkpoint", ckpt, "--output", st).exit_code == 0
    cut = tmp_path / "cut.safetensors"
    cut.write_bytes(st.read_bytes()[:-100])
    sr = tmp_path / "sr.tif"

    def predict(source: Path):
        return _srtrain("predict", "--input", tmp_path / "lr.tif", "--checkpoint", source, "--output", sr)

    _refused(predict(cut), "cut.safetensors", "truncated")
    # a package another tool wrote: a zip with an rdf and no config.srcaco2
    pkg = tmp_path / "foreign.zip"
    with zipfile.ZipFile(pkg, "w") as zf:
        zf.writestr("rdf.yaml", yaml.safe_dump({"type": "model", "name": "StarDist nuclei", "config": {}}))
        zf.writestr("weights.pt", b"")
    _refused(predict(pkg), "foreign.zip", "StarDist nuclei", "did not export", "bioimageio.core")
    half = tmp_path / "half.zip"
    half.write_bytes(pkg.read_bytes()[:40])
    _refused(predict(half), "half.zip", "truncated")
    assert not sr.exists()


def test_a_package_failing_its_own_test_leaves_nothing(tmp_path: Path) -> None:
    """All-zero weights give an all-zero output, which bioimageio's test refuses: the export says so in
    one line and leaves neither the package nor its temporary folder; --overwrite then replaces a file."""
    pytest.importorskip("bioimageio.core")
    from srcaco2.trainers.checkpoints import save_checkpoint
    from srcaco2.trainers.models import build_model, model_info

    ov = model_info("edsr_liif").tiny_overrides(4)
    net = build_model("edsr_liif", 4, **ov)
    zero = {k: torch.zeros_like(v) for k, v in net.state_dict().items()}
    meta = {"method": "edsr_liif", "scale": 4, "marker": "CELL1", "overrides": ov}
    (tmp_path / "run").mkdir()
    ckpt = save_checkpoint(tmp_path / "run" / "best.pt", model_state=zero, config={}, meta=meta)
    out = tmp_path / "out"
    out.mkdir()
    (out / "m.zip").write_bytes(b"old")
    _refused(_srtrain("export", "--checkpoint", ckpt, "--output", out / "m.zip", "--overwrite"),
             "fails bioimageio test")  # fmt: skip
    assert sorted(p.name for p in out.iterdir()) == ["m.zip"] and (out / "m.zip").read_bytes() == b"old"
    res = _srtrain("export", "--checkpoint", ckpt, "--output", out / "m.zip", "--overwrite", "--no-test")
    assert res.exit_code == 0, res.output
    assert zipfile.is_zipfile(out / "m.zip") and sorted(p.name for p in out.iterdir()) == ["m.zip"]


def test_halo_option_is_declared_or_refused_in_one_line(make_checkpoint, tmp_path: Path) -> None:
    """--halo sets the package's halo (LR px x scale); a halo no test input can hold, or one for a global
    network, is refused before anything is written."""
    pytest.importorskip("bioimageio.core")
    vdsr = make_checkpoint("vdsr")
    out = tmp_path / "v.zip"
    res = _srtrain("export", "--checkpoint", vdsr, "--output", out, "--halo", "5", "--no-test", "--json")
    assert res.exit_code == 0, res.output
    assert json.loads(res.stdout)["halo"] == 20 and json.loads(res.stdout)["min_input"] == 11
    _refused(_srtrain("export", "--checkpoint", vdsr, "--output", tmp_path / "w.zip", "--halo", "70"),
             "--halo 70", "--halo 63 or less")  # fmt: skip
    _refused(_srtrain("export", "--checkpoint", make_checkpoint("dfcan"), "--output", tmp_path / "d.zip",
                      "--halo", "4"), "global", "whole image")  # fmt: skip
    assert sorted(p.name for p in tmp_path.iterdir() if p.suffix == ".zip") == ["v.zip"]
    assert not [p for p in tmp_path.iterdir() if p.name.startswith(".")]
