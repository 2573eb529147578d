"""Build a store from raw tiles: acquisitions, ROI masks, window index, registration shifts.

`build_store` is resumable and idempotent. Per tile, in this order: delete any partial arrays of
the tile, write HR, x2, x4, x8 (OME-NGFF, chunk grids aligned: HR chunk = s x the X`s` chunk), the
ROI mask, then the tile's window table (in the tile group's attrs ``windows``), and only then
record the tile in ``finished_tiles``. The index is written last, from the tables of all tiles,
followed by ``index_complete``. A rerun skips finished tiles, so a build killed at any point and
rerun ends with the same arrays, chunk for chunk, as an uninterrupted build.

Pixels never pass through the calling process (the *client*): the raw TIFFs are Dask arrays of
lazy region reads (`srcaco2.srdata.rawtiles.lazy_tile`), the pyramids, the ROI mask and the per-window ROI
fractions are Dask graphs computed where the scheduler runs them, and only metadata (a histogram
for Otsu, a grid of ROI counts, the shifts) comes back. (``--scheduler processes`` runs a
``dask.distributed`` ``LocalCluster`` of that many single-threaded worker processes, not Dask's local
multiprocessing scheduler, which would route every intermediate result through the client.)

Registration (TV-L1, the slow part: 9 estimates per window by default; numba ~0.1-0.2 s per 640²
estimate, skimage ~2-4 s) runs as a stream of window tasks (`srcaco2.srdata.registration.
register_store_windows`): each task reads its own window from the store being written (level 0 of
HR and LR, already written) and returns only the shifts; tasks are submitted with a bounded number
in flight to a thread pool (numba releases the GIL), a process pool, or the ``dask.distributed``
cluster. Each finished window's shifts are saved at once under ``_build/registration/<tile>``
(group attrs, outside the tile group); a rerun after a kill reuses them and computes only the
missing windows. The ``_build`` group is deleted when its tile is finished and before the index is
written, so a finished store holds no trace of it. ``BuildConfig.register_markers`` /
``register_scales`` restrict the estimates; ``source["registration"]`` records
``{"method", "implementation", "markers", "scales"}`` (``implementation``: ``numba`` or
``skimage``, `BuildConfig.registration_impl`) and every other (marker, scale) pair keeps shift 0.
"""

from __future__ import annotations

import dataclasses
import datetime
import logging
import math
import os
from collections.abc import Callable
from typing import Any, Literal

import numpy as np

from srcaco2.srdata.intensity import percentile_intensity
from srcaco2.srdata.layout import RawInputError
from srcaco2.srdata.lease import leased
from srcaco2.srdata.manifest import is_manifest, read_manifest
from srcaco2.srdata.rawtiles import RawTiles, from_manifest, lazy_tile, raw_pixel_size, validate_raw
from srcaco2.srdata.registration import DEFAULT_IMPLEMENTATION, IMPLEMENTATIONS, register_store_windows
from srcaco2.srdata.roi import roi_mask, roi_threshold_lazy, window_grid, window_roi_fraction_lazy
from srcaco2.srdata.schedulers import check_scheduler, dask_scheduler, registration_pool
from srcaco2.srdata.schema import (
    FORMAT_VERSION,
    MARKERS,
    SCALE_RANGE,
    SCALES,
    StoreAttrs,
    StoreFormatError,
    WindowGeometry,
    pixel_sizes,
    split_code,
)
from srcaco2.srdata.split import (
    is_official_set,
    official_fold_lines,
    official_patch_ids,
    official_patches,
    tile_split,
)
from srcaco2.srdata.store import Store, create_store, remove_store, store_exists
from srcaco2.srdata.writer import mark_tile_finished, write_image, write_index, write_roi

__all__ = ["BuildConfig", "BuildEvent", "BuildError", "build_store"]

log = logging.getLogger(__name__)

REGISTRATION_METHOD = "tvl1-mean-rounded"
"""``source["registration"]["method"]``: rounded mean of skimage's default TV-L1 flow
(docs/protocol.md#registration)."""
_SCRATCH = "_build"  # per-window registration progress of unfinished tiles; removed when the build ends


class BuildError(RuntimeError):
    """The build stopped (I/O failure while writing); the message says where and how to resume."""


@dataclasses.dataclass(frozen=True)
class BuildConfig:
    """Options of `build_store`.

    Attributes
    ----------
    chunk : int
        HR chunk edge, px (multiple of 8); the /s acquisition uses ``chunk // s``.
    roi_threshold : int
        ROI = HR CELL2 >= threshold (``roi_method="fixed"``; SR-CACO-2: 4).
    roi_min_fraction : float
        A window is accepted iff its central 128² holds at least this ROI fraction (0.2).
    roi_method : {"fixed", "otsu"}
        ``otsu``: per-tile threshold from ``skimage.filters.threshold_otsu`` of HR CELL2.
    split : {"auto", "official"}
        See `srcaco2.srdata.split.tile_split`.
    register : bool
        Estimate per-window shifts (TV-L1); False stores shift 0.
    register_markers : tuple of str, optional
        Markers to register (default all of `MARKERS`); the others keep shift 0.
    register_scales : tuple of int, optional
        Scales to register (default all of `SCALES`); the others keep shift 0.
    overwrite : bool
        Delete an existing store at the path first (only if it is a srcaco2 store).
    pixel_size_um : float, optional
        HR pixel size, micrometres (OME-NGFF scale metadata; /s acquisitions get s times it).
        None (default): read from the HR TIFFs' metadata, else recorded as unknown
        (`srcaco2.srdata.rawtiles.raw_pixel_size`).
    registration_impl : {"numba", "skimage"}
        TV-L1 implementation (same algorithm and parameters; `srcaco2.srdata.registration`), recorded in
        ``source["registration"]["implementation"]``.
    """

    chunk: int = 512
    roi_threshold: int = 4
    roi_min_fraction: float = 0.2
    roi_method: Literal["fixed", "otsu"] = "fixed"
    split: Literal["auto", "official"] = "auto"
    register: bool = True
    register_markers: tuple[str, ...] | None = None
    register_scales: tuple[int, ...] | None = None
    overwrite: bool = False
    pixel_size_um: float | None = None
    registration_impl: str = DEFAULT_IMPLEMENTATION

    def __post_init__(self) -> None:
        if self.pixel_size_um is not None and not float(self.pixel_size_um) > 0:
            raise ValueError(f"pixel_size_um={self.pixel_size_um}: must be > 0 µm, or None (from metadata)")
        if self.chunk <= 0 or self.chunk % 8:
            raise ValueError(f"chunk={self.chunk}: the HR chunk edge must be a positive multiple of 8 px")
        if not 0.0 <= self.roi_min_fraction <= 1.0:
            raise ValueError(f"roi_min_fraction={self.roi_min_fraction} must be in [0, 1]")
        if self.roi_method not in ("fixed", "otsu"):
            raise ValueError(f"roi_method={self.roi_method!r}: use 'fixed' or 'otsu'")
        if self.split not in ("auto", "official"):
            raise ValueError(f"split={self.split!r}: use 'auto' or 'official'")
        if self.registration_impl not in IMPLEMENTATIONS:
            raise ValueError(
                f"registration_impl={self.registration_impl!r}: use one of {list(IMPLEMENTATIONS)}"
            )
        if self.register_markers is not None and not self.register_markers:
            raise ValueError("register_markers=[]: choose one or more markers (or leave it out: all)")
        if self.register_scales is not None and (
            not self.register_scales or any(int(s) not in SCALE_RANGE for s in self.register_scales)
        ):
            raise ValueError(f"register_scales={list(self.register_scales)}: choose scales from 2 to 8")

    def for_raw(self, raw: RawTiles) -> BuildConfig:
        """This configuration with the registered markers / scales checked against `raw` and put in
        its order (equal subsets compare equal on resume).

        Raises
        ------
        ValueError
            A register marker or scale the raw set does not hold.
        """
        markers = raw.markers if self.register_markers is None else tuple(self.register_markers)
        scales = raw.scales if self.register_scales is None else tuple(map(int, self.register_scales))
        if any(m not in raw.markers for m in markers):
            raise ValueError(f"register_markers={list(markers)}: choose one or more of {list(raw.markers)}")
        if any(s not in raw.scales for s in scales):
            raise ValueError(f"register_scales={list(scales)}: choose one or more of {list(raw.scales)}")
        return dataclasses.replace(
            self,
            register_markers=tuple(m for m in raw.markers if m in markers),
            register_scales=tuple(s for s in raw.scales if s in scales),
        )

    def registration(self) -> dict[str, Any] | str:
        """What the build registers (``source["registration"]``): ``"none"`` or method, markers, scales
        (call on `for_raw`'s result)."""
        if not self.register:
            return "none"
        return {
            "method": REGISTRATION_METHOD,
            "implementation": self.registration_impl,
            "markers": list(self.register_markers or MARKERS),
            "scales": list(self.register_scales or SCALES),
        }


@dataclasses.dataclass(frozen=True)
class BuildEvent:
    """Progress report.

    ``stage`` is one of ``validate``, ``tile`` (starting a tile), ``write`` (an acquisition
    written), ``roi``, ``register``, ``skip`` (tile already built), ``finished`` (tile done, built
    or skipped; ``done`` of ``total`` tiles), ``index``, ``done``.
    """

    stage: str
    tile: int | None = None
    done: int = 0
    total: int = 0
    detail: str = ""


def _geometry(raw: RawTiles, cfg: BuildConfig) -> WindowGeometry:
    """SR-CACO-2's windows for the official layout; a manifest's (made whole LR pixels) otherwise."""
    if raw.manifest is None:
        return WindowGeometry(min_fraction=cfg.roi_min_fraction)
    win = raw.manifest.window
    return WindowGeometry.for_scales(
        raw.scales,
        size=win["size"],
        stride=win["stride"],
        center=win["center"],
        min_fraction=win["min_fraction"],
    )


def _hr_chunk(raw: RawTiles, cfg: BuildConfig) -> int:
    """The HR chunk edge: `cfg.chunk`, made a multiple of every scale (grids aligned across scales)."""
    m = math.lcm(*raw.scales)
    return cfg.chunk if cfg.chunk % m == 0 else max(m, cfg.chunk // m * m)


def _store_attrs(raw: RawTiles, cfg: BuildConfig) -> StoreAttrs:
    man = raw.manifest
    kind = (
        "manifest"
        if man is not None
        else "synth"
        if os.path.exists(os.path.join(raw.root, "synth.json"))
        else "raw"
    )
    px = raw_pixel_size(raw, cfg.pixel_size_um if man is None else (cfg.pixel_size_um or man.pixel_size_um))
    chunk = _hr_chunk(raw, cfg)
    roi = {"threshold": cfg.roi_threshold, "method": cfg.roi_method, "marker": "CELL2"}
    if man is not None:
        roi = {
            "threshold": man.roi.get("threshold"),
            "method": man.roi["method"],
            "marker": man.roi["channel"],
        }
    source: dict[str, Any] = {
        "kind": kind,
        "input": os.path.abspath(raw.root),
        "tool": "srcaco2 srdata build",
        "date": datetime.datetime.now(datetime.timezone.utc).isoformat(timespec="seconds"),
        "registration": cfg.registration(),
        "pixel_size": px.to_json(),
        "split": cfg.split,
    }
    if man is not None:
        source |= {"manifest_sha256": man.sha256, "tile_extents": {t.id: list(t.extent) for t in man.tiles}}
    return StoreAttrs(
        format_version=FORMAT_VERSION,
        markers=list(raw.markers),
        scales=list(raw.scales),
        pixel_size_um=pixel_sizes(px.um, raw.scales),
        chunks={"hr": chunk, **{f"x{s}": chunk // s for s in raw.scales}},
        tiles=list(raw.tiles),
        finished_tiles=[],
        roi=roi | _geometry(raw, cfg).to_attrs(),
        source=source,
        dtype=raw.dtype,
    )


def _check_same_source(st: Store, new: StoreAttrs, raw_tiles: RawTiles) -> None:
    """Refuse to resume a store built from other raw data: another input folder, or a finished tile
    whose HR extent differs from this raw set's (a resume would mix two data sets silently)."""
    old, store = st.attrs, st.path
    before, now = old.source.get("input"), new.source.get("input")
    if before and now and os.path.realpath(str(before)) != os.path.realpath(str(now)):
        raise StoreFormatError(
            f"{store}: this store was built from {before}, not {now}; build into a new STORE path, or pass "
            "--overwrite to replace it"
        )
    if old.source.get("manifest_sha256") != new.source.get("manifest_sha256"):
        raise StoreFormatError(
            f"{store}: this store was built from another version of {now} (the manifest changed since); "
            "build into a new STORE path, or pass --overwrite to replace it"
        )
    if old.dtype != new.dtype:
        raise StoreFormatError(
            f"{store}: this store holds {old.dtype} pixels, {now} {new.dtype}; build into a new STORE path, "
            "or pass --overwrite to replace it"
        )
    for t in old.finished_tiles:
        if t in raw_tiles.extent:
            have = tuple(int(v) for v in st.tile_image(t, 1).shape[1:])
            if have != tuple(raw_tiles.extent[t]):
                raise StoreFormatError(
                    f"{store}: tile {t} in the store is {have[0]}x{have[1]} HR px but the raw tile is "
                    f"{raw_tiles.extent[t][0]}x{raw_tiles.extent[t][1]}: this store was built from "
                    "other raw data; build into a new STORE path, or pass --overwrite to replace it"
                )


def _scratch_path(tile: Any) -> str:
    return f"{_SCRATCH}/registration/{tile}"


def _load_partial(
    root: Any, tile: Any, y0: np.ndarray, x0: np.ndarray, reg: Any, shape: tuple[int, ...]
) -> dict[int, np.ndarray]:
    """Shifts persisted by an interrupted build of `tile` (same windows, same registration), else {}."""
    key = _scratch_path(tile)
    try:
        if key not in root:
            return {}
        got = root[key].attrs.get("partial")
        if not got or got["y0"] != y0.tolist() or got["x0"] != x0.tolist() or got["registration"] != reg:
            log.info("tile %s: registration progress of another window set/options, recomputing", tile)
            return {}
        return {int(k): np.asarray(v, np.int16).reshape(shape) for k, v in got["shift"].items()}
    except Exception as exc:  # noqa: BLE001 - a half-written progress record is recomputed, not fatal
        log.warning("tile %s: unreadable registration progress (%s), recomputing", tile, exc)
        return {}


def _register_tile(
    st: Store,
    store: str,
    tile: int,
    y0: np.ndarray,
    x0: np.ndarray,
    cfg: BuildConfig,
    pool: str,
    workers: int | None,
    emit: Callable[[BuildEvent], None],
) -> np.ndarray:
    """(N, markers, scales, 2) shifts of the accepted windows, persisted window by window.

    The tasks read their windows from `store` (the tile's level-0 arrays are written already).
    Each finished window's shift is written at once to ``_build/registration/<tile>`` (group
    attrs); a rerun after a kill reuses them and computes only the missing windows.
    """
    reg = _norm_json(cfg.registration())
    root = st.root
    n_markers, axis = st.shift_axes
    known = _load_partial(root, tile, y0, x0, reg, (n_markers, len(axis), 2))
    if known:
        log.info("tile %s: resuming registration, %d of %d windows already done", tile, len(known), len(y0))
    key = _scratch_path(tile)
    grp = root[key] if known else root.create_group(key, overwrite=True)  # overwrite: drop a bad record
    record: dict[str, Any] = {
        "y0": y0.tolist(), "x0": x0.tolist(), "registration": reg,
        "shift": {str(k): v.ravel().tolist() for k, v in known.items()},
    }  # fmt: skip

    def save(k: int, shift: np.ndarray) -> None:
        record["shift"][str(k)] = shift.ravel().tolist()
        grp.attrs["partial"] = record

    chans = tuple(st.shift_slot(m, axis[0])[0] for m in (cfg.register_markers or st.markers))
    n = len(y0)
    emit(BuildEvent("register", tile, len(known), n, "resumed" if known else ""))
    return register_store_windows(
        store, tile, y0, x0,
        scales=tuple(cfg.register_scales or st.scales), markers=chans, pool=pool, workers=workers,  # type: ignore[arg-type]
        known=known, on_result=save, progress=lambda d: emit(BuildEvent("register", tile, d, n)),
        implementation=cfg.registration_impl,
    )  # fmt: skip


def _norm_json(value: Any) -> Any:
    import json

    return json.loads(json.dumps(value))


def _drop_scratch(root: Any, tile: int | None = None) -> None:
    key = _SCRATCH if tile is None else _scratch_path(tile)
    if key in root:
        del root[key]


def _worker_url(store: str) -> str:
    """`store` as every worker can open it: local paths made absolute, URLs kept."""
    return store if "://" in str(store) else os.path.abspath(store)


def _build_tile(
    st: Store,
    raw: RawTiles,
    tile: int,
    cfg: BuildConfig,
    emit: Callable[[BuildEvent], None],
    pool: str = "threads",
    workers: int | None = None,
    store: str | None = None,
) -> None:
    """Write one tile's arrays and window table, then mark it finished.

    Every pixel operation is a Dask graph run by the active scheduler (reads of the raw TIFFs
    included); this function holds metadata only.
    """
    from srcaco2.srdata.ome import BLOCK_PX

    root = st.root
    root.create_group(st.tile_group_path(tile), overwrite=True)  # drops a partial tile
    # Dask blocks = the writer's blocks (whole c, ~2048 px, multiples of the chunk): no rechunk
    chunk, acqs, geo = int(st.attrs.chunks["hr"]), raw.acquisitions, st.geometry
    blocks = {s: (chunk // s) * max(1, BLOCK_PX // (chunk // s)) for s in acqs}
    acq = lazy_tile(raw, tile, blocks=blocks)
    for k, s in enumerate(acqs):
        write_image(st, tile, s, acq[s], chunk=chunk // s)  # pixel size: the store's attrs
        emit(BuildEvent("write", tile, k + 1, len(acqs), f"x{s}" if s > 1 else "hr"))
    hr = acq[1]
    roi = st.attrs.roi
    plane = hr[st.markers.index(roi["marker"])]
    thr = roi_threshold_lazy(plane, method=roi["method"], threshold=roi["threshold"])
    write_roi(st, tile, roi_mask(plane, thr), chunk=chunk)
    y0, x0 = window_grid(hr.shape[1], hr.shape[2], size=geo.size, stride=geo.stride)
    import dask.array as da

    frac = window_roi_fraction_lazy(da.from_zarr(st.roi(tile)), y0, x0, size=geo.size, center=geo.center)
    accepted = frac >= geo.min_fraction
    emit(BuildEvent("roi", tile, int(accepted.sum()), len(y0), f"threshold {thr}"))
    n_markers, axis = st.shift_axes
    shift = np.zeros((len(y0), n_markers, len(axis), 2), np.int16)
    if cfg.register and accepted.any():
        sel = accepted
        url = _worker_url(store if store is not None else str(root.store))
        shift[sel] = _register_tile(st, url, tile, y0[sel], x0[sel], cfg, pool, workers, emit)
    st.tile_group(tile).attrs["windows"] = {
        "threshold": thr,
        "y0": y0.tolist(),
        "x0": x0.tolist(),
        "roi_fraction": frac.astype(np.float32).tolist(),
        "accepted": accepted.tolist(),
        "shift": shift.tolist(),
    }
    mark_tile_finished(st, tile)
    _drop_scratch(root, tile)


def _assemble_index(st: Store, raw: RawTiles, cfg: BuildConfig) -> dict[str, np.ndarray]:
    parts: dict[str, list[np.ndarray]] = {
        k: [] for k in ("tile", "y0", "x0", "roi_fraction", "accepted", "shift")
    }
    n_markers, axis = st.shift_axes
    named = any(isinstance(t, str) for t in raw.tiles)
    for t in raw.tiles:
        w = st.tile_group(t).attrs["windows"]
        n = len(w["y0"])
        parts["tile"].append(np.full(n, t, object if named else np.int32))
        parts["y0"].append(np.asarray(w["y0"], np.int32))
        parts["x0"].append(np.asarray(w["x0"], np.int32))
        parts["roi_fraction"].append(np.asarray(w["roi_fraction"], np.float32))
        parts["accepted"].append(np.asarray(w["accepted"], bool))
        parts["shift"].append(np.asarray(w["shift"], np.int16).reshape(n, n_markers, len(axis), 2))
    cols = {k: np.concatenate(v) for k, v in parts.items()}
    official = raw.manifest is None and is_official_set(raw.extent)
    codes = tile_split(raw.tiles, mode=cfg.split, official=official)
    if raw.manifest is not None:  # the manifest's own split wins where it gives one
        codes |= {t.id: split_code(t.split) for t in raw.manifest.tiles if t.split is not None}
    split = np.array([codes[t] for t in cols["tile"]], np.int8)
    cols["split"] = np.where(cols["accepted"], split, -1).astype(np.int8)
    cols["size"] = np.full(len(cols["tile"]), st.geometry.size, np.int32)
    oid = np.full(len(cols["tile"]), -1, np.int32)
    fold = np.full(len(cols["tile"]), -1, np.int32)
    if official or cfg.split == "official":
        acc = cols["accepted"]
        oid[acc] = official_patch_ids(cols["tile"][acc], cols["y0"][acc], cols["x0"][acc])
        fold[acc] = official_fold_lines(cols["tile"][acc], cols["y0"][acc], cols["x0"][acc])
        n_off = len(official_patches()["tile"])
        if (oid[acc] < 0).any() or int(acc.sum()) != n_off:
            log.warning(
                "accepted windows (%d) differ from the official list (%d): %d accepted have no official id",
                int(acc.sum()), n_off, int((oid[acc] < 0).sum()),
            )  # fmt: skip
    cols["official_patch_id"] = oid
    cols["fold_line"] = fold
    return {k: cols[k] for k in st.index_columns if k in cols}  # shift_subpixel: `srdata register-subpixel`


@leased("srdata build")  # one writer per store: a second build is refused, naming this one
def build_store(
    raw: str | os.PathLike,
    store: str,
    config: BuildConfig = BuildConfig(),
    *,
    scheduler: str = "threads",
    workers: int | None = None,
    progress: Callable[[BuildEvent], None] | None = None,
) -> dict[str, Any]:
    """Build (or resume building) a store from a raw-tile directory.

    Parameters
    ----------
    raw : path
        Directory in the official layout (`srcaco2.srdata.layout`).
    store : str
        Local path or fsspec URL of the Zarr v3 store to write.
    config : BuildConfig
    scheduler : str
        ``threads`` (default), ``processes``, ``sync`` or a ``dask.distributed`` address. Every
        pixel operation (TIFF reads, pyramids, ROI) is a Dask graph run by it; TV-L1 registration
        streams window tasks to local threads (numba; processes for skimage) for ``threads``, this
        process for ``sync`` and the cluster's workers for ``processes`` (a local
        ``dask.distributed`` cluster, `srcaco2.srdata.cluster.local_cluster`) or an address.
    workers : int, optional
        Local pool size (threads, or worker processes for ``processes``).
    progress : callable, optional
        Receives `BuildEvent` objects (the CLI draws a progress bar from them).

    Returns
    -------
    dict
        Summary: ``store``, ``tiles``, ``built``, ``skipped``, ``windows``, ``accepted``, per-split counts.

    Raises
    ------
    RawInputError
        Bad raw input (nothing written).
    StoreFormatError
        The store path holds something else, another format version, or a store built with other options.
    BuildError
        An I/O error while writing; finished tiles stay finished, the failing tile is not.
    """
    check_scheduler(scheduler)
    emit = progress or (lambda ev: None)
    emit(BuildEvent("validate"))
    if is_manifest(raw):
        manifest = read_manifest(raw)
        for note in manifest.notes:
            log.warning("%s", note)
        raw_tiles = from_manifest(manifest)
    else:
        raw_tiles = validate_raw(raw)
    try:
        config = config.for_raw(raw_tiles)
    except ValueError as exc:
        raise RawInputError(str(exc)) from None
    attrs = _store_attrs(raw_tiles, config)
    try:
        if config.overwrite:
            remove_store(store)
        elif store_exists(store):  # another data set (folder, manifest, extents) than the one resumed?
            try:
                existing = Store.open(store)
            except StoreFormatError:
                existing = None  # not (yet) a readable store: `create_store` says what is wrong with it
            if existing is not None:
                _check_same_source(existing, attrs, raw_tiles)
        st = create_store(store, attrs, mode="a")
        old = st.attrs
        if _norm_json(old.source.get("registration")) != _norm_json(attrs.source["registration"]):
            raise StoreFormatError(
                f"{store}: existing store has registration {old.source.get('registration')!r}, this build "
                f"{attrs.source['registration']!r}; rerun with the same --no-register / --register-markers / "
                "--register-scales options or with --overwrite"
            )
        done = set(old.finished_tiles)
        todo = [t for t in raw_tiles.tiles if t not in done]
        if todo and old.index_complete:
            st.update_attrs(index_complete=False)
        pool = registration_pool(scheduler, config.registration_impl)
        with dask_scheduler(scheduler, workers):
            for k, t in enumerate(raw_tiles.tiles):
                emit(BuildEvent("tile", t, k, len(raw_tiles.tiles)))
                if t in done:
                    emit(BuildEvent("skip", t, k + 1, len(raw_tiles.tiles)))
                else:
                    _build_tile(st, raw_tiles, t, config, emit, pool, workers, store=str(store))
                    log.info("tile %s finished", t)
                emit(BuildEvent("finished", t, k + 1, len(raw_tiles.tiles)))
        _drop_scratch(st.root)
        if st.attrs.dtype != "uint8" and st.attrs.intensity is None:  # over all tiles: once, at the end
            import dask.array as da

            hr = [da.from_zarr(st.tile_image(t, 1)) for t in raw_tiles.tiles]
            st.update_attrs(intensity=percentile_intensity(hr, st.attrs.dtype).to_attrs())
        if todo or not st.attrs.index_complete:
            emit(BuildEvent("index"))
            write_index(st, _assemble_index(st, raw_tiles, config))
    except (RawInputError, StoreFormatError):
        raise
    except OSError as exc:
        raise BuildError(
            f"{store}: writing failed ({type(exc).__name__}: {exc}); fix that cause "
            "and rerun the same `srdata build` command: finished tiles are kept, the failed tile is redone"
        ) from exc
    index = st.index()
    acc = index["accepted"]
    summary = {
        "store": str(store),
        "tiles": list(raw_tiles.tiles),
        "built": todo,
        "skipped": sorted(done & set(raw_tiles.tiles)),
        "windows": int(len(acc)),
        "accepted": int(acc.sum()),
        **{name: int((index["split"] == split_code(name)).sum()) for name in ("train", "val", "test")},
    }
    emit(BuildEvent("done", None, len(raw_tiles.tiles), len(raw_tiles.tiles)))
    return summary
