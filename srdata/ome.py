"""OME-NGFF 0.5 image groups (Zarr v3): the one module that writes them, and reads OME-Zarr back.

Every image group the toolkit writes goes through here: store acquisitions and ROI labels
(`write_multiscale`, called by `srcaco2.srdata.writer.write_image` / ``write_roi``), store
predictions and standalone ``.ome.zarr`` outputs (`OmeImageWriter`: level 0 streamed row band by
row band, so a whole-tile prediction never exists in memory at once). One rule each for:

* levels: level 0 the data, then 2x2 windowed means (rounded half to even) or maxima (labels) down
  to a level whose smaller side is still >= one chunk (`default_n_levels`, `pyramid_levels`), every
  level created by `create_levels` with the store's codecs and checksums;
* the frame: every level of every scan sits in the tile's common physical frame, half-pixel
  translations included (`ome_multiscales`);
* display: channel names, colours and percentile windows from the data (`omero_metadata`,
  `ome_image_metadata`); the ROI label's ``image-label`` (`ome_label_metadata`);
* order: metadata last, so an interrupted write is visibly incomplete (no ``attrs["ome"]``).

`open_ome_zarr_image` opens the level 0 of an OME-Zarr image (NGFF 0.4 on Zarr v2 or 0.5 on
Zarr v3) lazily, with its channel names and pixel size. docs/store.md describes the result.
"""

from __future__ import annotations

import logging
import math
from collections.abc import Sequence
from typing import Any

import numpy as np

__all__ = [
    "BLOCK_PX", "MARKER_COLORS", "OmeImageWriter", "create_levels", "default_n_levels",
    "ome_image_metadata", "ome_label_metadata", "ome_multiscales", "omero_metadata", "pyramid_levels",
    "write_multiscale",
]  # fmt: skip

log = logging.getLogger(__name__)

_MAX_LEVELS = 8
BLOCK_PX = 2048
"""Edge of one Dask write task, px (rounded down to a multiple of the chunk edge): blocks span several
chunks, so each task hands zarr many chunks at once and no two tasks share a chunk."""


def default_n_levels(shape_yx: tuple[int, int], chunk: int) -> int:
    """Number of levels: halve while the next level's smaller side is still >= `chunk` (1..8)."""
    n = 1
    while n < _MAX_LEVELS and min(shape_yx) // 2**n >= chunk:
        n += 1
    return n


def _levels_that_fit(n_levels: int, shape_yx: Sequence[int]) -> int:
    """`n_levels` capped so that the coarsest level keeps at least one pixel a side (1 at least)."""
    return max(1, min(int(n_levels), int(math.log2(max(min(shape_yx), 1))) + 1))


def ome_multiscales(
    name: str,
    axes: tuple[str, ...],
    n_levels: int,
    pixel_size_um: float | None,
    *,
    kind: str = "mean",
    scale: int = 1,
) -> dict[str, Any]:
    """The ``attrs["ome"]`` mapping of one OME-NGFF 0.5 multiscales image (no ``omero``).

    Parameters
    ----------
    name : str
        ``multiscales[0].name``.
    axes : tuple of str
        ``("c", "y", "x")`` or ``("y", "x")``.
    n_levels : int
        Levels ``"0"`` .. ``"n_levels-1"``, each a 2x reduction of the previous.
    pixel_size_um : float or None
        Pixel size of level 0 of *this* image, micrometres; None when unknown (see Notes).
    kind : str
        ``multiscales[0].type``: how display levels were reduced (``mean``, ``max``).
    scale : int
        Pixel pitch of level 0 in HR pixels: 1 for HR-grid images (HR, ROI, predictions), s for
        the /s acquisition.

    Notes
    -----
    One physical frame for every scan of a tile (docs/store.md#coordinates): the centre of HR pixel
    (0, 0) is the origin, and a pixel of pitch ``f`` HR px (``f = scale * 2**level``) at index i has
    its centre at ``(i + 0.5) * f - 0.5`` HR px. Hence level ``l`` carries
    ``scale = f * p`` and ``translation = (f - 1) / 2 * p`` on y and x (1 and 0 on c), with
    ``p = pixel_size_um / scale`` the HR pixel size, so that x2, x4, x8, display levels and
    predictions overlay HR exactly in any OME-NGFF viewer.

    With an unknown pixel size, ``p = 1`` (transforms in HR pixels), the space axes carry no
    ``unit``, and ``multiscales[0].metadata`` says ``{"pixel_size": "unknown", ...}``.
    """
    s = int(scale)
    if s < 1:
        raise ValueError(f"scale must be a positive integer (pitch in HR px), got {scale!r}")
    known = pixel_size_um is not None
    if known and not (math.isfinite(float(pixel_size_um)) and float(pixel_size_um) > 0):  # type: ignore[arg-type]
        raise ValueError(f"pixel_size_um must be a positive number or None (unknown), got {pixel_size_um!r}")
    p = float(pixel_size_um) / s if known else 1.0  # type: ignore[arg-type]
    ax: list[dict[str, Any]] = []
    for a in axes:
        if a == "c":
            ax.append({"name": "c", "type": "channel"})
        else:
            ax.append({"name": a, "type": "space", **({"unit": "micrometer"} if known else {})})
    datasets = []
    for lv in range(int(n_levels)):
        f = s * 2**lv
        sc = [1.0 if a == "c" else f * p for a in axes]
        tr = [0.0 if a == "c" else (f - 1) / 2 * p for a in axes]
        ct = [{"type": "scale", "scale": sc}, {"type": "translation", "translation": tr}]
        datasets.append({"path": str(lv), "coordinateTransformations": ct})
    ms: dict[str, Any] = {"name": name, "axes": ax, "datasets": datasets, "type": kind}
    if not known:
        ms["metadata"] = {
            "pixel_size": "unknown",
            "units": "HR pixels",
            "note": "no physical pixel size in the input metadata or options; coordinates are HR pixels",
        }
    return {"version": "0.5", "multiscales": [ms]}


MARKER_COLORS: dict[str, str] = {"CELL0": "00FFFF", "CELL1": "00FF00", "CELL2": "FF00FF"}
"""Display colour (RRGGBB) per marker: CELL0 (Survivin) cyan, CELL1 (E-cadherin / GFP-tubulin) green,
CELL2 (mCherry-H2B) magenta (magenta rather than red: distinguishable from green for every reader)."""

WINDOW_PERCENTILES: tuple[float, float] = (0.1, 99.9)
"""Percentiles of each channel's coarsest level that set the ``omero`` display window."""

ROI_LABEL_RGBA: tuple[int, int, int, int] = (255, 200, 0, 255)
"""Display colour of ROI label value 1 (amber); 0 is background (transparent in label viewers)."""


OTHER_COLORS: tuple[str, ...] = ("00FFFF", "FFFF00", "FF8000", "0080FF", "FFFFFF")
"""Display colours (RGB hex) of channels that are not one of the markers, in channel order."""


_WINDOW_SAMPLE_EDGE = 256  # percentiles of a coarsest level larger than this (per axis) use a strided sample


def omero_metadata(coarsest: Any, channel_names: list[str] | tuple[str, ...]) -> dict[str, Any]:
    """The ``omero`` rendering settings: one channel per name, window from the data's percentiles.

    Parameters
    ----------
    coarsest : (c, y, x) integer array (numpy or zarr)
        The coarsest pyramid level; a strided sample of at most `_WINDOW_SAMPLE_EDGE` pixels a side
        is read from it.
    channel_names : sequence of str
        One label per channel (e.g. the markers); colours from `MARKER_COLORS`, other labels from
        `OTHER_COLORS` by channel position (so the channels of a user's image stay distinguishable).

    Returns
    -------
    dict
        ``{"channels": [{"label", "color", "active", "window": {"min", "max", "start", "end"}}],
        "rdefs": {"model": "color"}}``: ``min``/``max`` = the dtype's range, ``start``/``end`` = the
        `WINDOW_PERCENTILES` of that channel (``end >= start + 1``, so a flat channel still opens).
    """
    shape = tuple(int(n) for n in getattr(coarsest, "shape", np.shape(coarsest)))
    if len(shape) != 3 or shape[0] != len(channel_names):
        raise ValueError(
            f"coarsest level must be (c, y, x) with c = {len(channel_names)} channels, got {list(shape)}"
        )
    # a strided sample of at most ~_WINDOW_SAMPLE_EDGE² pixels per channel, read straight from the
    # array (numpy or zarr): memory and time bounded whatever the image size
    sy, sx = (max(1, -(-n // _WINDOW_SAMPLE_EDGE)) for n in shape[1:])
    sample = np.asarray(coarsest[:, ::sy, ::sx])
    info = np.iinfo(sample.dtype) if np.issubdtype(sample.dtype, np.integer) else None
    lo_d, hi_d = (float(info.min), float(info.max)) if info else (float(sample.min()), float(sample.max()))
    chans = []
    for i, label in enumerate(channel_names):
        ch = sample[i]
        if ch.size:
            start, end = (float(v) for v in np.percentile(ch, WINDOW_PERCENTILES))
        else:
            start, end = lo_d, hi_d
        end = max(end, start + 1.0)
        window = {"min": lo_d, "max": max(hi_d, end), "start": round(start, 3), "end": round(end, 3)}
        chans.append(
            {
                "label": str(label),
                "color": MARKER_COLORS.get(str(label), OTHER_COLORS[i % len(OTHER_COLORS)]),
                "active": True,
                "window": window,
            }
        )
    return {"channels": chans, "rdefs": {"model": "color"}}


def ome_image_metadata(
    name: str,
    n_levels: int,
    pixel_size_um: float | None,
    *,
    channel_names: list[str] | tuple[str, ...],
    coarsest: Any,
    scale: int = 1,
    kind: str = "mean",
) -> dict[str, Any]:
    """Complete ``attrs["ome"]`` of a (c, y, x) image: multiscales + omero (names, colours, windows).

    For every channel-first image the toolkit writes (acquisitions, predictions). Parameters as in
    `ome_multiscales` and `omero_metadata`; a prediction on the HR grid uses ``scale=1`` and the HR
    pixel size (``attrs.pixel_size_um["hr"]``, None when unknown).
    """
    meta = ome_multiscales(name, ("c", "y", "x"), n_levels, pixel_size_um, kind=kind, scale=scale)
    meta["omero"] = omero_metadata(coarsest, list(channel_names))
    return meta


def ome_label_metadata(
    name: str, n_levels: int, pixel_size_um: float | None, *, description: str = "cell (ROI)"
) -> dict[str, Any]:
    """``attrs["ome"]`` of a (y, x) label image on the HR grid: multiscales + ``image-label``.

    Label value 1 = `description` (colour `ROI_LABEL_RGBA`); ``source.image = "../../"`` links the
    label to the HR image two groups up (``tiles/<t>/hr``).
    """
    meta = ome_multiscales(name, ("y", "x"), n_levels, pixel_size_um, kind="max", scale=1)
    meta["image-label"] = {
        "version": "0.5",
        "colors": [{"label-value": 1, "rgba": list(ROI_LABEL_RGBA)}],
        "properties": [{"label-value": 1, "name": description}],
        "source": {"image": "../../"},
    }
    return meta


def _mean_round_u8(a: np.ndarray, axis: tuple[int, ...] | None = None, **_: Any) -> np.ndarray:
    """Mean of each 2x2 block rounded half to even (= ``np.round`` of the float mean), in integers.

    `a` is the reshaped array `dask.array.coarsen` hands over: every axis in `axis` has size 1 or 2.
    """
    if axis is None:  # dask's dtype probe
        return a.astype(np.uint8)
    import itertools

    axis = tuple(ax % a.ndim for ax in axis)
    pairs = [ax for ax in axis if a.shape[ax] == 2]
    total = None
    for combo in itertools.product((0, 1), repeat=len(pairs)):  # strided slices: faster than a.sum(axis)
        sl: list[Any] = [0 if ax in axis else slice(None) for ax in range(a.ndim)]
        for ax, i in zip(pairs, combo, strict=True):
            sl[ax] = i
        part = a[tuple(sl)]
        total = part.astype(np.uint16) if total is None else np.add(total, part, out=total)
    assert total is not None
    n = 2 ** len(pairs)
    if n != 4:
        return np.round(total / n).astype(np.uint8)
    # total = 4q + r: round(total / 4) half to even = q + (r == 3) + (r == 2 and q odd)
    return ((total + 1 + ((total >> 2) & 1)) >> 2).astype(np.uint8)


def pyramid_levels(level0: Any, n_levels: int, chunks: tuple[int, ...], reduce: str) -> list[Any]:
    """Dask levels ``[level0, ...]``: each the 2x2 windowed mean (rounded half to even) or max of the
    previous one, in `level0`'s dtype (uint8: integer arithmetic; other integers: a float64 mean,
    rounded; the same values), chunked `chunks`."""
    import dask.array as da

    levels = [level0]
    yx = {level0.ndim - 2: 2, level0.ndim - 1: 2}
    for _ in range(1, n_levels):
        prev = levels[-1]
        if reduce == "max":
            nxt = da.coarsen(np.max, prev, yx, trim_excess=True)
        elif prev.dtype == np.uint8:
            nxt = da.coarsen(_mean_round_u8, prev, yx, trim_excess=True)
        else:
            nxt = da.round(da.coarsen(np.mean, prev.astype(np.float64), yx, trim_excess=True))
            nxt = nxt.astype(level0.dtype)
        levels.append(nxt)
    return [_rechunk(lv, chunks) for lv in levels]


def _down2_u8(a: np.ndarray, reduce: str, *, strip: int = 256) -> np.ndarray:
    """One 2x2 reduction (rounded-half-even mean or max) of (..., y, x) uint8, odd edges trimmed.

    Works in strips of `strip` rows (temporaries stay small and are reused: no page faults on
    whole-array temporaries) and reads pixel pairs along x as one little-endian uint16 (low byte =
    left pixel), so every pass runs on contiguous memory.
    """
    h, w = a.shape[-2] // 2 * 2, a.shape[-1] // 2 * 2
    out = np.empty((*a.shape[:-2], h // 2, w // 2), np.uint8)
    for idx in np.ndindex(*a.shape[:-2]):
        src, dst = a[idx], out[idx]
        for y in range(0, h, strip):
            v = np.ascontiguousarray(src[y : min(y + strip, h), :w]).view("<u2")  # (rows, w/2)
            lo = v & 0xFF
            hi = v >> 8
            if reduce == "max":
                np.maximum(lo, hi, out=lo)
                dst[y // 2 : y // 2 + len(v) // 2] = np.maximum(lo[0::2], lo[1::2])
                continue
            lo += hi  # horizontal pair sums
            total = lo[0::2] + lo[1::2]  # 2x2 sums, <= 1020
            # total = 4q + r: round(total / 4) half to even = q + (r == 3) + (r == 2 and q odd)
            np.right_shift(total, 2, out=hi[: len(total)])
            hi_t = hi[: len(total)]
            hi_t &= 1
            total += hi_t
            total += 1
            total >>= 2
            dst[y // 2 : y // 2 + len(total)] = total
    return out


def _numpy_levels(level0: np.ndarray, n_levels: int, reduce: str) -> list[np.ndarray]:
    """`pyramid_levels` for an in-memory array (same values)."""
    if level0.dtype != np.uint8:  # uint16: the Dask path's float64 mean (rare in memory: tests)
        import dask.array as da

        return [
            np.asarray(lv) for lv in pyramid_levels(da.from_array(level0), n_levels, level0.shape, reduce)
        ]
    levels = [level0]
    for _ in range(1, n_levels):
        levels.append(_down2_u8(levels[-1], reduce))
    return levels


def _rechunk(arr: Any, chunks: tuple[int, ...]) -> Any:
    """`arr` rechunked to `chunks`, or `arr` itself when it already has them (no graph layer)."""
    from dask.array.core import normalize_chunks

    return arr if arr.chunks == normalize_chunks(chunks, arr.shape, dtype=arr.dtype) else arr.rechunk(chunks)


def write_multiscale(
    root: Any,
    group_path: str,
    data: Any,
    axes: tuple[str, ...],
    *,
    chunk: int,
    n_levels: int | None,
    reduce: str,
    metadata: Any,
) -> None:
    """Write the levels of one image group, then ``attrs["ome"] = metadata(n_levels, coarsest)``.

    `metadata` is called with the number of levels written and the coarsest level as NumPy (small:
    read back from the store for Dask input), so display settings can come from the data.
    """
    import dask.array as da

    if chunk <= 0:
        raise ValueError(f"chunk must be a positive number of pixels, got {chunk}")
    chunks = (1, chunk, chunk) if len(axes) == 3 else (chunk, chunk)
    # Dask blocks span several Zarr chunks (whole c, ~2048 px in y and x, multiples of `chunk`), so
    # each task hands zarr many chunks at once (encoded concurrently) and no two tasks share a chunk.
    k = max(1, BLOCK_PX // chunk)
    blocks = ((data.shape[0],) if len(axes) == 3 else ()) + (chunk * k, chunk * k)
    lazy = isinstance(data, da.Array)
    arr = data if lazy else np.asarray(data)
    if arr.ndim != len(axes) or arr.dtype not in (np.uint8, np.uint16):
        raise ValueError(
            f"{group_path}: expected {len(axes)}-D uint8 or uint16 {axes}, got {arr.dtype}{list(arr.shape)}"
        )
    n = default_n_levels(arr.shape[-2:], chunk) if n_levels is None else int(n_levels)
    n = _levels_that_fit(n, arr.shape[-2:])
    # In-memory input: numpy levels, written by zarr (which encodes chunks concurrently); a Dask
    # graph only adds overhead there. Lazy input: one Dask compute of all levels.
    if lazy:
        levels = pyramid_levels(_rechunk(arr, blocks), n, blocks, reduce)
    else:
        levels = _numpy_levels(arr, n, reduce)
    grp = root.create_group(group_path, overwrite=True)
    targets = create_levels(grp, [lv.shape for lv in levels], axes, chunks, arr.dtype)
    if lazy:
        da.store(levels, targets, lock=False, compute=True)
        coarsest = targets[-1][...]
    else:
        for level, target in zip(levels, targets, strict=True):
            target[...] = level
        coarsest = levels[-1]
    # Metadata last: a group without "ome" attrs is visibly incomplete.
    grp.attrs["ome"] = metadata(n, coarsest)


def create_levels(
    group: Any,
    shapes: Sequence[tuple[int, ...]],
    axes: tuple[str, ...],
    chunks: tuple[int, ...],
    dtype: Any,
    *,
    first: int = 0,
) -> list[Any]:
    """Create the level arrays ``str(first) ..`` of an image group with the store's codecs
    (`srcaco2.srdata.writer.compressors`, checksums) and ``ARRAY_CONFIG`` (every chunk written).

    Parameters
    ----------
    group : zarr.Group
        The image group.
    shapes : sequence of tuple of int
        One shape per level, from level `first` on.
    axes : tuple of str
        ``("c", "y", "x")`` or ``("y", "x")`` (the arrays' dimension names).
    chunks : tuple of int
        Chunk shape of every level.
    dtype : numpy dtype
    first : int
        Level number of ``shapes[0]``.

    Returns
    -------
    list of zarr.Array
    """
    from srcaco2.srdata.store import ARRAY_CONFIG, compressors

    return [
        group.create_array(
            str(first + k),
            shape=tuple(shape),
            dtype=np.dtype(dtype),
            chunks=chunks,
            compressors=compressors(),
            fill_value=0,
            dimension_names=axes,
            overwrite=True,
            config=ARRAY_CONFIG,
        )  # fmt: skip
        for k, shape in enumerate(shapes)
    ]


class OmeImageWriter:
    """Write one (c, y, x) OME-NGFF multiscales image into a Zarr group, level 0 row band by row band.

    Parameters
    ----------
    group : zarr.Group
        The (empty) image group, open for writing: ``root.create_group("predictions/x/7")`` in a
        store, or the root of a standalone ``.ome.zarr``.
    shape : (c, y, x) tuple of int
        Level-0 shape, pixels.
    chunk : int
        Chunk edge (y and x), pixels; chunks are ``(1, chunk, chunk)``.
    pixel_size_um : float or None
        Level-0 pixel size in micrometres; None when unknown (the axes then carry no unit and a
        scale of 1 pixel).
    channel_names : sequence of str
        One label per channel (the OMERO ``channels[i].label``).
    name : str
        The multiscales name.
    dtype : {"uint8", "uint16"}
        Pixel type; the OMERO display window spans its full range.
    n_levels : int, optional
        Levels including 0 (default `default_n_levels`).

    Examples
    --------
    >>> import zarr
    >>> g = zarr.open_group(zarr.storage.MemoryStore(), mode="w")
    >>> w = OmeImageWriter(g, (1, 8, 8), chunk=4, pixel_size_um=0.1, channel_names=["CELL2"], name="x")
    >>> w.write_rows(0, np.ones((1, 8, 8), np.uint8))
    >>> w.finish()["multiscales"][0]["datasets"][0]["path"]
    '0'
    """

    def __init__(
        self,
        group: Any,
        shape: tuple[int, int, int],
        *,
        chunk: int,
        pixel_size_um: float | None,
        channel_names: Sequence[str],
        name: str,
        dtype: str = "uint8",
        n_levels: int | None = None,
    ) -> None:
        c, h, w = (int(n) for n in shape)
        if len(channel_names) != c:
            raise ValueError(f"{name}: {len(channel_names)} channel names for {c} channels")
        if np.dtype(dtype) not in (np.dtype("uint8"), np.dtype("uint16")):
            raise ValueError(f"{name}: dtype must be uint8 or uint16, got {dtype}")
        if chunk <= 0 or min(c, h, w) <= 0:
            raise ValueError(f"{name}: need a positive chunk and shape, got chunk={chunk}, shape={shape}")
        self.group, self.shape, self.chunk, self.name = group, (c, h, w), int(chunk), name
        self.dtype = np.dtype(dtype)
        self.pixel_size_um = None if pixel_size_um is None else float(pixel_size_um)
        self.channel_names = [str(n) for n in channel_names]
        self.n_levels = default_n_levels((h, w), self.chunk) if n_levels is None else int(n_levels)
        self._rows_done = [0] * c
        (self.level0,) = create_levels(
            group, [(c, h, w)], ("c", "y", "x"), (1, self.chunk, self.chunk), self.dtype
        )

    def write_rows(self, row0: int, rows: np.ndarray, channel: int | None = None) -> None:
        """Write level-0 rows ``row0 .. row0 + n``, in order (per channel).

        Parameters
        ----------
        row0 : int
            First row, level-0 pixels.
        rows : (c, n, x) array of the writer's dtype
            All channels, or one channel (``c == 1``) when `channel` is given.
        channel : int, optional
            Write only this plane (channels predicted one after another).
        """
        planes = range(self.shape[0]) if channel is None else [int(channel)]
        if rows.shape[0] != len(planes) or rows.shape[2] != self.shape[2]:
            raise ValueError(f"{self.name}: rows {rows.shape} do not fit the image {self.shape}")
        for k in planes:
            if row0 != self._rows_done[k]:
                raise ValueError(
                    f"{self.name}: rows must arrive in order; channel {k} expects row {self._rows_done[k]}, "
                    f"got {row0}"
                )
        sel = slice(None) if channel is None else slice(int(channel), int(channel) + 1)
        self.level0[sel, row0 : row0 + rows.shape[1], :] = rows.astype(self.dtype, copy=False)
        for k in planes:
            self._rows_done[k] = row0 + rows.shape[1]

    def finish(self, extra_attrs: dict[str, Any] | None = None) -> dict[str, Any]:
        """Write the display levels (2x2 means, rounded) and then the metadata; returns ``attrs["ome"]``.

        Raises
        ------
        ValueError
            Not every row of level 0 was written.
        """
        import dask.array as da

        if min(self._rows_done) != self.shape[1]:
            raise ValueError(
                f"{self.name}: {min(self._rows_done)} of {self.shape[1]} rows written; not finishing"
            )
        chunks = (1, self.chunk, self.chunk)
        n = _levels_that_fit(self.n_levels, self.shape[1:])
        levels = pyramid_levels(da.from_zarr(self.level0), n, chunks, "mean")
        targets = create_levels(self.group, [lv.shape for lv in levels[1:]], ("c", "y", "x"), chunks,
                                self.dtype, first=1)  # fmt: skip
        if targets:
            da.store(levels[1:], targets, lock=False)
        coarsest = targets[-1] if targets else self.level0  # sampled, not read whole
        # one builder for every image group: the store's frame, names, colours, percentile windows
        meta = ome_image_metadata(
            self.name, n, self.pixel_size_um, channel_names=self.channel_names, coarsest=coarsest
        )
        from srcaco2.srdata.integrity import record_manifests

        record_manifests(self.group)  # every level complete: bind its chunks to their place
        for key, value in (extra_attrs or {}).items():
            self.group.attrs[key] = value
        self.group.attrs["ome"] = meta  # last: a group without it is incomplete
        return meta
