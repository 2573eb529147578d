"""Tiny configurations of every registered network, their smallest input and their receptive halo.

Three facts per model name, used by the cross-network tests (``tests/models/test_all_networks.py``)
and by anyone who needs a network that builds in milliseconds:

* `TINY_OVERRIDES` / `tiny_overrides`: architecture overrides for `build_model` that keep every
  code path of the network (shifted windows, feedback steps, pyramid levels, dense connections)
  but shrink widths and depths, so that a CPU forward on a ~24x24 LR image takes milliseconds.
  They follow each network's own tests and builder docstring (override names as the builders
  spell them).
* `min_input_size`: the smallest LR side ``n`` for which an ``n x n`` input is accepted.
* `receptive_halo`: the receptive-field radius in LR pixels of a purely local (convolutional)
  network, i.e. the `halo` of `trainers.predict.predict_tiled` that makes tiled inference equal
  to whole-image inference; None for networks with global or window-phase dependent operations
  (FFT, attention over windows / all positions, tokens on a fixed grid, pooling on a fixed grid).

The halo is computed, not guessed: `_Reach` propagates, layer by layer as each network's
`forward` does, which LR input pixels every output pixel depends on (per phase of the output
pixel inside its LR pixel, so strided convolutions, transposed convolutions, pixel shuffles and
interpolations are exact, not rounded up). The tests check the result against autograd.

Nothing runs at import.
"""

from __future__ import annotations

import copy
import math
from collections.abc import Callable, Iterable, Mapping
from typing import Any

__all__ = ["TINY_OVERRIDES", "tiny_overrides", "min_input_size", "receptive_halo", "GLOBAL_MODELS"]

TINY_OVERRIDES: dict[str, dict[str, Any]] = {
    "bicubic": {},
    "srcnn": {"num_features": 8, "num_map_features": 4},
    "vdsr": {"num_features": 8, "num_trunk_layers": 2},
    "drrn": {"num_features": 8, "num_residual_units": 3},
    "memnet": {"num_features": 8, "num_memory_blocks": 2, "num_residual_blocks": 2},
    "nlsn": {"n_feats": 8, "n_resblocks": 2, "chunk_size": 16, "n_hashes": 2},
    "dfcan": {"num_features": 8, "num_groups": 1, "num_blocks": 2, "reduction_features": 2},
    "swinir": {"embed_dim": 12, "depths": [2, 2], "num_heads": [2, 2], "img_size": 16, "drop_path_rate": 0.0},
    "edsr_liif": {"n_feats": 4, "n_resblocks": 2, "hidden_list": [16, 16]},
    "enlcn": {"n_feats": 8, "n_resblock": 2},
    "grl": {"embed_dim": 36, "depths": [2, 1], "num_heads_window": [3, 3], "num_heads_stripe": [3, 3],
            "img_size": 16, "drop_path_rate": 0.0},
    "act": {"n_feats": 8, "n_resgroups": 2, "n_resblocks": 1, "reduction": 4, "n_heads": 4, "n_layers": 4,
            "n_fusionblocks": 2},
    "omnisr": {"num_feat": 16, "res_num": 1, "block_num": 1},
    "dbpn": {"base_filter": 4, "feat": 8, "num_stages": 1},
    "srfbn": {"num_features": 8, "num_steps": 3, "num_groups": 2},
    "prosr": {"num_init_features": 8, "growth_rate": 4, "bn_size": 2},  # + level_config, see tiny_overrides
    "mslapsrn": {"num_features": 8, "num_convs": 2},
}
"""Scale-independent small-width overrides per model name (deep-copy before mutating; prefer
`tiny_overrides`, which adds the scale-dependent ones: ProSR's ``level_config`` needs one entry per
x2 level)."""

GLOBAL_MODELS: frozenset[str] = frozenset({"dfcan", "swinir", "grl", "act", "omnisr", "nlsn", "enlcn"})
"""Networks whose output depends on the whole input or on its window / token grid phase
(`receptive_halo` is None): DFCAN (FFT + global pooling), SwinIR and GRL (windows on a grid anchored
at the top-left corner, shifted-window masks), ACT (3x3 tokens at stride 3, global MHSA), OmniSR
(window and grid attention, ESA's strided pooling), NLSN (LSH attention over all positions, random
in eval), ENLCN (linear attention over all positions)."""


def tiny_overrides(name: str, scale: int) -> dict[str, Any]:
    """The tiny overrides of `name` at `scale` (a fresh dict, safe to mutate).

    Parameters
    ----------
    name : str
        A registered model name (`trainers.models.MODEL_NAMES`), case-insensitive.
    scale : int
        Upscaling factor (2, 4, 8).

    Returns
    -------
    dict
        Keyword overrides for ``build_model(name, scale, **overrides)``.

    Raises
    ------
    KeyError
        `name` has no tiny configuration (the message lists those that have one).
    """
    key = name.lower()
    if key not in TINY_OVERRIDES:
        raise KeyError(f"no tiny configuration for {name!r}; known: {', '.join(TINY_OVERRIDES)}")
    out = copy.deepcopy(TINY_OVERRIDES[key])
    if key == "prosr":
        out["level_config"] = [[2]] * _levels(scale)
    return out


def _levels(scale: int) -> int:
    levels = int(round(math.log2(scale)))
    if 2**levels != scale:
        raise ValueError(f"need a power-of-two scale, got scale={scale}")
    return levels


def _hparams(name: str, overrides: Mapping[str, Any] | None) -> dict[str, Any]:
    """The builder's hyperparameters: its module's defaults updated with `overrides`."""
    from trainers.models.registry import model_info

    model_info(name)  # imports the module (and checks the name)
    defaults: dict[str, dict[str, Any]] = {
        "srcnn": {"num_features": 1024, "num_map_features": 128},
        "vdsr": {"num_trunk_layers": 18},
        "drrn": {"num_residual_units": 25},
        "memnet": {"num_memory_blocks": 6, "num_residual_blocks": 6},
        "nlsn": {"chunk_size": 144},
        "edsr_liif": {"n_resblocks": 16},
        "act": {"token_size": 3},
        "omnisr": {"window_size": 8},
        "dbpn": {"num_stages": 3},
        "srfbn": {"num_steps": 4, "num_groups": 6},
        "mslapsrn": {"num_convs": 10},
        "prosr": {"level_config": None},
    }
    hp = dict(defaults.get(name, {}))
    hp.update({k: v for k, v in (overrides or {}).items() if v is not None})
    return hp


def min_input_size(name: str, overrides: Mapping[str, Any] | None = None) -> int:
    """Smallest LR side ``n`` such that the network accepts an ``n x n`` input (eval mode).

    Parameters
    ----------
    name : str
        Registered model name.
    overrides : mapping, optional
        The architecture overrides the network is built with (default: the benchmark's network).

    Returns
    -------
    int
        LR pixels. NLSN needs ``h * w >= chunk_size`` (144; the side given is for a square input),
        ACT ``h, w >= 2 * token_size`` (6), OmniSR a zero-padded size ``>= 15`` (9 with window 8),
        SwinIR 3 (its reflect padding to the window multiple needs 3 rows after the mirror
        extension), ProSR 2 (reflection padding of the first conv); every other network 1.
        Below the minimum NLSN, ACT, OmniSR and ProSR raise ValueError; SwinIR fails inside
        torch's reflection padding (RuntimeError).
    """
    key = name.lower()
    hp = _hparams(key, overrides)
    if key == "nlsn":
        return math.isqrt(int(hp["chunk_size"]) - 1) + 1
    if key == "act":
        return 2 * int(hp["token_size"])
    if key == "omnisr":
        ws = int(hp["window_size"])
        return 1 if ws >= 15 else ws * (math.ceil(15 / ws) - 1) + 1
    return {"swinir": 3, "prosr": 2}.get(key, 1)


# ------------------------------------------------------------------------------------ receptive reach
class _Reach:
    """Which LR pixels each pixel of a feature map depends on.

    A map at ``res`` pixels per LR pixel (1 = LR, s = HR): its pixel ``o = res * c + phase``
    depends on LR input pixels ``c + lo[phase] .. c + hi[phase]`` (translation covariance: shifting
    the input by one LR pixel shifts the map by ``res`` pixels). Boundary effects are ignored, as
    they are the same for a tile clipped at the image border and for the whole image.
    """

    def __init__(self, res: int, lo: list[int], hi: list[int]) -> None:
        self.res, self.lo, self.hi = res, lo, hi

    @classmethod
    def lr(cls) -> _Reach:
        return cls(1, [0], [0])

    def _gather(self, res: int, sources: Callable[[int], Iterable[int]]) -> _Reach:
        lo, hi = [], []
        for o in range(res):
            los, his = [], []
            for j in sources(o):
                c, ph = divmod(j, self.res)
                los.append(c + self.lo[ph])
                his.append(c + self.hi[ph])
            lo.append(min(los))
            hi.append(max(his))
        return _Reach(res, lo, hi)

    def conv(self, k: int, times: int = 1) -> _Reach:
        """``times`` stride-1 convolutions of odd size k ('same' padding)."""
        r = self
        for _ in range(times):
            r = r._gather(r.res, lambda o: range(o - k // 2, o + k // 2 + 1))
        return r

    def strided(self, k: int, s: int, p: int) -> _Reach:
        """Conv2d(k, stride s, padding p): ``res / s``."""
        if self.res % s:
            raise ValueError(f"stride {s} does not divide resolution {self.res}")
        return self._gather(self.res // s, lambda i: range(s * i - p, s * i - p + k))

    def deconv(self, k: int, s: int, p: int) -> _Reach:
        """ConvTranspose2d(k, stride s, padding p): ``res * s``."""
        return self._gather(self.res * s, lambda o: range(-((k - 1 - o - p) // s), (o + p) // s + 1))

    def shuffle(self, r: int) -> _Reach:
        """PixelShuffle(r)."""
        return self._gather(self.res * r, lambda o: [o // r])

    def interp(self, s: int, taps: int) -> _Reach:
        """x s interpolation with half-pixel centres: bilinear (taps 2) or bicubic (taps 4)."""

        def src(o: int) -> range:
            f = (2 * o + 1 - s) // (2 * s)  # floor((o + 0.5) / s - 0.5)
            return range(f - (taps // 2 - 1), f + taps // 2 + 1)

        return self._gather(self.res * s, src)

    def nearest_pair(self, s: int) -> _Reach:
        """LIIF's local ensemble: the LR cells at ``(o + 0.5) / s -+ 0.5`` (res s output)."""
        def src(o: int) -> range:
            return range((2 * o + 1 - s) // (2 * s), (2 * o + 1 + s) // (2 * s) + 1)

        return self._gather(self.res * s, src)

    def __or__(self, other: _Reach) -> _Reach:
        if self.res != other.res:
            raise ValueError(f"cannot merge maps at {self.res} and {other.res} px per LR px")
        return _Reach(self.res, [min(a, b) for a, b in zip(self.lo, other.lo)],
                      [max(a, b) for a, b in zip(self.hi, other.hi)])  # fmt: skip

    def radius(self) -> int:
        return max(max(-v for v in self.lo), max(self.hi), 0)


def _union(maps: list[_Reach]) -> _Reach:
    out = maps[0]
    for m in maps[1:]:
        out = out | m
    return out


_PROJ = {2: (6, 2, 2), 4: (8, 4, 2), 8: (12, 8, 2)}


def _dbpn(s: int, hp: dict[str, Any]) -> _Reach:
    k, st, p = _PROJ[s]

    def up(x: _Reach) -> _Reach:
        h0 = x.deconv(k, st, p)
        l0 = h0.strided(k, st, p)
        return (l0 | x).deconv(k, st, p) | h0

    def down(x: _Reach) -> _Reach:
        l0 = x.strided(k, st, p)
        h0 = l0.deconv(k, st, p)
        return (h0 | x).strided(k, st, p) | l0

    low = _Reach.lr().conv(3)
    results = []
    for _ in range(int(hp["num_stages"])):
        h1 = up(low)
        l1 = down(h1)
        concat_h = up(l1) | h1
        low = down(concat_h)
        concat_l = low | l1
        for _i in range(3, 7):
            concat_h = up(concat_l) | concat_h
            low = down(concat_h)
            concat_l = low | concat_l
        results.append(up(concat_l))
    return _union(results).conv(3)


def _srfbn(s: int, hp: dict[str, Any]) -> _Reach:
    k, st, p = _PROJ[s]
    base = _Reach.lr().interp(s, 2)
    x = _Reach.lr().conv(3)
    hidden, outs = x, []
    for _ in range(int(hp["num_steps"])):
        lr_feats = [x | hidden]
        hr_feats = []
        for _g in range(int(hp["num_groups"])):
            hr_feats.append(_union(lr_feats).deconv(k, st, p))
            lr_feats.append(_union(hr_feats).strided(k, st, p))
        hidden = _union(lr_feats[1:])
        outs.append(base | hidden.deconv(k, st, p).conv(3))
    return outs[-1]


def _prosr(s: int, hp: dict[str, Any]) -> _Reach:
    config = hp["level_config"] or [[8] * 9, [8] * 3, [8]][: _levels(s)]
    feats = _Reach.lr().conv(3)
    out = feats
    for k, blocks in enumerate(config, start=1):
        body = feats.conv(3, times=sum(blocks) + 1)  # dense layers (one 3x3 each) + final_conv
        feats = (body | feats).conv(3).shuffle(2)
        out = feats.conv(3) | _Reach.lr().interp(2**k, 4)
    return out


def _mslapsrn(s: int, hp: dict[str, Any]) -> _Reach:
    feat = _Reach.lr().conv(3)
    img = _Reach.lr()
    for _ in range(_levels(s)):
        feat = feat.conv(3, times=int(hp["num_convs"])).deconv(4, 2, 1)
        img = img.deconv(4, 2, 1) | feat.conv(3)
    return img


def _pre(s: int, hr_convs: int, k: int = 3) -> _Reach:
    """Bicubic x s, then `hr_convs` k x k convolutions at HR, plus the bicubic residual."""
    up = _Reach.lr().interp(s, 4)
    return up.conv(k, times=hr_convs) | up


_REACH: dict[str, Callable[[int, dict[str, Any]], _Reach]] = {
    "bicubic": lambda s, hp: _Reach.lr().interp(s, 4),
    "srcnn": lambda s, hp: _Reach.lr().interp(s, 4).conv(5),
    "vdsr": lambda s, hp: _pre(s, int(hp["num_trunk_layers"]) + 2),
    "drrn": lambda s, hp: _pre(s, 2 * int(hp["num_residual_units"]) + 2),
    "memnet": lambda s, hp: _pre(
        s, 1 + 2 * int(hp["num_memory_blocks"]) * int(hp["num_residual_blocks"]) ** 2
    ),
    "edsr_liif": lambda s, hp: _Reach.lr().conv(3, times=2 * int(hp["n_resblocks"]) + 3).nearest_pair(s),
    "dbpn": _dbpn,
    "srfbn": _srfbn,
    "prosr": _prosr,
    "mslapsrn": _mslapsrn,
}


def receptive_halo(name: str, scale: int = 4, overrides: Mapping[str, Any] | None = None) -> int | None:
    """Receptive-field radius in LR pixels of a local network, None for a global one.

    A halo of at least this many LR pixels around every tile makes
    `trainers.predict.predict_tiled` equal to whole-image inference (up to float rounding) for
    the networks that only use convolutions, pointwise layers (BatchNorm in eval, activations)
    and fixed-ratio interpolations. For the networks in `GLOBAL_MODELS` no finite halo does:
    they get None, and tiled inference relies on blending (see `trainers.predict`).

    Parameters
    ----------
    name : str
        Registered model name.
    scale : int
        Upscaling factor (strided projections and interpolations depend on it).
    overrides : mapping, optional
        Architecture overrides (depths matter; widths do not). Default: the benchmark's network.

    Returns
    -------
    int or None
        The radius ``r``: output pixels inside LR pixel ``(y, x)`` depend only on LR pixels
        ``(y + dy, x + dx)`` with ``|dy|, |dx| <= r``. For example the benchmark's DRRN (52 HR
        convolutions of 3x3 after bicubic) has ``receptive_halo("drrn", 4) == 15``.
    """
    key = name.lower()
    hp = _hparams(key, overrides)
    if key in GLOBAL_MODELS:
        return None
    return _REACH[key](int(scale), hp).radius()
