"""Checksummed chunks (store format 2): corruption and deleted chunks are errors, never other pixels.

The audit found 33 of 40 random 4-byte flips decoding to other pixels, a deleted chunk passing
`srdata verify`, and `srtrain eval` then reporting different numbers without a word.
"""

from __future__ import annotations

import shutil
from pathlib import Path

import numpy as np
import pytest
from click.testing import CliRunner

from srcaco2.srdata.integrity import ChunkError, find_bad_chunk, has_checksums, missing_chunks
from srcaco2.srdata.store import image_path, open_root


def _copy(store: str, tmp_path: Path) -> Path:
    dst = tmp_path / "s.zarr"
    shutil.copytree(store, dst)
    return dst


def _srdata(*args: object):
    from srcaco2.cli.srdata import main

    return CliRunner().invoke(main, [str(a) for a in args])


def test_every_array_is_checksummed_and_fully_written(store_small):
    root = open_root(store_small)
    arrays = [a for _, a in root.arrays()] + [a for g in ("index",) for _, a in root[g].arrays()]
    for _, tg in root["tiles"].groups():
        for _, img in tg.groups():
            arrays += [a for _, a in img.arrays()]
    assert len(arrays) > 20
    for arr in arrays:
        assert has_checksums(arr), arr.path
        assert missing_chunks(arr) == [], arr.path  # empty (all-zero) chunks are written too


def test_verify_names_a_flipped_and_a_deleted_chunk(store_small, tmp_path):
    bad = _copy(store_small, tmp_path)
    flipped = bad / "tiles/1/hr/0/c/2/1/2"
    data = bytearray(flipped.read_bytes())
    data[len(data) // 3] ^= 0x01  # one bit
    flipped.write_bytes(bytes(data))
    (bad / "tiles/2/x8/0/c/0/0/1").unlink()
    res = _srdata("verify", bad)
    assert res.exit_code == 1, res.output
    problems = [ln for ln in res.output.splitlines() if ln.startswith("PROBLEM")]
    assert len(problems) == 2, res.output
    assert any("tiles/1/hr/0: chunk 2/1/2 fails its crc32c checksum" in p for p in problems), problems
    assert any("tiles/2/x8/0: chunk 0/0/1 is missing" in p for p in problems), problems


def test_random_four_byte_flips_are_all_detected(store_small, tmp_path):
    """The audit's experiment: 40 random 4-byte flips inside chunks; every one must fail on read."""
    bad = _copy(store_small, tmp_path)
    root = open_root(str(bad))
    arr = root[image_path(1, 1)]
    rng = np.random.default_rng(16)
    files = sorted(p for p in (bad / "tiles/1/hr/0/c").rglob("*") if p.is_file())
    detected = 0
    for _ in range(40):
        f = files[int(rng.integers(len(files)))]
        orig = f.read_bytes()
        off = int(rng.integers(0, len(orig) - 4))
        data = bytearray(orig)
        for k in range(4):
            data[off + k] ^= int(rng.integers(1, 256))
        f.write_bytes(bytes(data))
        idx = tuple(int(p) for p in f.relative_to(bad / "tiles/1/hr/0/c").parts)
        found = find_bad_chunk(arr, [(i * c, (i + 1) * c) for i, c in zip(idx, arr.chunks, strict=True)])
        detected += found is not None and found[0] == idx
        f.write_bytes(orig)
    assert detected == 40


@pytest.mark.parametrize("workers", [0, 2])
def test_loader_stops_with_one_line_naming_the_chunk(store_small, tmp_path, workers):
    from srcaco2.srdata.loader import make_loader

    bad = _copy(store_small, tmp_path)
    loader = make_loader(str(bad), "test", 4, "CELL2", 1, 512, mode="eval", num_workers=workers)
    clean = [b["hr"].clone() for b in loader]
    loader.close()
    # delete every x4 CELL2 chunk: the first window read meets a missing chunk
    for p in (bad / "tiles").glob("*/x4/0/c/2/*/*"):
        p.unlink()
    loader = make_loader(str(bad), "test", 4, "CELL2", 1, 512, mode="eval", num_workers=workers)
    with pytest.raises(ChunkError) as err:
        for _ in loader:
            pass
    loader.close()
    msg = str(err.value)
    assert "\n" not in msg and "Traceback" not in msg, msg
    assert "/x4/0 (tile " in msg and ", chunk 2/" in msg and "is missing" in msg and "srdata verify" in msg
    assert clean  # the intact store read fine


def _as_format_1(path: Path) -> None:
    """Rewrite a format-2 store as the previous version wrote it: no crc32c, empty chunks not stored."""
    import zarr
    from zarr.codecs import BloscCodec

    from srcaco2.srdata.store import COMPRESSION

    root = zarr.open_group(str(path), mode="r+")

    def rewrite(group, name, dst=None) -> None:
        old = group[name]
        data, attrs = old[...], dict(old.attrs)
        new = (group if dst is None else dst).create_array(
            name, shape=old.shape, dtype=old.dtype, chunks=old.chunks,
            compressors=(BloscCodec(**COMPRESSION),), fill_value=old.fill_value,
            dimension_names=old.metadata.dimension_names, overwrite=True,
        )  # fmt: skip
        new[...] = data
        new.attrs.update(attrs)

    for name, _ in list(root["index"].arrays()):
        rewrite(root["index"], name)
    for _, tg in root["tiles"].groups():
        for _, img in tg.groups():
            for name, _ in list(img.arrays()):
                rewrite(img, name)
        # version 1 kept the ROI mask as a plain image beside the scans, not as a label of HR
        label = tg["hr/labels/roi"]
        roi = tg.create_group("roi", overwrite=True)
        roi.attrs.update(dict(label.attrs))
        for name, _ in list(label.arrays()):
            rewrite(label, name, dst=roi)
        del tg["hr"]["labels"]
    root.attrs["srcaco2"] = dict(root.attrs["srcaco2"]) | {"format_version": 1}


def test_format_1_store_stays_readable_and_is_flagged(store_small, tmp_path):
    from srcaco2.srdata.inspect import store_info
    from srcaco2.srdata.loader import make_loader
    from srcaco2.srdata.verify import verify_store

    v1 = _copy(store_small, tmp_path)
    _as_format_1(v1)
    assert not has_checksums(open_root(str(v1))[image_path(1, 1)])
    assert verify_store(str(v1)) == []
    info = store_info(str(v1))
    assert info["format_version"] == 1 and info["checksums"] is False
    res = _srdata("info", v1)
    assert res.exit_code == 0 and "checksums NONE (format 1" in res.output
    res = _srdata("verify", v1)
    assert res.exit_code == 0 and "without chunk checksums" in res.output
    ref = make_loader(store_small, "test", 4, "CELL2", 1, 512, mode="eval")
    old = make_loader(str(v1), "test", 4, "CELL2", 1, 512, mode="eval")
    for a, b in zip(ref, old, strict=True):
        assert np.array_equal(a["hr"].numpy(), b["hr"].numpy())
        assert np.array_equal(a["lr"].numpy(), b["lr"].numpy())


def test_resuming_a_format_1_store_is_refused(store_small, raw_small, tmp_path):
    v1 = _copy(store_small, tmp_path)
    _as_format_1(v1)
    res = _srdata("build", raw_small, v1, "--no-register", "--chunk", "256")
    assert res.exit_code == 1 and "format_version 1" in res.output and "--overwrite" in res.output


@pytest.mark.parametrize("scheme", ["file", "memory"])
def test_build_into_an_fsspec_url(raw_tiny, tmp_path, scheme):
    """`srdata build RAW file:///abs/new/folders/s.zarr` (the audit: always failed) and memory://."""
    from srcaco2.srdata.verify import verify_store

    url = (
        f"file://{tmp_path}/new/folders/s.zarr"
        if scheme == "file"
        else f"memory://rel-{tmp_path.name}/s.zarr"
    )
    res = _srdata("build", raw_tiny, url, "--no-register", "--chunk", "256")
    assert res.exit_code == 0, res.output
    assert verify_store(url) == []
    if scheme == "file":
        assert verify_store(str(tmp_path / "new/folders/s.zarr")) == []
        assert not (tmp_path / "new/folders/s.zarr.lease").exists()


def test_import_patches_takes_the_store_lease(tmp_path):
    from srcaco2.srdata.import_patches import import_patches
    from srcaco2.srdata.lease import StoreLockedError, store_lease

    store = str(tmp_path / "s.zarr")
    with store_lease(store, operation="srdata build"):
        with pytest.raises(StoreLockedError, match="srdata build"):
            import_patches(tmp_path / "no-such-patches", store)
