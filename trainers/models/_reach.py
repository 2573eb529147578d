"""Receptive reach of a network, computed layer by layer (the machinery behind `ModelInfo.receptive_halo`).

`Reach` propagates, as a network's `forward` does, which LR input pixels every pixel of a feature
map depends on, per phase of the pixel inside its LR pixel, so strided convolutions, transposed
convolutions, pixel shuffles and interpolations are exact, not rounded up. Each network module
declares its reach as a function ``reach(scale, hp) -> Reach`` at registration
(`srcaco2.trainers.models.registry.register_model`); ``tests/models/test_all_networks.py`` checks the
radius against autograd.

Nothing runs at import.
"""

from __future__ import annotations

import math
from collections.abc import Callable, Iterable

__all__ = ["Reach", "union", "pre_upsampled", "pyramid_levels", "windowed_radius"]


class Reach:
    """Which LR pixels each pixel of a feature map depends on.

    A map at ``res`` pixels per LR pixel (1 = LR, s = HR): its pixel ``o = res * c + phase``
    depends on LR input pixels ``c + lo[phase] .. c + hi[phase]`` (translation covariance: shifting
    the input by one LR pixel shifts the map by ``res`` pixels). Boundary effects are ignored, as
    they are the same for a tile clipped at the image border and for the whole image.

    Examples
    --------
    >>> Reach.lr().conv(3, times=2).radius()
    2
    >>> Reach.lr().interp(4, 4).radius()  # bicubic x4: 4 taps
    2
    """

    def __init__(self, res: int, lo: list[int], hi: list[int]) -> None:
        self.res, self.lo, self.hi = res, lo, hi

    @classmethod
    def lr(cls) -> Reach:
        """The LR input itself."""
        return cls(1, [0], [0])

    def _gather(self, res: int, sources: Callable[[int], Iterable[int]]) -> Reach:
        lo, hi = [], []
        for o in range(res):
            los, his = [], []
            for j in sources(o):
                c, ph = divmod(j, self.res)
                los.append(c + self.lo[ph])
                his.append(c + self.hi[ph])
            lo.append(min(los))
            hi.append(max(his))
        return Reach(res, lo, hi)

    def conv(self, k: int, times: int = 1) -> Reach:
        """``times`` stride-1 convolutions of odd size k ('same' padding)."""
        r = self
        for _ in range(times):
            r = r._gather(r.res, lambda o: range(o - k // 2, o + k // 2 + 1))
        return r

    def strided(self, k: int, s: int, p: int) -> Reach:
        """Conv2d(k, stride s, padding p): ``res / s``."""
        if self.res % s:
            raise ValueError(f"stride {s} does not divide resolution {self.res}")
        return self._gather(self.res // s, lambda i: range(s * i - p, s * i - p + k))

    def deconv(self, k: int, s: int, p: int) -> Reach:
        """ConvTranspose2d(k, stride s, padding p): ``res * s``."""
        return self._gather(self.res * s, lambda o: range(-((k - 1 - o - p) // s), (o + p) // s + 1))

    def shuffle(self, r: int) -> Reach:
        """PixelShuffle(r)."""
        return self._gather(self.res * r, lambda o: [o // r])

    def interp(self, s: int, taps: int) -> Reach:
        """x s interpolation with half-pixel centres: bilinear (taps 2) or bicubic (taps 4)."""

        def src(o: int) -> range:
            f = (2 * o + 1 - s) // (2 * s)  # floor((o + 0.5) / s - 0.5)
            return range(f - (taps // 2 - 1), f + taps // 2 + 1)

        return self._gather(self.res * s, src)

    def nearest_pair(self, s: int) -> Reach:
        """LIIF's local ensemble: the LR cells at ``(o + 0.5) / s -+ 0.5`` (res s output)."""

        def src(o: int) -> range:
            return range((2 * o + 1 - s) // (2 * s), (2 * o + 1 + s) // (2 * s) + 1)

        return self._gather(self.res * s, src)

    def __or__(self, other: Reach) -> Reach:
        if self.res != other.res:
            raise ValueError(f"cannot merge maps at {self.res} and {other.res} px per LR px")
        return Reach(self.res, [min(a, b) for a, b in zip(self.lo, other.lo)],
                     [max(a, b) for a, b in zip(self.hi, other.hi)])  # fmt: skip

    def radius(self) -> int:
        """Largest distance, LR px, from a pixel's LR pixel to an LR pixel it depends on."""
        return max(max(-v for v in self.lo), max(self.hi), 0)


def union(maps: list[Reach]) -> Reach:
    """Elementwise union of maps at the same resolution (a concatenation or a sum)."""
    out = maps[0]
    for m in maps[1:]:
        out = out | m
    return out


def pre_upsampled(s: int, hr_convs: int, k: int = 3) -> Reach:
    """Bicubic x s, then `hr_convs` k x k convolutions at HR, plus the bicubic residual."""
    up = Reach.lr().interp(s, 4)
    return up.conv(k, times=hr_convs) | up


def pyramid_levels(scale: int) -> int:
    """log2(scale) for a power-of-two scale (x2 pyramid levels)."""
    levels = int(round(math.log2(scale)))
    if 2**levels != scale:
        raise ValueError(f"need a power-of-two scale, got scale={scale}")
    return levels


def windowed_radius(layers: list[tuple[str, int]], window: int) -> int:
    """Exact reach, LR px, of a stack of convolutions and window attentions on one LR grid.

    Parameters
    ----------
    layers : list of (kind, value), in forward order
        ``("conv", k)``: a stride-1 k x k convolution; ``("window", offset)``: attention inside
        ``window x window`` windows whose grid starts at ``offset`` (0, or ``window // 2`` for
        Swin's shifted windows, the cyclic roll) relative to the crop origin.
    window : int
        Window side, LR px. Crops must start on multiples of it (`ModelInfo.input_grid`).

    Returns
    -------
    int
        Largest distance from an output pixel to an input pixel it depends on, over the `window`
        phases of the output pixel (interval propagation from the output back to the input).

    Examples
    --------
    >>> windowed_radius([("window", 0)], 8)  # a pixel at a window edge sees 7 px away
    7
    >>> windowed_radius([("window", 0), ("window", 4)], 8)
    11
    """
    radius = 0
    for p in range(window):
        a = b = p
        for kind, v in reversed(layers):
            if kind == "conv":
                a, b = a - v // 2, b + v // 2
            elif kind == "window":
                a = (a - v) // window * window + v
                b = (b - v) // window * window + v + window - 1
            else:
                raise ValueError(f"unknown layer kind {kind!r}; use 'conv' or 'window'")
        radius = max(radius, p - a, b - p)
    return radius
