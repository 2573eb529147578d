"""Released-patch names and fold folder names (docs/protocol.md#patch-names, #split)."""

from __future__ import annotations

import pytest

from srcaco2.srdata.patches import (
    PatchNameError,
    find_fold_root,
    fold_dir_name,
    parse_fold_dir_name,
    parse_patch_name,
    patch_name,
    patch_relpath,
)


def test_names_follow_spec_examples():
    assert patch_name(10, 3, 256, 512, "CELL0", 1) == "tile_HighRes1024-10_3_256_896_512_1152_CELL0.tif"
    assert patch_name(10, 3, 256, 512, "CELL0", 2) == "tile_LowRes512-10_3_128_448_256_576_CELL0.tif"
    assert patch_name(10, 3, 256, 512, "CELL0", 8) == "tile_LowRes128-10_3_32_112_64_144_CELL0.tif"
    assert patch_relpath(1, 0, 0, 512, "CELL2", 4) == "hr_div_4/tile_LowRes256-1_0_0_160_128_288_CELL2.tif"
    assert fold_dir_name("val", 4, "CELL1") == "caco2_val_X_4_in_128_out_512_cell_CELL1"


@pytest.mark.parametrize("scale", [1, 2, 4, 8])
def test_parse_inverts_name(scale):
    p = parse_patch_name(patch_relpath(22, 691, 8448, 768, "CELL1", scale))
    assert (p.tile, p.pid, p.y0, p.x0, p.size, p.marker, p.scale) == (22, 691, 8448, 768, 640, "CELL1", scale)
    assert p.relpath == patch_relpath(22, 691, 8448, 768, "CELL1", scale)


@pytest.mark.parametrize(
    "bad",
    [
        "tile_HighRes1024-1_0_0_640_0_CELL0.tif",  # a field missing
        "tile_HighRes1024-1_0_0_640_0_640_CELL0.png",
        "tile_HighRes1024-1_0_0_600_0_640_CELL0.tif",  # window not 640 wide
        "tile_LowRes300-1_0_0_640_0_640_CELL0.tif",  # unknown frame
        "tile_HighRes1024-1_0_0_640_0_640_CELL5.tif",  # unknown marker
        "tile_LowRes512-1_0_0_80_0_80_CELL0.tif",  # /8 coordinates under a /2 frame
    ],
)
def test_malformed_names_name_file_and_pattern(bad):
    with pytest.raises(PatchNameError) as err:
        parse_patch_name(bad)
    assert bad in str(err.value)


def test_folder_must_agree_with_name():
    with pytest.raises(PatchNameError, match="hr_div_4"):
        parse_patch_name("tile_LowRes512-1_0_0_320_0_320_CELL0.tif", scale=4)


def test_fold_dirs(tmp_path):
    assert parse_fold_dir_name("caco2_test_X_8_in_64_out_512_cell_CELL2") == ("test", 8, "CELL2")
    assert parse_fold_dir_name("caco2_test_X_8_in_128_out_512_cell_CELL2") is None
    assert parse_fold_dir_name("caco2_dev_X_8_in_64_out_512_cell_CELL2") is None
    assert find_fold_root(tmp_path) is None
    (tmp_path / "folds" / "super-resolution" / fold_dir_name("train", 2, "CELL0")).mkdir(parents=True)
    assert find_fold_root(tmp_path) == tmp_path / "folds" / "super-resolution"
