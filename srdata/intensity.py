"""How a store's pixels map to [0, 1] for training, metrics and prediction: `Intensity`.

SR-CACO-2 (uint8) is scaled as the benchmark does, ``x / 255``. A uint16 store records, at build
time, one (low, high) pair per channel: the 0.1 and 99.9 percentiles of that channel over the HR
images of all tiles (CSBDeep's percentile normalisation), and maps ``(x - low) / (high - low)``
without clipping (values outside stay outside, as in CSBDeep). The paper's metrics then quantise
the [0, 1] values to 255 levels (docs/protocol.md#metrics), for a uint16 store too: its scores
compare with the benchmark's 8-bit ones. Predictions map back with the inverse and are written in
the store's dtype (rounded, clipped to its range).

The mapping lives in the store's attributes (``attrs.intensity``, `Intensity.to_attrs`).
"""

from __future__ import annotations

import dataclasses
from collections.abc import Sequence
from typing import Any

import numpy as np

__all__ = ["Intensity", "PERCENTILES", "percentile_intensity"]

PERCENTILES: tuple[float, float] = (0.1, 99.9)
"""Low and high percentiles (per cent) of the HR grey levels a uint16 store is scaled between."""


@dataclasses.dataclass(frozen=True)
class Intensity:
    """Per-channel affine map of raw grey levels to [0, 1].

    Attributes
    ----------
    dtype : str
        ``uint8`` or ``uint16``, the store's pixel type.
    low, high : tuple of float
        Raw grey levels mapped to 0 and 1, one per channel (in the order of the channels held).
    kind : str
        ``"divide"`` (uint8: ``x / 255``, exactly the benchmark's float32 division) or
        ``"percentile"`` (``(x - low) / (high - low)``).
    """

    dtype: str
    low: tuple[float, ...]
    high: tuple[float, ...]
    kind: str = "divide"

    @classmethod
    def uint8(cls, n_channels: int) -> Intensity:
        """The benchmark's ``x / 255`` for `n_channels` channels."""
        return cls("uint8", (0.0,) * n_channels, (255.0,) * n_channels, "divide")

    @classmethod
    def from_attrs(cls, data: dict[str, Any] | None, dtype: str, n_channels: int) -> Intensity:
        """The mapping recorded in ``attrs.intensity`` (uint8 stores without one: ``x / 255``).

        Raises
        ------
        ValueError
            A uint16 store without a recorded mapping, or one of another channel count.
        """
        if not data:
            if dtype == "uint8":
                return cls.uint8(n_channels)
            raise ValueError(
                f"a {dtype} store records no intensity scaling (attrs.intensity); rebuild it with this "
                "version's `srdata build`"
            )
        got = cls(
            str(data["dtype"]),
            tuple(map(float, data["low"])),
            tuple(map(float, data["high"])),
            str(data["kind"]),
        )
        if len(got.low) != n_channels or len(got.high) != n_channels:
            raise ValueError(f"attrs.intensity has {len(got.low)} channels, the store {n_channels}")
        return got

    def to_attrs(self) -> dict[str, Any]:
        return {
            "dtype": self.dtype,
            "low": list(self.low),
            "high": list(self.high),
            "kind": self.kind,
            "percentiles": list(PERCENTILES) if self.kind == "percentile" else None,
        }

    def select(self, channels: Sequence[int]) -> Intensity:
        """The mapping of some channels (by index), in that order."""
        return dataclasses.replace(
            self, low=tuple(self.low[c] for c in channels), high=tuple(self.high[c] for c in channels)
        )

    @property
    def top(self) -> int:
        """The dtype's largest grey level."""
        return int(np.iinfo(np.dtype(self.dtype)).max)

    def _affine(self, ndim: int, axis: int) -> tuple[np.ndarray, np.ndarray]:
        shape = [1] * ndim
        shape[axis] = len(self.low)
        low = np.asarray(self.low, np.float32).reshape(shape)
        span = np.asarray(self.high, np.float32).reshape(shape) - low
        return low, np.maximum(span, np.float32(1e-6))

    def to_unit(self, x: np.ndarray, *, axis: int = -3) -> np.ndarray:
        """Raw grey levels -> float32 in [0, 1] (channel axis `axis`: (C, H, W) or (B, C, H, W))."""
        if self.kind == "divide":
            return np.divide(x, np.float32(255), dtype=np.float32)
        low, span = self._affine(x.ndim, axis % x.ndim)
        return ((x.astype(np.float32) - low) / span).astype(np.float32)

    def from_unit(self, y: np.ndarray, *, axis: int = -3) -> np.ndarray:
        """[0, 1] values -> raw grey levels of the store's dtype (rounded, clipped to its range)."""
        if self.kind == "divide":
            return np.round(np.clip(y, 0.0, 1.0) * 255.0).astype(np.uint8)
        low, span = self._affine(y.ndim, axis % y.ndim)
        raw = np.round(y.astype(np.float64) * span + low)
        return np.clip(raw, 0, self.top).astype(self.dtype)

    def to_uint8(self, x: np.ndarray, *, axis: int = -3) -> np.ndarray:
        """Raw grey levels on the benchmark's 8-bit grid, ``round(clip(to_unit(x)) * 255)`` (uint8
        stores: `x` itself): the domain of the paper's grey-level thresholds (sampling ROI >= 4)."""
        if self.dtype == "uint8":
            return x
        return np.round(np.clip(self.to_unit(x, axis=axis), 0.0, 1.0) * 255.0).astype(np.uint8)


def percentile_intensity(hr_planes: Sequence[Sequence[Any]], dtype: str) -> Intensity:
    """`PERCENTILES` of each channel over the HR images of all tiles (uint16; uint8: ``x / 255``).

    Parameters
    ----------
    hr_planes : per tile, the (C, H, W) HR image (numpy, zarr or Dask); only grey-level counts
        (65,536 per channel, computed blockwise with Dask) are brought back.
    dtype : ``"uint8"`` or ``"uint16"``
    """
    import dask.array as da

    images = list(hr_planes)
    n = int(images[0].shape[0])
    if dtype == "uint8":
        return Intensity.uint8(n)
    top = 65536
    counts = np.zeros((n, top), np.int64)
    for img in images:
        arr = img if isinstance(img, da.Array) else da.from_array(img, chunks=(1, 2048, 2048))
        per = [da.bincount(arr[c].ravel(), minlength=top) for c in range(n)]
        counts += np.stack([np.asarray(v)[:top] for v in da.compute(*per)])
    low, high = [], []
    for c in range(n):
        cdf = np.cumsum(counts[c]) / max(int(counts[c].sum()), 1)
        lo = float(np.searchsorted(cdf, PERCENTILES[0] / 100.0))
        hi = float(np.searchsorted(cdf, PERCENTILES[1] / 100.0))
        low.append(lo)
        high.append(max(hi, lo + 1.0))
    return Intensity(dtype, tuple(low), tuple(high), "percentile")
