"""``--alignment paper|subpixel`` (`srcaco2.trainers.alignment`, `srcaco2.srdata.registration.subpixel`).

- a pair with a known fractional shift scores, under ``subpixel``, as the unshifted pair (±0.1 dB)
  and far above ``paper``;
- ``paper`` is the benchmark's rule unchanged: the same numbers as before the option existed
  (pinned from commit 297a5d3 on the trainer store) and no ``alignment`` key in the outputs;
- a store whose ×8 LR scan is offset by a fraction of an LR pixel scores higher under ``subpixel``
  (the shifts estimated by the real TV-L1, `srdata register-subpixel`);
- bad input: an unknown alignment, a store without the column -> one clear line, exit != 0.
"""

from __future__ import annotations

import json
import shutil

import numpy as np
import pytest
from click.testing import CliRunner

from srcaco2.trainers.alignment import (
    align_prediction,
    make_aligner,
    paper_offset,
    residual_bound,
    residual_shift,
    subpixel_margin,
)
from srcaco2.trainers.metrics import patch_metrics

HR_TILE = 1024


def _scene(shape: tuple[int, int], dy: float, dx: float, sigma: float, seed: int = 3) -> np.ndarray:
    """Gaussian spots (sigma HR px) sampled at (y − dy, x − dx): an exact, band-limited shift. [0, 1]."""
    rng = np.random.default_rng(seed)
    n = 120
    cy, cx = rng.uniform(-20, shape[0] + 20, n), rng.uniform(-20, shape[1] + 20, n)
    amp = rng.uniform(0.2, 0.8, n)
    y = np.arange(shape[0], dtype=np.float64)[:, None] - dy
    x = np.arange(shape[1], dtype=np.float64)[None, :] - dx
    img = np.zeros(shape)
    for a, py, px in zip(amp, cy, cx, strict=True):
        img += a * np.exp(-((y - py) ** 2) / (2 * sigma**2)) * np.exp(-((x - px) ** 2) / (2 * sigma**2))
    return np.clip(img, 0, 1)


# ------------------------------------------------------------------------------------------ the rule
def test_residual_is_what_the_paper_rule_leaves():
    # ×8: round(3.4) = 3 -> the LR patch does not move (floor((3 + 4) / 8) = 0): all 3.4 px remain
    assert paper_offset([3, -3], 8).tolist() == [0, 0]
    assert paper_offset([4, -5], 8).tolist() == [8, -8]
    np.testing.assert_allclose(residual_shift([3, -3], [3.4, -2.7], 8), [3.4, -2.7])
    np.testing.assert_allclose(residual_shift([4, -5], [4.3, -4.6], 8), [-3.7, 3.4])
    for s in (2, 4, 8):  # every rounding of every estimate leaves |r| <= s/2 + 1/2
        d = np.linspace(-20, 20, 4001)
        r = residual_shift(np.stack([np.round(d)] * 2, -1).astype(int), np.stack([d, d], -1), s)
        assert np.abs(r).max() <= residual_bound(s) + 1e-9
    assert [subpixel_margin(s) for s in (2, 4, 8)] == [5, 6, 8]


def test_known_fractional_shift_scores_as_the_unshifted_pair():
    s, r = 8, (3.3, -2.6)  # HR px, within the ±4.5 px the paper's rule can leave at ×8
    hr = _scene((512, 512), 0.0, 0.0, sigma=5.0)
    sr = _scene((512, 512), 0.0, 0.0, sigma=5.6)  # a reconstruction: slightly blurrier spots
    sr_moved = _scene((512, 512), r[0], r[1], sigma=5.6)  # the same, shown r px off (pred(i) = sr(i - r))
    hr_q = np.round(hr * 255) / 255
    paper = patch_metrics(sr_moved, hr_q, s)
    sub = patch_metrics(*align_prediction(sr_moved, hr_q, r, s), s)
    unshifted = patch_metrics(*align_prediction(sr, hr_q, (0.0, 0.0), s), s)
    assert sub["psnr"] > paper["psnr"] + 5 and sub["roi_psnr"] > paper["roi_psnr"] + 5
    assert sub["ssim"] > paper["ssim"]
    assert abs(sub["psnr"] - unshifted["psnr"]) < 0.1
    assert abs(sub["roi_psnr"] - unshifted["roi_psnr"]) < 0.1
    # the ground truth is cropped, never resampled
    _, hr_c = align_prediction(sr_moved, hr_q, r, s)
    m = subpixel_margin(s)
    np.testing.assert_array_equal(hr_c, hr_q[m:-m, m:-m].astype(np.float32))


def test_residual_beyond_the_bound_is_refused():
    img = np.zeros((64, 64))
    with pytest.raises(ValueError, match="register-subpixel STORE --overwrite"):
        align_prediction(img, img, (4.7, 0.0), 8)


# ------------------------------------------------------------------------------ paper: unchanged
PINNED_X8 = {  # bicubic x8 CELL2 test on make_trainer_store(seed 0), computed at commit 297a5d3
    "psnr": 36.834461029563116, "nrmse": 0.016049018337261762, "ssim": 0.9808357393158798,
    "roi_psnr": 29.168925298065183, "roi_nrmse": 0.0388115925951643, "roi_ssim": 0.9423227503901631,
    "frc_px": 13.599248826291081, "frc_um": 1.359924882629108,
}  # fmt: skip


@pytest.fixture(scope="module")
def registered_store(trainer_store, tmp_path_factory) -> str:
    """A copy of the trainer store with ``index/shift_subpixel`` for CELL2 (val and test windows)."""
    from srcaco2.srdata.registration.subpixel import write_subpixel_shifts

    path = str(tmp_path_factory.mktemp("registered") / "s.zarr")
    shutil.copytree(trainer_store, path)
    rep = write_subpixel_shifts(path, markers=["CELL2"], scales=[4, 8], workers=1)
    assert (rep.windows, rep.estimated, rep.kept) == (4, 8, 0)
    return path


def test_paper_alignment_is_the_benchmark_rule_unchanged(trainer_store, registered_store, tmp_path):
    from srcaco2.trainers.evaluate import evaluate

    for store, out in ((trainer_store, tmp_path / "a"), (registered_store, tmp_path / "b")):
        res = evaluate(
            store, split="test", marker="CELL2", scale=8, method="bicubic", device="cpu", out_dir=out
        )
        assert res.summary == PINNED_X8  # exact: the paper's path runs no new code
        summary = json.loads((out / "summary.json").read_text())
        assert "alignment" not in summary  # absent = paper (older outputs say nothing either)
    assert (tmp_path / "a" / "windows.csv").read_bytes() == (tmp_path / "b" / "windows.csv").read_bytes()


def test_register_subpixel_keeps_the_integer_shift(trainer_store, registered_store):
    from srcaco2.srdata.registration.subpixel import write_subpixel_shifts
    from srcaco2.srdata.store import Store, open_root

    before, after = (
        Store.of_root(open_root(trainer_store)).index(),
        Store.of_root(open_root(registered_store)).index(),
    )
    np.testing.assert_array_equal(before["shift"], after["shift"])
    assert np.isnan(before["shift_subpixel"]).all()  # an older store: read as "not estimated"
    sub = after["shift_subpixel"]
    rows = np.flatnonzero(after["split"] > 0)
    got = sub[rows][:, 2][:, 1:]  # CELL2, x4 and x8
    assert np.isfinite(got).all() and np.abs(got).max() < 0.5  # area-mean LR: no shift
    np.testing.assert_array_equal(np.round(got), after["shift"][rows][:, 2][:, 1:])
    assert np.isnan(sub[after["split"] == 0]).all() and np.isnan(sub[:, :2]).all()  # only what was asked
    again = write_subpixel_shifts(registered_store, markers=["CELL2"], scales=[4, 8], workers=1)
    assert (again.estimated, again.kept) == (0, 8)
    from srcaco2.srdata.verify import verify_store

    assert verify_store(registered_store, workers=1) == []


# ----------------------------------------------------- a store whose LR is off by a fraction of an LR px
def _offset_store(path: str, d: tuple[float, float]) -> str:
    """One 1024² tile, 4 test windows; the x8 scan shows the scene `d` HR px off (0.4 LR px), the
    others are exact area means; ``shift`` holds round(d) at x8, as the build would."""
    from scipy.ndimage import shift as nd_shift

    from srcaco2.srdata.array_store import write_store_from_arrays
    from srcaco2.srdata.schema import MARKERS, SCALES

    rng = np.random.default_rng(0)
    base = _scene((HR_TILE, HR_TILE), 0, 0, sigma=6.0, seed=int(rng.integers(1 << 30))) * 230
    hr = np.stack([np.round(base).astype(np.uint8)] * len(MARKERS))
    images = {1: hr}
    for s in SCALES:
        src = nd_shift(base, d, order=3, mode="nearest") if s == 8 else base
        lr = src.reshape(HR_TILE // s, s, HR_TILE // s, s).mean(axis=(1, 3))
        images[s] = np.stack([np.clip(np.round(lr), 0, 255).astype(np.uint8)] * len(MARKERS))
    y0 = np.array([0, 0, 256, 256])
    x0 = np.array([0, 256, 0, 256])
    shift = np.zeros((4, len(MARKERS), len(SCALES), 2), np.int16)
    shift[:, :, SCALES.index(8)] = np.round(d)
    write_store_from_arrays(
        path, {1: images}, chunk=256,
        windows={"tile": np.ones(4, int), "y0": y0, "x0": x0, "split": np.full(4, 2), "shift": shift,
                 "roi_fraction": np.full(4, 0.5, np.float32)},
        roi={"threshold": 4, "min_fraction": 0.2, "method": "threshold", "marker": "CELL2"},
        source={"kind": "test"}, n_levels=1,
    )  # fmt: skip
    return path


def test_fractional_lr_offset_scores_higher_under_subpixel_at_x8(tmp_path):
    from srcaco2.srdata.registration.subpixel import write_subpixel_shifts
    from srcaco2.srdata.store import Store, open_root
    from srcaco2.trainers.evaluate import evaluate

    d = (3.4, -2.7)  # HR px: 0.43 and 0.34 of an x8 LR pixel; round -> (3, -3): the paper moves nothing
    store = _offset_store(str(tmp_path / "off.zarr"), d)
    write_subpixel_shifts(store, splits=["test"], markers=["CELL2"], scales=[8], workers=1)
    est = Store.of_root(open_root(store)).index()["shift_subpixel"][:, 2, 2]
    np.testing.assert_allclose(est, np.broadcast_to(d, est.shape), atol=0.35)  # TV-L1 finds the offset
    kw = dict(split="test", marker="CELL2", scale=8, method="bicubic", device="cpu")
    paper = evaluate(store, **kw).summary
    res = evaluate(store, alignment="subpixel", **kw)
    sub = res.summary
    assert sub["psnr"] > paper["psnr"] + 1.0 and sub["roi_psnr"] > paper["roi_psnr"] + 1.0
    assert sub["ssim"] > paper["ssim"]
    assert res.meta["alignment"] == "subpixel" and res.meta["alignment_margin_px"] == 8


# ------------------------------------------------------------------------------ wiring and bad input
def _srtrain(*args: object):
    from srcaco2.cli.srtrain import main

    return CliRunner().invoke(main, [str(a) for a in args])


def _one_line_refusal(res, *words: str) -> None:
    assert res.exit_code != 0, res.output
    assert "Traceback" not in res.output and res.exception is None or isinstance(res.exception, SystemExit)
    errors = [ln for ln in res.output.splitlines() if ln.startswith("Error:")]
    assert len(errors) == 1, res.output
    for w in words:
        assert w in errors[0], (w, res.output)


def test_cli_refuses_an_unknown_alignment(trainer_store, tmp_path):
    base = ["--store", trainer_store, "--marker", "CELL2", "--scale", "8", "--method", "bicubic"]
    res = _srtrain("eval", *base, "--out", tmp_path / "e", "--alignment", "subpx")
    _one_line_refusal(res, "--alignment", "'paper', 'subpixel'")
    res = _srtrain(
        "eval-runs", tmp_path, "--store", trainer_store, "--out", tmp_path / "r", "--alignment", "x"
    )
    _one_line_refusal(res, "--alignment")
    assert not (tmp_path / "e").exists()


def test_cli_refuses_a_store_without_subpixel_shifts(trainer_store, tmp_path):
    res = _srtrain(
        "eval", "--store", trainer_store, "--marker", "CELL2", "--scale", "8", "--method", "bicubic",
        "--out", tmp_path / "e", "--alignment", "subpixel", "--device", "cpu",
    )  # fmt: skip
    _one_line_refusal(
        res,
        "no sub-pixel shifts",
        f"srdata register-subpixel {trainer_store} --split test --marker CELL2 --scale 8",
    )
    assert not (tmp_path / "e").exists()


def test_fit_validation_under_subpixel(tiny, trainer_store, registered_store, tmp_path):
    from srcaco2.trainers.config import ConfigError, apply_overrides
    from srcaco2.trainers.fit import fit

    with pytest.raises(ConfigError, match="alignment"):
        apply_overrides(tiny(trainer_store), ["eval.alignment=sub"])
    with pytest.raises(ValueError, match="register-subpixel .* --split val --marker CELL2 --scale 4"):
        fit(tiny(trainer_store, "train.max_steps=1", "eval.alignment=subpixel"), tmp_path / "no")
    res = fit(tiny(registered_store, "train.max_steps=2", "eval.alignment=subpixel"), tmp_path / "runs" / "a")
    assert res.step == 2 and (tmp_path / "runs" / "a" / "val.csv").exists()
    # eval-runs: a store without the column is refused before any evaluation, in one line
    cli = _srtrain("eval-runs", tmp_path / "runs", "--store", trainer_store, "--out", tmp_path / "no-out",
                   "--alignment", "subpixel", "--device", "cpu")  # fmt: skip
    _one_line_refusal(cli, "no sub-pixel shifts", "--split test --marker CELL2 --scale 4")
    assert not (tmp_path / "no-out" / "runs").exists()
    out = tmp_path / "ev"
    for alignment in ("paper", "subpixel"):  # both into one OUT: side by side
        cli = _srtrain("eval-runs", tmp_path / "runs", "--store", registered_store, "--out", out,
                       "--alignment", alignment, "--device", "cpu")  # fmt: skip
        assert cli.exit_code == 0, cli.output
    assert sorted(p.name for p in (out / "runs").iterdir()) == [
        "bicubic_x4_CELL2",
        "bicubic_x4_CELL2_subpixel",
        "vdsr_x4_CELL2",
        "vdsr_x4_CELL2_subpixel",
    ]
    gain = (out / "tables" / "alignment_gain.md").read_text()
    assert "VDSR" in gain and "Bicubic" in gain
    again = _srtrain("eval-runs", tmp_path / "runs", "--store", registered_store, "--out", out,
                     "--alignment", "subpixel", "--device", "cpu")  # fmt: skip
    assert again.exit_code == 0 and "0 evaluated, 2 kept from before" in again.output, again.output


def test_tables_show_both_alignments(registered_store, tmp_path):
    from srcaco2.trainers.alignment_tables import write_tables_by_alignment as write_tables
    from srcaco2.trainers.evaluate import evaluate, read_eval

    kw = dict(split="test", marker="CELL2", scale=8, method="bicubic", device="cpu")
    evaluate(registered_store, out_dir=tmp_path / "p", **kw)
    evaluate(registered_store, out_dir=tmp_path / "s", alignment="subpixel", **kw)
    paths = write_tables([read_eval(tmp_path / "p"), read_eval(tmp_path / "s")], tmp_path / "t")
    assert {"table4_roi.md", "table4_roi_subpixel.md", "alignment_gain.md", "alignment_gain.csv"} <= set(
        paths
    )
    gain = (tmp_path / "t" / "alignment_gain.md").read_text()
    assert "Bicubic" in gain and "×8" in gain and "sub-px" in gain
    assert make_aligner(registered_store, split="test", marker="CELL2", scale=8) is None  # paper: no aligner


def test_rewriting_the_index_drops_stale_subpixel_shifts(registered_store, tmp_path):
    from srcaco2.srdata.store import Store, open_root
    from srcaco2.srdata.writer import write_index

    path = str(tmp_path / "s.zarr")
    shutil.copytree(registered_store, path)
    root = open_root(path, mode="r+")
    cols = Store.of_root(root).index()
    cols.pop("shift_subpixel")
    write_index(Store.of_root(root), cols)  # e.g. a resumed build rewriting the index: the old estimates go
    assert "shift_subpixel" not in root["index"]
    assert np.isnan(Store.of_root(open_root(path)).index()["shift_subpixel"]).all()


def test_subpixel_refuses_a_store_registered_by_another_rule(registered_store, tmp_path):
    from srcaco2.srdata.store import open_root

    path = str(tmp_path / "s.zarr")
    shutil.copytree(registered_store, path)
    root = open_root(path, mode="r+")
    sub = root["index/shift_subpixel"][...]
    sub[:, 2, 2] += 13.0  # as if the build had not registered x8 (shift 0) while TV-L1 finds 13 px
    root["index/shift_subpixel"][...] = sub
    with pytest.raises(ValueError, match="not the rounding of the sub-pixel one"):
        make_aligner(path, split="test", marker="CELL2", scale=8, alignment="subpixel")


def test_register_subpixel_cli_bad_input(trainer_store, tmp_path):
    from srcaco2.cli.srdata import main

    def run(*args):
        return CliRunner().invoke(main, ["register-subpixel", *map(str, args)])

    _one_line_refusal(run(tmp_path / "nothing.zarr"), "no such store", "srdata build")
    _one_line_refusal(run(trainer_store, "--scale", "3"), "scale 3 is not in the store")
    _one_line_refusal(run(trainer_store, "--marker", "CELL7"), "marker 'CELL7' is not in the store")
    _one_line_refusal(run(trainer_store, "--split", "tests"), "split 'tests' is not one of")
