"""Verify a store: does it keep the contract (docs/store.md)? `verify_store` lists every problem.

It needs nothing but the store ("the store is self-describing") and decodes every chunk of every
array, so it reads the whole store once (threads over chunks).
"""

from __future__ import annotations

import logging
import os
from collections.abc import Iterator
from concurrent.futures import ThreadPoolExecutor
from typing import Any

import numpy as np

from srcaco2.srdata.inspect import prediction_groups
from srcaco2.srdata.schema import (
    DTYPES,
    MAX_CHANNELS,
    PREDICTION_ATTRS,
    PREDICTION_FIELDS,
    PREDICTIONS,
    READABLE_FORMAT_VERSIONS,
    SCALE_RANGE,
    SPLITS,
    StoreAttrs,
    StoreFormatError,
    WindowGeometry,
    shift_slot,
)
from srcaco2.srdata.store import COVERAGE, Store, level_count

__all__ = ["verify_store"]

log = logging.getLogger(__name__)


def _check_attrs(raw: Any) -> list[str]:
    """Problems with the raw ``srcaco2`` attributes beyond what `StoreAttrs.from_json` checks."""
    out = []
    markers, scales = raw.markers, raw.scales
    if (
        not markers or len(markers) > MAX_CHANNELS or len(set(markers)) != len(markers)
        or not all(isinstance(m, str) and m for m in markers)
    ):  # fmt: skip
        out.append(f"attrs.markers={markers!r}: expected 1 to {MAX_CHANNELS} distinct names")
    if not scales or len(set(scales)) != len(scales) or any(s not in SCALE_RANGE for s in scales):
        out.append(f"attrs.scales={scales!r}: expected distinct integers from 2 to 8")
        scales = [s for s in scales if s in SCALE_RANGE]
    if raw.dtype not in DTYPES:
        out.append(f"attrs.dtype={raw.dtype!r}: expected one of {list(DTYPES)}")
    acqs = ["hr", *(f"x{s}" for s in scales)]
    px_all = raw.pixel_size_um if isinstance(raw.pixel_size_um, dict) else {}
    unknown = all(px_all.get(acq) is None for acq in acqs) and all(acq in px_all for acq in acqs)
    for acq in acqs:
        px = px_all.get(acq)
        if not unknown and (isinstance(px, bool) or not isinstance(px, (int, float)) or not px > 0):
            out.append(
                f"attrs.pixel_size_um[{acq!r}]={px!r}: expected a positive number (micrometres), "
                "or None for every acquisition (pixel size unknown)"
            )
        ch = raw.chunks.get(acq) if isinstance(raw.chunks, dict) else None
        if not isinstance(ch, int) or ch <= 0:
            out.append(f"attrs.chunks[{acq!r}]={ch!r}: expected a positive integer (pixels)")
    hr = raw.chunks.get("hr") if isinstance(raw.chunks, dict) else None
    for s in scales:
        lr = raw.chunks.get(f"x{s}") if isinstance(raw.chunks, dict) else None
        if isinstance(hr, int) and isinstance(lr, int) and hr != s * lr:
            out.append(f"attrs.chunks: hr={hr} != {s} x x{s}={lr}; chunk grids must align across scales")
    if sorted(set(raw.finished_tiles)) != sorted(set(raw.tiles)):
        out.append(
            f"attrs.finished_tiles={sorted(raw.finished_tiles)} != tiles={sorted(raw.tiles)}: "
            "the build did not finish; rerun `srdata build` (it resumes)"
        )
    if not raw.index_complete:
        out.append("attrs.index_complete is false: the window index was not finished; rerun `srdata build`")
    return out


def _multiscales_ok(group: Any, where: str) -> tuple[list[str], list[str]]:
    """(problems, dataset paths) of the OME-NGFF multiscales metadata of one image group."""
    ome = group.attrs.get("ome")
    ms = ome.get("multiscales") if isinstance(ome, dict) else group.attrs.get("multiscales")
    if not isinstance(ms, list) or not ms or not isinstance(ms[0], dict):
        return [
            f"{where}: no OME-NGFF multiscales metadata (attrs['ome']['multiscales']); rebuild the tile"
        ], []
    datasets = ms[0].get("datasets")
    if not isinstance(datasets, list) or not datasets:
        return [f"{where}: OME-NGFF multiscales lists no datasets; rebuild the tile"], []
    paths = [str(d.get("path")) for d in datasets if isinstance(d, dict)]
    problems = [
        f"{where}/{p}: listed in the multiscales metadata but missing" for p in paths if p not in group
    ]
    if not paths or paths[0] != "0":
        problems.append(f"{where}: the first multiscales dataset is {paths[:1]}, expected '0'")
    return problems, [p for p in paths if p in group]


def _chunk_slices(arr: Any) -> Iterator[tuple[tuple[int, ...], tuple[slice, ...]]]:
    grid = getattr(arr, "shards", None) or arr.chunks
    counts = [-(-n // g) for n, g in zip(arr.shape, grid, strict=True)]
    for idx in np.ndindex(*counts):
        yield (
            idx,
            tuple(slice(i * g, min((i + 1) * g, n)) for i, g, n in zip(idx, grid, arr.shape, strict=True)),
        )


def _blosc_problem(arr: Any, idx: tuple[int, ...]) -> str | None:
    """Compare a stored blosc chunk's byte count with its header (blosc itself does not: a
    truncated chunk of incompressible data decodes to garbage without an error)."""
    from zarr.codecs import BloscCodec, BytesCodec
    from zarr.core.buffer import default_buffer_prototype
    from zarr.core.sync import sync

    codecs = getattr(arr.metadata, "codecs", ())
    if len(codecs) != 2 or not isinstance(codecs[0], BytesCodec) or not isinstance(codecs[1], BloscCodec):
        return None  # sharded or other codecs: decoding is the check
    key = arr.metadata.encode_chunk_key(idx)
    buf = sync(arr.store.get(f"{arr.path}/{key}" if arr.path else key, prototype=default_buffer_prototype()))
    if buf is None:
        return None  # never written: reads as the fill value
    raw = buf.to_bytes()
    expected = int(np.prod(arr.chunks)) * arr.dtype.itemsize
    nbytes = int.from_bytes(raw[4:8], "little") if len(raw) >= 16 else -1
    cbytes = int.from_bytes(raw[12:16], "little") if len(raw) >= 16 else -1
    if cbytes != len(raw) or nbytes != expected:
        return (
            f"stored {len(raw)} bytes, its blosc header says {cbytes} bytes holding {nbytes} "
            f"(expected {expected}): truncated or corrupted"
        )
    return None


def _read_all_chunks(arrays: list[tuple[str, Any]], workers: int, *, checksummed: bool) -> list[str]:
    """Decode every chunk (shard) of every array; one problem per missing or unreadable chunk.

    With `checksummed` (format 2: every chunk is written and carries a crc32c), an array without the
    crc32c codec is a problem, and so is every chunk with no stored object.
    """
    from srcaco2.srdata.integrity import MANIFEST_ATTR, MISSING, chunk_faults, has_checksums, has_manifest

    problems: list[str] = []
    gone: set[tuple[str, tuple[int, ...]]] = set()
    misplaced: set[tuple[str, tuple[int, ...]]] = set()
    if checksummed:
        with_manifest = any(has_manifest(arr) for _, arr in arrays)
        for where, arr in arrays:
            if not has_checksums(arr):
                problems.append(
                    f"{where}: written without chunk checksums in a format-2 store; rebuild the tile"
                )
                continue
            if with_manifest and not has_manifest(arr):  # the others have one: this one's was removed
                problems.append(
                    f"{where}: has no chunk manifest ({MANIFEST_ATTR}) while the store's other arrays do: "
                    "its chunks cannot be checked against their place; rebuild the tile"
                )
            for idx, reason in sorted(chunk_faults(arr).items()):
                if reason != MISSING:
                    misplaced.add((where, idx))  # reported by the read below unless it fails to decode
                    continue
                gone.add((where, idx))
                problems.append(
                    f"{where}: chunk {'/'.join(map(str, idx))} is missing (its file was deleted or never "
                    "written; it would read as zeros); rebuild the tile or restore the file"
                )

    def read(job: tuple[str, Any, tuple[int, ...], tuple[slice, ...]]) -> str | None:
        where, arr, idx, sl = job
        name = f"{where}: chunk {'/'.join(map(str, idx))}"
        try:
            problem = _blosc_problem(arr, idx)
            if problem is not None:
                return f"{name}: {problem}; rewrite the tile (rebuild) or restore the file"
            arr[sl]
            if (where, idx) in misplaced:  # it decodes, but it is not the chunk written here
                return (
                    f"{name} is not the chunk written there (its checksum differs from the array's chunk "
                    "manifest: moved, copied from another tile, level or key, or rewritten); rebuild the "
                    "tile or restore the file"
                )
        except Exception as exc:  # noqa: BLE001 - any decode failure is a finding
            text = " ".join(str(exc).split())
            if "checksum" in text.lower():
                return (
                    f"{name} fails its crc32c checksum (the stored bytes changed after writing); "
                    "rebuild the tile or restore the file"
                )
            return (
                f"{name} cannot be read ({type(exc).__name__}: {text}); rebuild the tile or restore the file"
            )
        return None

    jobs = ((w, a, idx, sl) for w, a in arrays for idx, sl in _chunk_slices(a) if (w, idx) not in gone)
    with ThreadPoolExecutor(max_workers=max(1, workers)) as pool:
        return problems + [r for r in pool.map(read, jobs) if r is not None]


def _check_roi_label(st: Store, tile: int) -> list[str]:
    """The ROI as an OME-NGFF label of the HR image: listed in ``hr/labels``, as many levels as HR."""
    root, groups = st.root, st.tile_groups(tile)
    roi, hr = groups["roi"], groups["hr"]
    if not roi.startswith(f"{hr}/labels/") or roi not in root or hr not in root:
        return []  # format version 1 (a plain image) or missing (reported above)
    labels = root[f"{hr}/labels"].attrs.get("ome", {})
    out = []
    if roi.rsplit("/", 1)[1] not in (labels.get("labels") or []):
        out.append(f"{hr}/labels: attrs['ome']['labels'] does not list the ROI; rebuild the tile")
    n_roi, n_hr = level_count(root[roi]), level_count(root[hr])
    if n_roi != n_hr:
        out.append(f"{roi}: {n_roi} levels but its image {hr} has {n_hr}; rebuild the tile")
    return out


def _check_tile(st: Store, tile: int, arrays: list[tuple[str, Any]]) -> list[str]:
    out: list[str] = []
    root, attrs, groups = st.root, st.attrs, st.tile_groups(tile)
    key = groups["hr"].rsplit("/", 1)[0]
    if key not in root:
        return [f"{key}: missing (tile {tile} is listed in attrs.tiles); rebuild the store"]
    level0: dict[str, Any] = {}
    for name, group in groups.items():
        if group not in root:
            if name != COVERAGE:
                out.append(f"{group}: missing; rebuild the tile")
            continue
        problems, paths = _multiscales_ok(root[group], group)
        out += problems
        for p in paths:
            arrays.append((f"{group}/{p}", root[group][p]))
        if "0" in root[group]:
            level0[name] = root[group]["0"]
    out += _check_roi_label(st, tile)
    if groups["hr"] in root:  # the channel names written with the pixels are the store's markers
        omero = (root[groups["hr"]].attrs.get("ome") or {}).get("omero") or {}
        labels = [str(c.get("label")) for c in omero.get("channels") or []]
        if labels and labels != list(attrs.markers):
            out.append(
                f"attrs.markers={list(attrs.markers)} differ from the channel names {labels} of "
                f"{groups['hr']}; rebuild the store"
            )
    hr = level0.get("hr")
    if hr is None:
        return out
    nc = len(attrs.markers)
    if hr.ndim != 3 or hr.shape[0] != nc:
        out.append(f"{key}/hr/0: shape {list(hr.shape)}, expected ({nc}, y, x) for markers {attrs.markers}")
        return out
    H, W = hr.shape[1:]
    for name, arr in level0.items():
        want = np.uint8 if name in ("roi", COVERAGE) else np.dtype(attrs.dtype)
        if arr.dtype != want:
            out.append(f"{key}/{name}/0: dtype {arr.dtype}, expected {np.dtype(want)} (attrs.dtype)")
    for name in ("roi", "coverage"):
        if name in level0 and tuple(level0[name].shape) != (H, W):
            where = groups[name]
            out.append(f"{where}/0: shape {list(level0[name].shape)}, expected the HR extent {[H, W]}")
    hr_chunk = hr.chunks[-2:]
    if attrs.chunks.get("hr") is not None and hr_chunk != (attrs.chunks["hr"],) * 2:
        out.append(f"{key}/hr/0: chunks {list(hr_chunk)} differ from attrs.chunks['hr']={attrs.chunks['hr']}")
    for s in attrs.scales:
        lr = level0.get(f"x{s}")
        if lr is None or s not in SCALE_RANGE:
            continue
        where = f"{key}/x{s}/0"
        if lr.ndim != 3 or lr.shape[0] != nc:
            out.append(f"{where}: shape {list(lr.shape)}, expected ({nc}, y, x)")
            continue
        if (H, W) != (s * lr.shape[1], s * lr.shape[2]):
            out.append(f"{where}: extent {list(lr.shape[1:])} x {s} != HR extent {[H, W]}; rebuild the tile")
        lr_chunk = lr.chunks[-2:]
        if hr_chunk != (s * lr_chunk[0], s * lr_chunk[1]):
            out.append(
                f"{where}: chunks {list(lr_chunk)} x {s} != HR chunks {list(hr_chunk)} (grids must align)"
            )
        hs, ls = getattr(hr, "shards", None), getattr(lr, "shards", None)
        if hs is not None and ls is not None and tuple(hs[-2:]) != (s * ls[-2], s * ls[-1]):
            out.append(f"{where}: shards {list(ls[-2:])} x {s} != HR shards {list(hs[-2:])}")
    return out


def _check_predictions(
    root: Any, attrs: StoreAttrs, extents: dict[int, tuple[int, int]], arrays: list[tuple[str, Any]]
) -> list[str]:
    """Problems of the ``predictions/<name>/<tile>`` groups (metadata, extents; chunks via `arrays`)."""
    out: list[str] = []
    fix = "rerun `srtrain predict` for it or delete the group"
    for _name, key, grp in prediction_groups(root):
        where = f"{PREDICTIONS}/{_name}/{key}"
        if key not in {str(t) for t in attrs.tiles}:
            out.append(f"{where}: not a tile of this store (tiles are {sorted(attrs.tiles)}); {fix}")
            continue
        if "ome" not in grp.attrs:
            out.append(f"{where}: no OME metadata, the prediction was interrupted; {fix}")
            continue
        problems, paths = _multiscales_ok(grp, where)
        out += problems
        arrays += [(f"{where}/{p}", grp[p]) for p in paths]
        meta = grp.attrs.get(PREDICTION_ATTRS)
        have = set(meta) if isinstance(meta, dict) else set()
        missing = sorted(set(PREDICTION_FIELDS) - have)
        if missing:
            out.append(f"{where}: attrs[{PREDICTION_ATTRS!r}] lacks {missing}; {fix}")
            continue
        markers = meta["markers"]
        if not isinstance(markers, list) or not markers or any(m not in attrs.markers for m in markers):
            out.append(f"{where}: markers {markers!r} are not markers of the store {attrs.markers}; {fix}")
        if meta["scale"] not in attrs.scales:
            out.append(f"{where}: scale {meta['scale']!r} is not one of the store's {attrs.scales}; {fix}")
        if str(meta["source_tile"]) != key:
            out.append(f"{where}: source_tile {meta['source_tile']!r} != its group name {key}; {fix}")
        if "0" not in grp:
            continue
        level0 = grp["0"]
        hw = extents.get(key)
        n_c = len(markers) if isinstance(markers, list) else -1
        if level0.dtype != np.dtype(attrs.dtype):
            out.append(f"{where}/0: dtype {level0.dtype}, expected {attrs.dtype} (the store's)")
        if hw is not None and tuple(level0.shape) != (n_c, *hw):
            out.append(
                f"{where}/0: shape {list(level0.shape)}, expected {[n_c, *hw]} (its markers x the HR extent "
                f"of tile {key}); {fix}"
            )
    return out


def _check_index(
    index: dict[str, np.ndarray], attrs: StoreAttrs, extents: dict[int, tuple[int, int]]
) -> list[str]:
    out: list[str] = []
    n = len(index["tile"])

    def report(mask: np.ndarray, what: str) -> None:
        bad = np.flatnonzero(mask)
        if bad.size:
            rows = ", ".join(
                f"row {r} (tile {index['tile'][r]}, y0={index['y0'][r]}, x0={index['x0'][r]})"
                for r in bad[:5]
            )
            more = f" and {bad.size - 5} more" if bad.size > 5 else ""
            out.append(f"index: {bad.size} window(s) {what}: {rows}{more}")

    tiles = [str(t) for t in attrs.tiles]
    report(~np.isin(index["tile"].astype(str), tiles), "on a tile not listed in attrs.tiles")
    y0, x0, size = (index[k].astype(np.int64) for k in ("y0", "x0", "size"))
    geo = WindowGeometry.from_attrs(attrs.roi)
    report(size != geo.size, f"with size != {geo.size} (the store's window)")
    H = np.array([extents.get(str(t), (0, 0))[0] for t in index["tile"]], dtype=np.int64)
    W = np.array([extents.get(str(t), (0, 0))[1] for t in index["tile"]], dtype=np.int64)
    report((y0 < 0) | (x0 < 0) | (y0 + size > H) | (x0 + size > W), "outside the HR extent of their tile")
    for s in attrs.scales:
        if s not in SCALE_RANGE:
            continue
        report((y0 % s != 0) | (x0 % s != 0), f"with y0/x0 not multiples of scale {s}")
        report(
            (y0 // s + size // s > H // s) | (x0 // s + size // s > W // s) | (y0 < 0) | (x0 < 0),
            f"outside the x{s} LR extent of their tile",
        )
    report(
        ~np.isin(index["split"], [-1, *range(len(SPLITS))]), f"with a split code not in -1..{len(SPLITS) - 1}"
    )
    report(index["official_patch_id"] < -1, "with official_patch_id < -1")
    rf = index["roi_fraction"]
    report(~((rf >= 0) & (rf <= 1)), "with roi_fraction outside [0, 1]")
    slots = [shift_slot(attrs.markers, attrs.scales, m, s) for m in attrs.markers for s in attrs.scales]
    if n:
        shift = np.stack([index["shift"][:, i, k] for i, k in slots], 1).reshape(n, -1)
        report(
            np.abs(shift.astype(np.int64)).max(axis=1) > geo.margin,
            f"with a registration shift beyond ±{geo.margin} px (the window's margin)",
        )
        tile_no = np.unique(index["tile"].astype(str), return_inverse=True)[1].astype(np.int64)
        keys = tile_no * 2**42 + y0 * 2**21 + x0
        _, first, counts = np.unique(keys, return_index=True, return_counts=True)
        dup = np.zeros(n, dtype=bool)
        dup[first[counts > 1]] = True
        report(dup, "listed more than once")
    return out


def verify_store(path: str | Any, *, read_chunks: bool = True, workers: int = 4) -> list[str]:
    """Check a store against the contract; return a list of problems (empty = OK).

    Checks: root attributes (format version, markers, scales, pixel sizes, aligned chunk edges,
    ``finished_tiles == tiles``, ``index_complete``); every tile has ``hr``, ``x{s}`` and ``roi``
    with OME-NGFF multiscales metadata; level-0 dtypes, channel count and extents (HR = s × LR),
    chunk (and shard) grids aligned (HR chunk = s × X`s` chunk); every chunk of every level decodes
    (`read_chunks`): in a format-2 store every chunk must exist and pass its crc32c checksum (a
    format-1 store has no checksums: a missing chunk reads as zeros and cannot be told from an
    empty one, see `checksummed`); the index columns, and every window inside its tile's HR and LR
    extents, split codes valid, shifts within ± the window's margin (a larger one moves the patch
    out of its window), no duplicate window; every prediction group ``predictions/<name>/<tile>``
    complete (OME metadata), of a listed tile, with its ``srcaco2_prediction`` attributes (markers
    and scale of the store), level 0 of the store's dtype and (markers, HR extent), every chunk
    decodable.

    Parameters
    ----------
    path : str or path-like
        Local path or fsspec URL.
    read_chunks : bool
        Decode every chunk (reads the whole store); False checks metadata and index only.
    workers : int
        Threads used to decode chunks.

    Returns
    -------
    list of str
        One sentence per problem, naming the array / chunk / attribute / window.
    """
    p = os.fspath(path) if not isinstance(path, str) else path
    from srcaco2.srdata.lease import live_writer

    writer = live_writer(p)
    if writer is not None:  # a store mid-write is not damaged: say who writes it
        return [f"{writer}; it is being written now: verify it after that writer finishes"]
    try:
        st = Store.open(p)
        root, attrs = st.root, st.attrs
    except StoreFormatError as exc:
        return [str(exc)]
    if attrs.format_version not in READABLE_FORMAT_VERSIONS:  # pragma: no cover - from_json refuses already
        return [f"{p}: format_version {attrs.format_version}"]
    problems = _check_attrs(attrs)
    arrays: list[tuple[str, Any]] = []
    extents: dict[int, tuple[int, int]] = {}
    for tile in attrs.tiles:
        problems += _check_tile(st, tile, arrays)
        hr = st.tile_groups(tile)["hr"] + "/0"
        if hr in root and root[hr].ndim == 3:
            extents[str(tile)] = tuple(int(n) for n in root[hr].shape[1:])
    extra = st.unlisted_tile_groups()
    if extra:
        problems.append(f"tiles: groups {extra} are not listed in attrs.tiles")
    problems += _check_predictions(root, attrs, extents, arrays)
    if "index" in root:
        for name in root["index"].array_keys():
            arrays.append((f"index/{name}", root["index"][name]))
    if attrs.index_complete:
        try:
            index = st.index()
        except StoreFormatError as exc:
            problems.append(str(exc))
        except Exception as exc:  # noqa: BLE001 - a corrupted index chunk
            problems.append(f"index: cannot be read ({type(exc).__name__}: {exc})")
        else:
            problems += _check_index(index, attrs, extents)
    if read_chunks:
        log.info("decoding every chunk of %d arrays", len(arrays))
        problems += _read_all_chunks(arrays, workers, checksummed=attrs.format_version >= 2)
    return problems
