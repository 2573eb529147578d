"""Checkpoints: our weights-only format (atomic save, validation) and the original's published weights."""

from __future__ import annotations

import errno
import os
from pathlib import Path

import pytest
import torch

from srcaco2.trainers.checkpoints import (
    CHECKPOINT_FORMAT,
    CheckpointError,
    load_checkpoint,
    load_pretrained,
    save_checkpoint,
)
from srcaco2.trainers.models import build_model

TINY = dict(num_features=8, num_trunk_layers=1)


def _meta(**kw) -> dict:
    return {
        "method": "vdsr",
        "scale": 2,
        "marker": "CELL1",
        "in_channels": 1,
        "overrides": dict(TINY),
        "step": 7,
        "epoch": 1,
        **kw,
    }


def _save_tiny(path: Path, **meta) -> tuple[torch.nn.Module, Path]:
    torch.manual_seed(0)
    model = build_model("vdsr", 2, **TINY)
    opt = torch.optim.Adam(model.parameters())
    model(torch.rand(1, 1, 4, 4)).mean().backward()
    opt.step()
    state = {"optimizer": opt.state_dict(), "rng": (1, [2, 3])}
    cfg = {"data": {"scale": 2}, "lr": 1e-4}
    out = save_checkpoint(
        path, model_state=model.state_dict(), config=cfg, meta=_meta(**meta), training_state=state
    )
    return model, out


def test_save_load_roundtrip_is_weights_only(tmp_path: Path) -> None:
    model, path = _save_tiny(tmp_path / "last.pt")
    raw = torch.load(path, weights_only=True)  # must not need anything but tensors and containers
    assert raw["format"] == CHECKPOINT_FORMAT and raw["version"] == 1
    ckpt = load_checkpoint(path)
    assert ckpt["meta"]["step"] == 7 and ckpt["meta"]["overrides"] == TINY
    assert ckpt["config"]["lr"] == 1e-4
    assert ckpt["training_state"]["rng"] == (1, [2, 3])
    assert ckpt["training_state"]["optimizer"]["param_groups"][0]["betas"] == (0.9, 0.999)
    for k, v in model.state_dict().items():
        assert torch.equal(ckpt["model"][k], v)
    assert [p.name for p in tmp_path.iterdir()] == ["last.pt"]  # no temp file left


def test_save_refuses_objects_that_weights_only_cannot_read(tmp_path: Path) -> None:
    model = build_model("vdsr", 2, **TINY)
    with pytest.raises(TypeError, match=r"config\['root'\].*PosixPath"):
        save_checkpoint(
            tmp_path / "a.pt", model_state=model.state_dict(), config={"root": tmp_path}, meta=_meta()
        )
    with pytest.raises(ValueError, match="method"):
        save_checkpoint(tmp_path / "a.pt", model_state=model.state_dict(), config={}, meta={"scale": 2})
    assert not list(tmp_path.iterdir())


def test_failed_write_keeps_previous_file_and_removes_temp(tmp_path: Path, monkeypatch) -> None:
    _, path = _save_tiny(tmp_path / "last.pt")
    before = path.read_bytes()

    def disk_full(obj, fh, *a, **k):
        fh.write(b"partial bytes")
        raise OSError(errno.ENOSPC, "No space left on device")

    monkeypatch.setattr(torch, "save", disk_full)
    with pytest.raises(OSError, match="No space"):
        save_checkpoint(path, model_state={}, config={}, meta=_meta())
    assert path.read_bytes() == before
    assert sorted(p.name for p in tmp_path.iterdir()) == ["last.pt"]


def test_load_pretrained_our_checkpoint(tmp_path: Path) -> None:
    model, path = _save_tiny(tmp_path / "best.pt")
    loaded, info = load_pretrained(path)
    assert not loaded.training
    assert (info["method"], info["scale"], info["marker"], info["format"]) == ("vdsr", 2, "CELL1", "srcaco2")
    lr = torch.rand(1, 1, 5, 6)
    with torch.no_grad():
        assert torch.equal(loaded(lr), model.eval()(lr))
    loaded2, _ = load_pretrained(tmp_path)  # the run directory holding best.pt
    assert type(loaded2) is type(loaded)


@pytest.mark.parametrize(
    "kw, what", [({"method": "srcnn"}, "method"), ({"scale": 4}, "scale"), ({"marker": "CELL2"}, "marker")]
)
def test_load_pretrained_refuses_another_method_scale_or_marker(tmp_path: Path, kw, what) -> None:
    _, path = _save_tiny(tmp_path / "best.pt")
    with pytest.raises(CheckpointError, match=f"{what}="):
        load_pretrained(path, **kw)


def _original_run(root: Path, net: str, scale: int, cell: str, yml: str | None = None) -> Path:
    run = (
        root
        / net
        / f"caco2_train_X_{scale}_in_{512 // scale}_out_512_cell_{cell}"
        / f"id_01_11_2024_23_29_32_039193__8492855-tsk_super-resolution-x_{scale}-netG_{net}-sd_0-l2_yes-ssim_yes"  # noqa: E501
    )
    (run / "best-models").mkdir(parents=True)
    if yml is not None:
        (run / "config_model.yml").write_text(yml)
    return run


def test_load_pretrained_original_run_dir_from_yml(tmp_path: Path) -> None:
    torch.manual_seed(2)
    src = build_model("drrn", 8).eval()
    yml = (
        "net_type: DRRN\nscale: 8\ntrain_dsets: caco2_train_X_8_in_64_out_512_cell_CELL0\n"
        "num_residual_units: 25\nbetas: !!python/tuple [0.9, 0.999]\n"
    )
    # the directory names disagree with the yml: the yml wins
    run = _original_run(tmp_path / "a", net="VDSR", scale=2, cell="CELL1", yml=yml)
    torch.save(src.state_dict(), run / "best-models" / "G-model.pth")
    for target in (run, run / "best-models" / "G-model.pth"):
        model, info = load_pretrained(target)
        assert (info["method"], info["scale"], info["marker"]) == ("drrn", 8, "CELL0")
        assert info["format"] == "original" and info["source"].endswith("G-model.pth")
        lr = torch.rand(1, 1, 3, 4)
        with torch.no_grad():
            assert torch.equal(model(lr), src(lr))


def test_load_pretrained_original_from_directory_names_only(tmp_path: Path) -> None:
    run = _original_run(tmp_path, net="MSLapSRN", scale=4, cell="CELL1")
    torch.save(build_model("mslapsrn", 4).state_dict(), run / "best-models" / "G-model.pth")
    _, info = load_pretrained(run)
    assert (info["method"], info["scale"], info["marker"]) == ("mslapsrn", 4, "CELL1")


def test_mismatch_is_explained_with_a_hint(tmp_path: Path) -> None:
    torch.save(build_model("mslapsrn", 4).state_dict(), tmp_path / "G-model.pth")
    with pytest.raises(CheckpointError) as err:
        load_pretrained(tmp_path / "G-model.pth", method="mslapsrn", scale=8)
    msg = str(err.value)
    assert "missing key(s)" in msg and "laplacian_pyramid_conv7" in msg
    assert "looks like a checkpoint of mslapsrn x4" in msg
    torch.save(build_model("dbpn", 2, base_filter=4, feat=8).state_dict(), tmp_path / "small.pth")
    shape_msg = r"shape difference\(s\) \(feat0.conv.weight: file \[8, 1, 3, 3\]"
    with pytest.raises(CheckpointError, match=shape_msg):
        load_pretrained(tmp_path / "small.pth", method="dbpn", scale=2)
    with pytest.raises(CheckpointError, match="pass method= and scale="):
        load_pretrained(tmp_path / "small.pth")


def test_bad_files_give_clear_errors(tmp_path: Path) -> None:
    _, good = _save_tiny(tmp_path / "good.pt")
    data = good.read_bytes()
    (tmp_path / "trunc.pt").write_bytes(data[: len(data) // 2])
    (tmp_path / "notes.pth").write_text("this is not a checkpoint\n")
    with pytest.raises(CheckpointError, match="truncated"):
        load_checkpoint(tmp_path / "trunc.pt")
    with pytest.raises(CheckpointError, match="truncated"):
        load_pretrained(tmp_path / "trunc.pt", method="vdsr", scale=2)
    with pytest.raises(CheckpointError, match="not a checkpoint"):
        load_pretrained(tmp_path / "notes.pth", method="vdsr", scale=2)
    torch.save(build_model("srcnn", 2).state_dict(), tmp_path / "plain.pth")
    with pytest.raises(CheckpointError, match="load_pretrained"):
        load_checkpoint(tmp_path / "plain.pth")
    with pytest.raises(FileNotFoundError):
        load_pretrained(tmp_path / "missing.pth")


class _Payload:
    """A pickled custom class: loading it with full unpickling would run this module's code."""

    def __reduce__(self):
        return (os.getcwd, ())


def test_pickle_with_code_is_refused(tmp_path: Path) -> None:
    torch.save({"weight": torch.zeros(2), "extra": _Payload()}, tmp_path / "evil.pth")
    with pytest.raises(CheckpointError, match="not a weights-only file"):
        load_pretrained(tmp_path / "evil.pth", method="srcnn", scale=2)
    with pytest.raises(CheckpointError, match="not a weights-only file"):
        load_checkpoint(tmp_path / "evil.pth")


def test_original_yml_hyperparameters_become_overrides(tmp_path: Path) -> None:
    yml = (
        "netG: DBPN\nscale: 2\nbase_filter: 4\nfeat: 8\n"
        "test_dsets: caco2_test_X_2_in_256_out_512_cell_CELL2\n"
    )
    run = _original_run(tmp_path, net="DBPN", scale=2, cell="CELL2", yml=yml)
    weights = build_model("dbpn", 2, base_filter=4, feat=8).state_dict()
    torch.save(weights, run / "best-models" / "G-model.pth")
    model, info = load_pretrained(run)
    assert info["overrides"] == {"base_filter": 4, "feat": 8}
    assert model.feat1.conv.out_channels == 4


def test_unsupported_version_is_refused(tmp_path: Path) -> None:
    torch.save(
        {"format": CHECKPOINT_FORMAT, "version": 99, "model": {}, "config": {}, "meta": {}},
        tmp_path / "future.pt",
    )
    with pytest.raises(CheckpointError, match="version 99"):
        load_checkpoint(tmp_path / "future.pt")
