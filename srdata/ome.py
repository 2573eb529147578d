"""OME-NGFF images written row band by row band, and OME-Zarr images read back (one module for both).

`OmeImageWriter` is the streamed counterpart of `srcaco2.srdata.writer.write_image`: level 0 of an
OME-NGFF 0.5 multiscales image (Zarr v3) is written as rows arrive (a whole-tile prediction never
exists in memory at once), then the display levels in one Dask compute from level 0, then the
metadata, last, so that an interrupted write is visibly incomplete (no ``attrs["ome"]``). It
uses the store's codecs (`srcaco2.srdata.writer.compressors`, ``ARRAY_CONFIG``) and metadata builder
(`srcaco2.srdata.writer.ome_image_metadata`: frame, channel names, colours, display windows), so store
tiles, store predictions and standalone OME-Zarr outputs are written the same way. Used by
`srcaco2.trainers.predict` for ``predictions/`` groups of a store and for ``srtrain predict --output
X.ome.zarr``.

`open_ome_zarr_image` opens the level 0 of an OME-Zarr image (NGFF 0.4 on Zarr v2 or 0.5 on
Zarr v3) lazily, with its channel names and pixel size.
"""

from __future__ import annotations

import dataclasses
import logging
from collections.abc import Sequence
from typing import Any

import numpy as np

__all__ = ["OmeImageWriter", "OmeImage", "open_ome_zarr_image"]

log = logging.getLogger(__name__)


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
        Levels including 0 (default `srcaco2.srdata.writer.default_n_levels`).

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
        from srcaco2.srdata.writer import ARRAY_CONFIG, compressors, default_n_levels

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
        self.level0 = group.create_array(
            "0", shape=(c, h, w), dtype=self.dtype, chunks=(1, self.chunk, self.chunk),
            compressors=compressors(), fill_value=0, dimension_names=("c", "y", "x"), overwrite=True,
            config=ARRAY_CONFIG,
        )  # fmt: skip

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

        from srcaco2.srdata.writer import ARRAY_CONFIG, ome_image_metadata, pyramid_levels

        if min(self._rows_done) != self.shape[1]:
            raise ValueError(
                f"{self.name}: {min(self._rows_done)} of {self.shape[1]} rows written; not finishing"
            )
        chunks = (1, self.chunk, self.chunk)
        n = max(1, min(self.n_levels, int(np.log2(max(min(self.shape[1:]), 1))) + 1))
        src = da.from_zarr(self.level0)
        if self.dtype == np.uint8:
            levels = pyramid_levels(src, n, chunks, "mean")
        else:
            levels = [src]
            for _ in range(1, n):
                nxt = da.coarsen(np.mean, levels[-1].astype(np.float64), {1: 2, 2: 2}, trim_excess=True)
                levels.append(da.round(nxt).astype(self.dtype).rechunk(chunks))
        targets = [
            self.group.create_array(
                str(lv),
                shape=arr.shape,
                dtype=self.dtype,
                chunks=chunks,
                compressors=self.level0.compressors,
                fill_value=0,
                dimension_names=("c", "y", "x"),
                overwrite=True,
                config=ARRAY_CONFIG,
            )  # fmt: skip
            for lv, arr in enumerate(levels)
            if lv > 0
        ]
        if targets:
            da.store(levels[1:], targets, lock=False)
        coarsest = targets[-1] if targets else self.level0  # sampled, not read whole
        # one builder for every image group: the store's frame, names, colours, percentile windows
        meta = ome_image_metadata(
            self.name, n, self.pixel_size_um, channel_names=self.channel_names, coarsest=coarsest
        )
        for key, value in (extra_attrs or {}).items():
            self.group.attrs[key] = value
        self.group.attrs["ome"] = meta  # last: a group without it is incomplete
        return meta


@dataclasses.dataclass(frozen=True)
class OmeImage:
    """Level 0 of an OME-Zarr image, opened lazily.

    Attributes
    ----------
    data : zarr.Array
        (c, y, x) or (y, x) pixels (any dtype; read slices with ``data[...]``).
    axes : tuple of str
        Axis names of `data` (``("c", "y", "x")`` or ``("y", "x")``).
    channel_names : list of str or None
        OMERO channel labels when present.
    pixel_size_um : float or None
        Level-0 pixel size along x in micrometres, when the axes carry a length unit.
    """

    data: Any
    axes: tuple[str, ...]
    channel_names: list[str] | None
    pixel_size_um: float | None


_TO_UM = {"micrometer": 1.0, "nanometer": 1e-3, "millimeter": 1e3, "meter": 1e6, "angstrom": 1e-4}


def open_ome_zarr_image(path: str) -> OmeImage:
    """Open level 0 of the OME-Zarr image at `path` (NGFF 0.4 or 0.5).

    Axes other than c, y, x must have size 1 (a t or z of one plane is dropped).

    Raises
    ------
    ValueError
        `path` holds no OME-NGFF multiscales image, or an axis beyond c, y, x with more than one plane.
    """
    import zarr

    try:
        grp = zarr.open_group(path, mode="r")
    except Exception as exc:  # noqa: BLE001 - zarr raises several types for "not a group"
        raise ValueError(
            f"{path}: not a Zarr group ({type(exc).__name__}: {exc}); give an OME-Zarr image"
        ) from None
    attrs = dict(grp.attrs)
    ome = attrs.get("ome", attrs)
    ms = ome.get("multiscales") if isinstance(ome, dict) else None
    if not isinstance(ms, list) or not ms:
        hint = " (it looks like a srcaco2 store: use --store)" if "srcaco2" in attrs else ""
        raise ValueError(f"{path}: no OME-NGFF multiscales metadata; give an OME-Zarr image{hint}")
    first = ms[0]
    axes = [a["name"] if isinstance(a, dict) else str(a) for a in first.get("axes", [])]
    ds = first["datasets"][0]
    arr = grp[ds["path"]]
    if not axes:
        axes = ["c", "y", "x"][-arr.ndim :]
    if len(axes) != arr.ndim or "y" not in axes or "x" not in axes:
        raise ValueError(f"{path}: axes {axes} do not describe the {arr.ndim}-D level {ds['path']}")
    index: list[Any] = []
    kept: list[str] = []
    for ax, n in zip(axes, arr.shape):
        if ax in ("c", "y", "x"):
            index.append(slice(None))
            kept.append(ax)
        elif n == 1:
            index.append(0)
        else:
            raise ValueError(f"{path}: axis {ax!r} has {n} planes; predict one plane at a time (export it)")
    if kept not in (["c", "y", "x"], ["y", "x"]):
        raise ValueError(f"{path}: axes {kept} (need c, y, x in that order, or y, x)")
    data = arr if all(isinstance(i, slice) for i in index) else _Sliced(arr, tuple(index))
    px = None
    for t in ds.get("coordinateTransformations", []):
        if t.get("type") == "scale":
            unit = next(
                (
                    a.get("unit")
                    for a in first.get("axes", [])
                    if isinstance(a, dict) and a.get("name") == "x"
                ),
                None,
            )
            if unit in _TO_UM:
                px = float(t["scale"][axes.index("x")]) * _TO_UM[unit]
    omero = attrs.get("omero") or (ome.get("omero") if isinstance(ome, dict) else None)
    names = [str(c.get("label", f"C{i}")) for i, c in enumerate(omero["channels"])] if omero else None
    return OmeImage(data, tuple(kept), names, px)


class _Sliced:
    """A zarr array with singleton leading axes (t, z) indexed away; slicing reads lazily."""

    def __init__(self, arr: Any, index: tuple[Any, ...]) -> None:
        self._arr, self._index = arr, index
        self.shape = tuple(n for n, i in zip(arr.shape, index) if isinstance(i, slice))
        self.dtype = arr.dtype
        self.ndim = len(self.shape)

    def __getitem__(self, key: Any) -> np.ndarray:
        return np.asarray(self._arr[self._index])[key]
