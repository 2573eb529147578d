"""Whole-tile inference: a model over an entire LR tile in overlapping tiles, blended without seams.

Each output tile is computed from its *core* (``tile`` LR pixels square) plus a *halo* of context
(``halo`` LR pixels on every side, clipped at the image border) that is thrown away after the
forward pass, so that for a network whose receptive field radius is at most the halo the core is
exactly what whole-image inference gives. Neighbouring cores overlap by ``overlap`` LR pixels and
are blended with linear ramps (weights > 0 everywhere, 1 away from seams), which hides what the
halo cannot: window-attention networks (SwinIR, GRL, OmniSR) depend on the window grid's phase
(SwinIR#69, #91), so their tiles disagree slightly and the ramp makes the transition smooth.

Memory stays bounded: float accumulators cover one band of tile rows (``(C, s·(tile+overlap),
s·W)``); finished rows are quantised to uint8 and handed to a sink (a Zarr array for
`predict_to_store`, or a numpy array for `predict_tiled`).
"""

from __future__ import annotations

import logging
from collections.abc import Callable, Iterator
from typing import Any

import numpy as np
import torch

__all__ = [
    "INPUT_GRID",
    "input_grid",
    "tile_starts",
    "blend_ramp",
    "predict_tiled",
    "predict_to_store",
    "prediction_path",
]

log = logging.getLogger(__name__)

INPUT_GRID: dict[str, int] = {"swinir": 8, "grl": 8, "omnisr": 8, "act": 3}
"""LR-pixel grid of each network's window partition (SwinIR/GRL/OmniSR 8×8 windows, ACT's 3×3
tokens). Crops that start on a multiple of it see the windows at the same phase as whole-image
inference, which is what makes their tiles agree (tests/models/test_all_networks.py)."""


def input_grid(method: str) -> int:
    """Crop alignment (LR px) for `method`: `INPUT_GRID` entry, 1 for other networks."""
    return INPUT_GRID.get(str(method).lower(), 1)


def tile_starts(n: int, tile: int, overlap: int) -> list[int]:
    """Start offsets of cores of side `tile` covering ``[0, n)`` with at least `overlap` overlap.

    The last core is shifted back so it ends at `n` (all cores have the same size when n >= tile).

    Examples
    --------
    >>> tile_starts(100, 40, 8)
    [0, 32, 60]
    >>> tile_starts(30, 40, 8)
    [0]
    """
    if tile <= 0 or overlap < 0 or overlap >= tile:
        raise ValueError(f"need tile > overlap >= 0, got tile={tile}, overlap={overlap}")
    if n <= tile:
        return [0]
    step = tile - overlap
    starts = list(range(0, n - tile, step))
    starts.append(n - tile)
    return starts


def blend_ramp(length: int, ramp: int, *, taper_start: bool, taper_end: bool) -> np.ndarray:
    """1-D blending weights of one core: linear ramps of `ramp` pixels on the tapered sides.

    Returns (length,) float32 in (0, 1]; ``w[i] = (i + 0.5) / ramp`` near a tapered start, the
    mirror near a tapered end, 1 elsewhere. Two cores overlapping by `ramp` pixels therefore have
    weights summing to 1 across the seam.
    """
    w = np.ones(length, dtype=np.float32)
    if ramp > 0:
        r = (np.arange(min(ramp, length), dtype=np.float32) + 0.5) / ramp
        if taper_start:
            w[: len(r)] = np.minimum(w[: len(r)], r)
        if taper_end:
            w[length - len(r) :] = np.minimum(w[length - len(r) :], r[::-1])
    return w


def _iter_rows_of_tiles(h: int, w: int, tile: int, overlap: int) -> Iterator[tuple[int, list[int]]]:
    xs = tile_starts(w, tile, overlap)
    for y in tile_starts(h, tile, overlap):
        yield y, xs


@torch.no_grad()
def _run_band(
    model: Callable[[torch.Tensor], torch.Tensor],
    lr: torch.Tensor,
    y: int,
    xs: list[int],
    *,
    tile: int,
    halo: int,
    scale: int,
    batch_size: int,
    device: torch.device,
    align: int = 1,
) -> list[torch.Tensor]:
    """Forward every core of one tile row; returns (C, s·th, s·tw) float32 CPU tensors."""
    _, h, w = lr.shape
    th = min(tile, h)
    outs: list[torch.Tensor] = []
    pending: list[tuple[torch.Tensor, tuple[int, int, int, int]]] = []

    def flush() -> None:
        if not pending:
            return
        batch = torch.stack([p[0] for p in pending]).to(device)
        pred = model(batch).float().cpu()
        for k, (_, (top, left, ch, cw)) in enumerate(pending):
            outs.append(pred[k, :, top * scale : (top + ch) * scale, left * scale : (left + cw) * scale])
        pending.clear()

    for x in xs:
        tw = min(tile, w)
        y0, y1 = max(y - halo, 0), min(y + th + halo, h)
        x0, x1 = max(x - halo, 0), min(x + tw + halo, w)
        y0, x0 = y0 - y0 % align, x0 - x0 % align  # window grid at the whole image's phase
        crop = lr[:, y0:y1, x0:x1]
        if pending and pending[0][0].shape != crop.shape:
            flush()
        pending.append((crop, (y - y0, x - x0, th, tw)))
        if len(pending) >= batch_size:
            flush()
    flush()
    return outs


def predict_tiled(
    model: Callable[[torch.Tensor], torch.Tensor],
    lr: torch.Tensor | np.ndarray,
    scale: int,
    *,
    tile: int = 128,
    overlap: int = 16,
    halo: int = 16,
    batch_size: int = 4,
    align: int = 1,
    device: str | torch.device | None = None,
    sink: Callable[[int, np.ndarray], None] | None = None,
    progress: Callable[[int, int], None] | None = None,
) -> np.ndarray | None:
    """Super-resolve a whole LR image tile by tile.

    Parameters
    ----------
    model : callable
        Maps ``(B, C, h, w)`` float32 in [0, 1] to ``(B, C, s·h, s·w)`` (put it in eval mode).
    lr : (C, h, w) float32 in [0, 1] or uint8 (divided by 255)
        The LR image, LR pixels.
    scale : int
        Upscaling factor s.
    tile, overlap, halo : int
        Core side, overlap between neighbouring cores, and discarded context on every side, all in
        LR pixels. A halo >= the network's receptive field radius makes each core exact.
    batch_size : int
        Cores per forward pass.
    align : int
        Every crop starts on a multiple of `align` LR px (its top/left halo grows by up to
        ``align − 1``), so window-attention networks see their window grid at the same phase as
        in whole-image inference; use ``input_grid(method)``.
    device : str or torch.device, optional
        Where the model runs (default: the model's parameters' device, else CPU).
    sink : callable, optional
        ``sink(row0_hr, rows)`` receives finished output rows ``(C, n, s·w)`` uint8 from top to
        bottom; when given, nothing is accumulated for the whole image and None is returned.
    progress : callable, optional
        ``progress(done, total)`` after each row of tiles.

    Returns
    -------
    (C, s·h, s·w) uint8 (``round(clamp(sr, 0, 1)·255)``), or None when `sink` is given.
    """
    if isinstance(lr, np.ndarray):
        lr_t = torch.from_numpy(lr.astype(np.float32) / 255.0 if lr.dtype == np.uint8 else lr)
    else:
        lr_t = lr.float() / 255.0 if lr.dtype == torch.uint8 else lr.float()
    if lr_t.ndim != 3:
        raise ValueError(f"lr must be (C, h, w), got shape {tuple(lr_t.shape)}")
    if halo < 0 or align < 1:
        raise ValueError(f"need halo >= 0 and align >= 1, got halo={halo}, align={align}")
    if device is None:
        params = list(getattr(model, "parameters", lambda: [])())
        device = params[0].device if params else torch.device("cpu")
    device = torch.device(device)
    c, h, w = lr_t.shape
    s = int(scale)
    out_w = s * w
    result = np.zeros((c, s * h, out_w), dtype=np.uint8) if sink is None else None

    def emit(row0: int, rows: np.ndarray) -> None:
        if result is not None:
            result[:, row0 : row0 + rows.shape[1]] = rows
        else:
            sink(row0, rows)

    ys = tile_starts(h, tile, overlap)
    xs = tile_starts(w, tile, overlap)
    th, tw = min(tile, h), min(tile, w)
    band_top = 0  # first HR row not yet emitted
    acc = np.zeros((c, 0, out_w), dtype=np.float32)
    wacc = np.zeros((0, out_w), dtype=np.float32)
    for r, y in enumerate(ys):
        tiles = _run_band(
            model,
            lr_t,
            y,
            xs,
            tile=tile,
            halo=halo,
            scale=s,
            batch_size=batch_size,
            device=device,
            align=align,
        )
        y_hr, band_end = y * s, (y + th) * s
        grow = band_end - band_top - acc.shape[1]
        if grow > 0:
            acc = np.concatenate([acc, np.zeros((c, grow, out_w), np.float32)], axis=1)
            wacc = np.concatenate([wacc, np.zeros((grow, out_w), np.float32)], axis=0)
        ramp_y = blend_ramp(th * s, overlap * s, taper_start=r > 0, taper_end=r < len(ys) - 1)
        for k, (x, pred) in enumerate(zip(xs, tiles)):
            ramp_x = blend_ramp(tw * s, overlap * s, taper_start=k > 0, taper_end=k < len(xs) - 1)
            wt = ramp_y[:, None] * ramp_x[None, :]
            ys_, xs_ = slice(y_hr - band_top, y_hr - band_top + th * s), slice(x * s, (x + tw) * s)
            acc[:, ys_, xs_] += pred.numpy() * wt
            wacc[ys_, xs_] += wt
        # rows above the next core's top are final
        final_end = ys[r + 1] * s if r + 1 < len(ys) else band_end
        n_final = final_end - band_top
        if n_final > 0:
            rows = acc[:, :n_final] / wacc[None, :n_final]
            emit(band_top, np.round(np.clip(rows, 0.0, 1.0) * 255.0).astype(np.uint8))
            acc, wacc = acc[:, n_final:], wacc[n_final:]
            band_top = final_end
        if progress is not None:
            progress(r + 1, len(ys))
    return result


def prediction_path(name: str, tile: int) -> str:
    """Group of a whole-tile prediction in a store: ``predictions/<name>/<tile>`` (OME-NGFF image)."""
    if not name or "/" in name:
        raise ValueError(f"prediction name must be a non-empty name without '/', got {name!r}")
    return f"predictions/{name}/{int(tile)}"


def predict_to_store(
    model: Callable[[torch.Tensor], torch.Tensor],
    store: str,
    tile_id: int,
    scale: int,
    markers: list[str],
    *,
    name: str,
    out_store: str | None = None,
    tile: int = 128,
    overlap: int = 16,
    halo: int = 16,
    batch_size: int = 4,
    align: int = 1,
    device: str | torch.device | None = None,
    progress: Callable[[int, int], None] | None = None,
    metadata: dict[str, Any] | None = None,
) -> str:
    """Predict a whole tile of a store and write it as an OME-NGFF image.

    Reads the /`scale` acquisition of `tile_id` (the given markers) lazily, writes level 0 row band
    by row band into ``predictions/<name>/<tile>/0`` of `out_store` (default: the same store) —
    axes (c, y, x), uint8, HR pixels, the HR chunking and pixel size — then the display levels,
    then the OME metadata (last, so an interrupted prediction is visibly incomplete).

    Returns
    -------
    str
        The group path written.
    """
    import dask.array as da

    from srdata.schema import MARKERS, image_path, open_root, read_attrs
    from srdata.writer import compressors, default_n_levels, ome_image_metadata, pyramid_levels

    src = open_root(store, mode="r")
    attrs = read_attrs(src, where=store)
    if int(tile_id) not in attrs.tiles:
        raise ValueError(f"{store}: no tile {tile_id}; tiles are {attrs.tiles}")
    unknown = [m for m in markers if m not in attrs.markers]
    if unknown:
        raise ValueError(f"{store}: unknown marker(s) {unknown}; markers are {attrs.markers}")
    lr_arr = src[image_path(tile_id, scale)]
    chans = [MARKERS.index(m) for m in markers]
    lr = np.stack([np.asarray(lr_arr[ci]) for ci in chans])
    c, h, w = lr.shape
    s = int(scale)
    chunk = int(attrs.chunks.get("hr", 512))
    dst = open_root(out_store or store, mode="a")
    group_path = prediction_path(name, tile_id)
    grp = dst.create_group(group_path, overwrite=True)
    level0 = grp.create_array(
        "0",
        shape=(c, s * h, s * w),
        dtype="uint8",
        chunks=(1, chunk, chunk),
        compressors=compressors(),
        fill_value=0,
        dimension_names=("c", "y", "x"),
    )

    def sink(row0: int, rows: np.ndarray) -> None:
        level0[:, row0 : row0 + rows.shape[1], :] = rows

    predict_tiled(
        model, lr, s, tile=tile, overlap=overlap, halo=halo, batch_size=batch_size, align=align,
        device=device, sink=sink, progress=progress,
    )  # fmt: skip
    n_levels = default_n_levels((s * h, s * w), chunk)
    levels = pyramid_levels(da.from_zarr(level0), n_levels, (1, chunk, chunk), "mean")
    targets = [
        grp.create_array(
            str(lv),
            shape=arr.shape,
            dtype="uint8",
            chunks=(1, chunk, chunk),
            compressors=compressors(),
            fill_value=0,
            dimension_names=("c", "y", "x"),
        )  # fmt: skip
        for lv, arr in enumerate(levels)
        if lv > 0
    ]
    if targets:
        da.store(levels[1:], targets, lock=False)
    coarsest = (targets[-1] if targets else level0)[...]
    meta = ome_image_metadata(
        group_path, n_levels, attrs.pixel_size_um.get("hr"), channel_names=list(markers), coarsest=coarsest
    )
    grp.attrs["srcaco2_prediction"] = {"markers": list(markers), "scale": s, "source_tile": int(tile_id),
                                       **(metadata or {})}  # fmt: skip
    grp.attrs["ome"] = meta
    return group_path

