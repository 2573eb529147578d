"""Whole-tile tiled inference: exactness with a halo, no seams, bounded band accumulation."""

from __future__ import annotations

from pathlib import Path

import numpy as np
import pytest
import torch
from torch import nn

from srcaco2.trainers.metrics import bicubic_upsample
from srcaco2.trainers.predict import predict_tiled
from srcaco2.trainers.tiling import blend_ramp, tile_starts


class _TinyConvSR(nn.Module):
    """3 convs (receptive-field radius 3 LR px) + pixel shuffle: a local, exactly tileable net."""

    def __init__(self, scale: int, c: int = 1) -> None:
        super().__init__()
        torch.manual_seed(0)
        self.body = nn.Sequential(
            nn.Conv2d(c, 8, 3, padding=1), nn.ReLU(), nn.Conv2d(8, 8, 3, padding=1), nn.ReLU(),
            nn.Conv2d(8, c * scale * scale, 3, padding=1),
        )  # fmt: skip
        self.up = nn.PixelShuffle(scale)

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        return torch.sigmoid(self.up(self.body(x)))


def test_tile_starts_cover_and_overlap() -> None:
    for n, t, o in [(100, 40, 8), (64, 16, 4), (17, 16, 3), (5, 16, 4)]:
        starts = tile_starts(n, t, o)
        covered = np.zeros(n, bool)
        for s in starts:
            covered[s : s + t] = True
        assert covered.all() and starts[-1] + min(t, n) == n
        assert all(b - a <= t - o for a, b in zip(starts, starts[1:]))
    with pytest.raises(ValueError):
        tile_starts(10, 8, 8)


def test_blend_ramps_sum_to_one_across_a_seam() -> None:
    a = blend_ramp(16, 4, taper_start=False, taper_end=True)
    b = blend_ramp(16, 4, taper_start=True, taper_end=False)
    np.testing.assert_allclose(a[-4:] + b[:4], 1.0)
    assert (a > 0).all() and (b > 0).all() and a[0] == 1.0


@pytest.mark.parametrize("scale", [2, 4])
def test_tiled_equals_whole_image_when_halo_covers_receptive_field(scale: int) -> None:
    model = _TinyConvSR(scale).eval()
    rng = np.random.default_rng(0)
    lr = rng.integers(0, 256, (1, 45, 53), dtype=np.uint8)
    with torch.no_grad():
        whole = model(torch.from_numpy(lr).float()[None] / 255)[0]
    expected = np.round(whole.clamp(0, 1).numpy() * 255).astype(np.uint8)
    tiled = predict_tiled(model, lr, scale, tile=16, overlap=4, halo=3, batch_size=3)
    assert tiled.shape == expected.shape
    # exact up to float rounding at .5 ties
    assert np.abs(tiled.astype(int) - expected.astype(int)).max() <= 1
    assert (tiled != expected).mean() < 1e-3
    # without a halo the tile borders differ from the whole-image result
    no_halo = predict_tiled(model, lr, scale, tile=16, overlap=4, halo=0)
    assert (no_halo != expected).any()


def test_no_seams_on_a_constant_image() -> None:
    scale = 2
    model = _TinyConvSR(scale).eval()
    lr = np.full((1, 64, 64), 0.4, np.float32)
    out = predict_tiled(model, lr, scale, tile=16, overlap=4, halo=4).astype(np.float64)[0]
    with torch.no_grad():
        whole = model(torch.from_numpy(lr)[None])[0, 0].numpy()
    # interior (away from the image border, where zero padding acts) is constant, tiles or not
    inner = out[16:-16, 16:-16]
    ref = np.round(np.clip(whole[16:-16, 16:-16], 0, 1) * 255)
    np.testing.assert_array_equal(inner, ref)
    # a constant LR gives an s-periodic sub-pixel pattern: every s-th row/column is identical,
    # including across the tile seams (cores start every 12 LR px = 24 HR px here)
    assert (inner[scale:] == inner[:-scale]).all() and (inner[:, scale:] == inner[:, :-scale]).all()


def test_bicubic_baseline_tiles_smoothly_and_sink_streams_rows() -> None:
    rng = np.random.default_rng(1)
    lr = rng.random((2, 40, 36)).astype(np.float32)

    def bicubic(x: torch.Tensor) -> torch.Tensor:
        return bicubic_upsample(x, 4)

    full = predict_tiled(bicubic, lr, 4, tile=40, overlap=0, halo=0)  # one tile = whole image
    tiled = predict_tiled(bicubic, lr, 4, tile=12, overlap=4, halo=4)
    assert np.abs(full.astype(int) - tiled.astype(int)).max() <= 1
    rows: list[tuple[int, np.ndarray]] = []
    assert (
        predict_tiled(bicubic, lr, 4, tile=12, overlap=4, halo=4, sink=lambda r, a: rows.append((r, a)))
        is None
    )
    assert [r for r, _ in rows] == sorted(r for r, _ in rows) and rows[0][0] == 0
    np.testing.assert_array_equal(np.concatenate([a for _, a in rows], axis=1), tiled)
    assert max(a.shape[1] for _, a in rows) <= 12 * 4  # emitted band by band, never the whole image


@pytest.fixture(scope="module")
def small_store(tmp_path_factory: pytest.TempPathFactory) -> str:
    from srcaco2.srdata.build import BuildConfig, build_store
    from srcaco2.srdata.synth import SynthParams, write_synth

    root = tmp_path_factory.mktemp("predict")
    write_synth(root / "raw", n_tiles=1, params=SynthParams(hr_size=768, seed=3))
    store = str(root / "s.zarr")
    build_store(str(root / "raw"), store, BuildConfig(register=False, chunk=256))
    return store


def test_predict_to_store_writes_an_ome_ngff_image(small_store: str) -> None:
    import zarr

    from srcaco2.trainers.models import build_model
    from srcaco2.trainers.predict import predict_to_store

    model = build_model("bicubic", 4).eval()
    path = predict_to_store(model, small_store, 1, 4, ["CELL2"], name="bic", tile=48, overlap=8, halo=4)
    root = zarr.open_group(small_store, mode="r")
    grp = root[path]
    lr = np.asarray(root["tiles/1/x4/0"][2:3])
    expected = predict_tiled(model, lr, 4, tile=48, overlap=8, halo=4)
    np.testing.assert_array_equal(np.asarray(grp["0"][...]), expected)
    assert grp["0"].shape == (1, 768, 768)
    ms = grp.attrs["ome"]["multiscales"][0]
    assert len(ms["datasets"]) >= 2 and [a["name"] for a in ms["axes"]] == ["c", "y", "x"]
    assert grp["1"].shape == (1, 384, 384)


def test_predict_cli_bicubic_and_bad_input(small_store: str, tmp_path: Path) -> None:
    from click.testing import CliRunner

    from srcaco2.cli.srtrain import main

    runner = CliRunner()
    ok = runner.invoke(main, ["predict", "--store", small_store, "--method", "bicubic", "--scale", "2",
                              "--marker", "CELL1", "--tile-size", "96"])  # fmt: skip
    assert ok.exit_code == 0, ok.output
    assert "predictions/bicubic_x2_CELL1/1" in ok.output
    args = ["predict", "--store", small_store, "--method", "bicubic", "--scale", "4", "--split", "train"]
    pan = runner.invoke(main, [*args, "--panels", "1", "--panel-dir", str(tmp_path / "p")])
    assert pan.exit_code == 0, pan.output
    assert len(list((tmp_path / "p").glob("tile*_window*.png"))) == 1
    bad = runner.invoke(main, ["predict", "--store", small_store, "--method", "bicubic", "--scale", "2",
                               "--tile", "99"])  # fmt: skip
    assert bad.exit_code != 0 and "no tile(s) [99]" in bad.output
    both = runner.invoke(main, ["predict", "--store", small_store, "--scale", "2"])
    assert both.exit_code != 0 and "exactly one of --checkpoint" in both.output


def test_plan_tiling_defaults_come_from_the_registry() -> None:
    from srcaco2.trainers.tiling import plan_tiling

    memnet = plan_tiling("memnet", 4)
    assert (memnet.halo, memnet.receptive_halo, memnet.exact) == (110, 110, True)
    assert memnet.tile == 220 and memnet.overlap == 16 and memnet.align == 1  # max(128, 2 halo)
    swin = plan_tiling("swinir", 2)
    assert swin.align == 8 and swin.tile % 8 == 0 and swin.halo == 103
    dfcan = plan_tiling("dfcan", 4)
    assert dfcan.halo is None and dfcan.exact and dfcan.receptive_halo is None  # whole image
    short = plan_tiling("dfcan", 4, halo=16)
    assert short.halo == 16 and not short.exact
    assert not plan_tiling("vdsr", 4, halo=3).exact and plan_tiling("vdsr", 4, halo=7).exact
    deeper = plan_tiling("drrn", 4, overrides={"num_residual_units": 30})
    assert deeper.halo > plan_tiling("drrn", 4).halo  # the reach follows the built network
    with pytest.raises(ValueError, match="method="):
        plan_tiling(None, 4)
    with pytest.raises(ValueError, match="tile > overlap"):
        plan_tiling("vdsr", 4, tile=8, overlap=8)


def test_whole_image_context_equals_one_forward_and_streams_rows() -> None:
    """halo=None: a global network's default. One forward, rows still handed out band by band."""

    def glob(x: torch.Tensor) -> torch.Tensor:  # output depends on the whole image (its mean)
        return bicubic_upsample(x, 2) * 0.5 + x.mean(dim=(2, 3), keepdim=True) * 0.5

    rng = np.random.default_rng(2)
    ramp = np.linspace(0, 250, 44)[None, None, :] * np.ones((1, 50, 1))
    lr = np.clip(ramp + rng.normal(0, 5, (1, 50, 44)), 0, 255).astype(np.uint8)  # tile means differ
    with torch.no_grad():
        ref = np.round(glob(torch.from_numpy(lr).float()[None] / 255)[0].clamp(0, 1).numpy() * 255)
    rows: list[tuple[int, np.ndarray]] = []
    predict_tiled(glob, lr, 2, tile=16, halo=None, sink=lambda r, a: rows.append((r, a)))
    out = np.concatenate([a for _, a in rows], axis=1)
    np.testing.assert_array_equal(out, ref.astype(np.uint8))
    assert len(rows) == 4 and max(a.shape[1] for _, a in rows) == 32
    tiled = predict_tiled(glob, lr, 2, tile=16, overlap=4, halo=8)  # finite halo: not exact
    assert np.abs(tiled.astype(int) - ref).max() > 1


def test_uint16_in_and_out() -> None:
    lr = np.random.default_rng(3).integers(0, 4096, (1, 30, 26), dtype=np.uint16)

    def bicubic(x: torch.Tensor) -> torch.Tensor:
        return bicubic_upsample(x, 2)

    out = predict_tiled(bicubic, lr, 2, tile=12, overlap=4, halo=2, in_max=4095, out_dtype=np.uint16,
                        out_max=4095)  # fmt: skip
    ref = bicubic(torch.from_numpy(lr.astype(np.float32) / 4095)[None])[0].clamp(0, 1).numpy() * 4095
    assert out.dtype == np.uint16 and np.abs(out.astype(int) - np.round(ref)).max() <= 1


def test_a_failed_store_prediction_leaves_no_group(small_store: str) -> None:
    import zarr

    from srcaco2.trainers.predict import predict_to_store

    def boom(x: torch.Tensor) -> torch.Tensor:
        raise RuntimeError("network failed")

    with pytest.raises(RuntimeError, match="network failed"):
        predict_to_store(boom, small_store, 1, 4, ["CELL2"], name="broken", halo=2)
    root = zarr.open_group(small_store, mode="r")
    assert "predictions/broken/1" not in root


def test_panels_and_eval_windows_can_be_restricted_to_tiles(trainer_store, tmp_path):
    """`srtrain predict --tile T --panels N` draws windows of tile T, not the split's first ones."""
    from srcaco2.srdata.loader import make_loader
    from srcaco2.trainers.report import write_window_panels

    every = make_loader(trainer_store, split="val", scale=4, marker="CELL2", batch_size=1, mode="eval")
    tiles = {int(b["tile"][0]) for b in every}
    only = make_loader(
        trainer_store, split="val", scale=4, marker="CELL2", batch_size=1, mode="eval", tiles=[2]
    )
    assert tiles == {2} and {int(b["tile"][0]) for b in only} == {2} and len(only) == len(every)
    with pytest.raises(ValueError, match=r"split 'val' has no accepted window on tile\(s\) \[1\]"):
        make_loader(trainer_store, split="val", scale=4, marker="CELL2", batch_size=1, mode="eval", tiles=[1])
    pngs = write_window_panels("bicubic", trainer_store, tmp_path, split="val", scale=4, marker="CELL2", n=1,
                               tiles=[2])  # fmt: skip
    assert [p.name.split("_")[0] for p in pngs] == ["tile2"]
