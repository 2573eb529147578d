"""Read an OME-Zarr image written by any tool (Fiji, napari, this toolkit): `open_ome_zarr_image`.

Level 0 of the image, opened lazily, with its axes, channel names and pixel size
(`srcaco2.srdata.ome` writes them).
"""

from __future__ import annotations

import dataclasses
from typing import Any

import numpy as np

__all__ = ["OmeImage", "open_ome_zarr_image"]


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
