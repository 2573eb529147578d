"""bioimage.io packages: validated by bioimageio.core's own test, run by it like by `srtrain predict`.

A representative set at x4 (tiny, seeded weights): pre-upsampling (VDSR), implicit decoder on a
convolutional encoder (EDSR-LIIF), FFT (DFCAN, global), shifted-window transformer (SwinIR) and
multi-output progressive (MS-LapSRN), and NLSN (global, random hashing: the package fixes its seed).
``benchmarks/export_bioimageio.py`` runs all 16.
"""

from __future__ import annotations

import json
import zipfile
from pathlib import Path

import numpy as np
import pytest
import tifffile
import torch
import torch.nn.functional as F
import yaml
from click.testing import CliRunner

pytest.importorskip("bioimageio.core")

from srcaco2.srdata.real_sample import REAL_SAMPLE_DIR  # noqa: E402

REPRESENTATIVE = ["vdsr", "edsr_liif", "dfcan", "swinir", "mslapsrn", "nlsn"]


def _srtrain(*args: object):
    from srcaco2.cli.srtrain import main

    return CliRunner().invoke(main, [str(a) for a in args])


def _bio_predict(package: Path, lr: np.ndarray, block: int | None = None) -> np.ndarray:
    """bioimageio.core's prediction of the uint8 (y, x) `lr`, (s·y, s·x) float grey levels."""
    from bioimageio.core import load_model_description, predict

    descr = load_model_description(package)
    kwargs = {} if block is None else {"blocksize_parameter": block}
    out = predict(model=descr, inputs={"lr": lr[None, None]}, **kwargs)
    return np.asarray(out.members["sr"].data.values)[0, 0]


@pytest.mark.slow
@pytest.mark.parametrize("method", REPRESENTATIVE)
def test_package_passes_bioimageio_test_and_predicts_like_srtrain(
    method: str, make_checkpoint, tmp_path: Path
) -> None:
    """Export with the CLI; bioimageio.core's test_model passes offline; its prediction of a real-sample
    crop equals `srtrain predict --checkpoint M.zip --input` within 1 grey level, and that equals the
    prediction from the original checkpoint exactly; with the declared halo, bioimageio.core's tiled
    prediction stays within 1 grey level of its whole-image one. Both with the torchscript weights too
    where the package has them."""
    from bioimageio.core import test_model

    ckpt = make_checkpoint(method)
    pkg = tmp_path / f"{method}.zip"
    res = _srtrain("export", "--checkpoint", ckpt, "--output", pkg, "--no-test", "--json")
    assert res.exit_code == 0, res.output
    out = json.loads(res.stdout)
    summary = test_model(pkg)
    assert summary.status == "passed", summary.format()

    step, low = out["step"], out["min_input"]
    hy, wx = (low + step * max(0, -(-(n - low) // step)) for n in (64, 72))  # ~64 x 72, valid sizes
    lr = tifffile.imread(REAL_SAMPLE_DIR / "div4.tif")[20 : 20 + hy, 10 : 10 + wx]  # real nuclei
    tifffile.imwrite(tmp_path / "lr.tif", lr)
    ours = {}
    for name, source in (("zip", pkg), ("pt", ckpt)):
        res = _srtrain("predict", "--input", tmp_path / "lr.tif", "--checkpoint", source, "--device", "cpu",
                       "--output", tmp_path / f"sr_{name}.tif", "--whole-image")  # fmt: skip
        assert res.exit_code == 0, res.output
        ours[name] = tifffile.imread(tmp_path / f"sr_{name}.tif").astype(np.float64)
    whole = _bio_predict(pkg, lr)
    assert whole.shape == (4 * hy, 4 * wx) and ours["zip"].std() > 1
    if method == "nlsn":  # random hashing in every forward: srtrain predict differs run to run, the
        assert np.array_equal(_bio_predict(pkg, lr), whole)  # package repeats itself (fixed seed)
        return
    assert np.array_equal(ours["zip"], ours["pt"])
    # everywhere, the image border included (the consumer's padding is cut off again: border.py)
    assert np.abs(whole - ours["zip"]).max() <= 1.0
    assert out["global"] == (out["halo"] == 0)
    if not out["global"]:
        tiled = _bio_predict(pkg, lr, block=1)  # the smallest tiles the package allows
        assert np.abs(tiled - whole).max() <= 1.0


def test_package_contents_facts_and_docs(make_checkpoint, tmp_path: Path) -> None:
    """The default export runs bioimageio's test itself; the package holds the architecture file, both
    weight formats, the real-sample test tensors, the cover and a README with the run's facts."""
    ckpt = make_checkpoint("vdsr")
    (ckpt.parent / "config.yaml").write_text("recipe: default\n")
    (ckpt.parent / "val.csv").write_text(
        "step,epoch,psnr,roi_psnr,is_best\n5,1,30.5,27.25,1\n7,1,30.1,27.0,0\n"
    )
    (ckpt.parent / "eval_test").mkdir()
    summary = {"split": "test", "n_windows": 12, "metrics": {"psnr": 31.75, "roi_psnr": 28.5}}
    (ckpt.parent / "eval_test" / "summary.json").write_text(json.dumps(summary))
    pkg = tmp_path / "vdsr.zip"
    res = _srtrain("export", "--checkpoint", ckpt, "--output", pkg, "--author", "A. Microscopist",
                   "--tag", "nuclei", "--license", "CC-BY-4.0")  # fmt: skip
    assert res.exit_code == 0, res.output
    assert "bioimageio test passed" in res.output and "torchscript" in res.output
    with zipfile.ZipFile(pkg) as zf:
        names = set(zf.namelist())
        rdf = yaml.safe_load(zf.read("rdf.yaml"))
        readme = zf.read("README.md").decode()
        x = np.load(zf.open("test_input.npy"))
    assert {"vdsr_x4.py", "weights.pt", "weights_torchscript.pt", "cover.png", "test_output.npy"} <= names
    assert rdf["format_version"].startswith("0.5") and rdf["license"] == "CC-BY-4.0"
    assert rdf["authors"] == [{"name": "A. Microscopist"}] and "nuclei" in rdf["tags"]
    assert {"sample_input.tif", "sample_output.tif"} <= names
    assert x.dtype == np.uint8 and x.shape[:2] == (1, 1)
    facts = rdf["config"]["srcaco2"]
    assert (facts["method"], facts["scale"], facts["marker"], facts["step"]) == ("vdsr", 4, "CELL2", 7)
    assert facts["store"] == "/data/caco2.zarr" and facts["recipe"] == "default"
    halo = rdf["outputs"][0]["axes"][2]["halo"]
    from srcaco2.trainers.models import model_info

    assert halo == 4 * model_info("vdsr").receptive_halo(4, facts["overrides"])
    assert (
        facts["validation"]["roi_psnr"] == 27.0 and facts["test"]["roi_psnr"] == 28.5
    )  # last row: no best_step
    for words in (
        "/data/caco2.zarr",
        "CELL2",
        "SR-CACO-2",
        "CC-BY-4.0",
        "steps: 7",
        "| roi_psnr | 28.5 |",
        "Validation metrics",
        "Test metrics",
        "arxiv.org/abs/2406.09168",
    ):
        assert words in readme, words


def test_init_from_a_package_loads_the_same_weights(make_checkpoint, tmp_path: Path) -> None:
    from srcaco2.trainers.checkpoints import load_init_weights, load_pretrained
    from srcaco2.trainers.models import build_model, model_info

    ckpt = make_checkpoint("edsr_liif")
    pkg = tmp_path / "m.zip"
    assert _srtrain("export", "--checkpoint", ckpt, "--output", pkg, "--no-test").exit_code == 0
    net = build_model("edsr_liif", 4, **model_info("edsr_liif").tiny_overrides(4))
    info = load_init_weights(net, pkg, method="edsr_liif", scale=4)
    ref, _ = load_pretrained(ckpt)
    assert info["format"] == "bioimageio"
    assert all(torch.equal(v, ref.state_dict()[k]) for k, v in net.state_dict().items())


def test_measured_halo_is_the_smallest_candidate_within_one_grey_level() -> None:
    """Where the receptive halo does not fit the minimum input, the measured halo keeps tiles of the
    smallest input within 1 grey level of the whole image, and the next smaller candidate does not."""
    from srcaco2.benchmarks.export_bioimageio import fit_briefly
    from srcaco2.srdata.real_sample import load_real_sample
    from srcaco2.trainers.export.halo import CANDIDATES, measured_halo
    from srcaco2.trainers.models import build_model, model_info
    from srcaco2.trainers.predict import predict_tiled

    ov = model_info("srfbn").tiny_overrides(4)
    torch.manual_seed(0)
    net = build_model("srfbn", 4, **ov)
    fit_briefly(net, 4)
    lr = load_real_sample()[4][:48, :48]
    reach = model_info("srfbn").receptive_halo(4, ov)
    h, diff = measured_halo(net, lr, 4, step=1, min_input=2 * reach - 1, h_max=reach - 1)
    assert 0 < h < reach and diff <= 1
    whole = predict_tiled(net, lr[None], 4, halo=None).astype(int)

    def worst(halo: int) -> int:
        core = max(2 * reach - 1 - 2 * halo, (2 * reach - 1) // 2)
        tiled = predict_tiled(net, lr[None], 4, tile=core, overlap=0, halo=halo)
        return int(np.abs(tiled.astype(int) - whole).max())

    assert worst(h) <= 1
    smaller = [c for c in CANDIDATES if c < h]
    if smaller:
        assert worst(smaller[-1]) > 1


@pytest.mark.parametrize("scripted", [False, True])
def test_border_cut_removes_exactly_the_consumers_padding(scripted: bool) -> None:
    """An input padded with the package's value on some sides (by the halo, or part of it) gives the
    unpadded output, filled with 1.0 on those sides; rows that are not wholly padding are kept."""
    from srcaco2.trainers.export.border import PAD_VALUE, BorderCut
    from srcaco2.trainers.models import build_model, model_info

    torch.manual_seed(0)
    net = build_model("vdsr", 2, **model_info("vdsr").tiny_overrides(2)).eval()
    cut = BorderCut(net, 3, 2)
    if scripted:
        cut = torch.jit.script(BorderCut(torch.jit.trace(net, torch.rand(1, 1, 12, 12)), 3, 2))
    x = torch.rand(2, 1, 10, 12) * 0.9
    padded = F.pad(x, [3, 0, 3, 3], value=PAD_VALUE / 255.0)  # left, right, top, bottom
    with torch.no_grad():
        y, ref = cut(padded), net(x)
    assert y.shape == (2, 1, 32, 30)
    assert torch.allclose(y[:, :, 6:26, 6:], ref, atol=1e-6)
    assert (y[:, :, :6] == 1).all() and (y[:, :, :, :6] == 1).all()
    narrow = F.pad(x, [0, 2, 0, 0], value=PAD_VALUE / 255.0)  # part of the strip (a tile near the border)
    with torch.no_grad():
        assert torch.allclose(cut(narrow)[..., :24], ref, atol=1e-6)
        almost = x.clone()
        almost[:, :, :3, :] = 1.0
        almost[:, :, 0, 5] = 0.5  # not a whole row of padding: ordinary content
        assert torch.allclose(cut(almost), net(almost), atol=1e-6)


def test_a_halo_beyond_the_smallest_input_is_measured(make_checkpoint, tmp_path: Path, monkeypatch) -> None:
    """When the receptive halo does not fit the package's smallest input (here: a pretend 64-px sample,
    16 LR px at x4, below tiny SRFBN's 2 x 8 + 1), the package declares the measured halo; it passes
    bioimageio's test, and bioimageio.core's tiled prediction stays within 1 grey level of the whole."""
    import srcaco2.trainers.export.bioimageio_package as bp
    from srcaco2.trainers.models import model_info

    monkeypatch.setattr(bp, "SAMPLE_SIDE", 64)
    ckpt = make_checkpoint("srfbn")
    pkg = tmp_path / "srfbn.zip"
    res = _srtrain("export", "--checkpoint", ckpt, "--output", pkg, "--json")
    assert res.exit_code == 0, res.output
    out = json.loads(res.stdout)
    reach = model_info("srfbn").receptive_halo(4, model_info("srfbn").tiny_overrides(4))
    assert out["test"] == "passed" and out["min_input"] <= 16 and out["measured_diff"] <= 1
    assert 0 < out["halo"] < 4 * reach
    with zipfile.ZipFile(pkg) as zf:
        assert "measured on the real sample" in zf.read("README.md").decode()
    lr = tifffile.imread(REAL_SAMPLE_DIR / "div4.tif")[:48, :56]
    assert np.abs(_bio_predict(pkg, lr, block=1) - _bio_predict(pkg, lr)).max() <= 1.0
