"""Whole-tile inference: a model over an entire LR image in overlapping tiles, blended without seams.

Each output tile is computed from its *core* (``tile`` LR pixels square) plus a *halo* of context
(``halo`` LR pixels on every side, clipped at the image border) that is thrown away after the
forward pass, so that for a network whose receptive field radius is at most the halo the core is
exactly what whole-image inference gives. Crops start on the network's window grid
(``align``, `ModelInfo.input_grid`), so window-attention networks (SwinIR) see their windows at the
whole image's phase (SwinIR#69, #91). Neighbouring cores overlap by ``overlap`` LR pixels and are
blended with linear ramps (weights > 0 everywhere, 1 away from seams).

Defaults come from the registry (`plan_tiling`): the halo is the network's receptive halo at its
scale (`ModelInfo.receptive_halo`), which makes tiled == whole-image inference for every local
network; a *global* network (FFT, global pooling, attention over all positions: DFCAN, NLSN,
ENLCN, GRL, ACT, Omni-SR) has no finite exact halo, so its default is whole-image context
(``halo=None``: one forward over the whole image, memory of a whole-image forward); a finite halo
bounds memory at the cost of small differences near core borders.

Memory stays bounded: float accumulators cover one band of tile rows (``(C, s·tile, s·W)``
float32, reused); finished rows are quantised and handed to a sink (`srcaco2.srdata.ome.OmeImageWriter` for
`predict_to_store` and `srcaco2.trainers.predict_image`, or a numpy array for `predict_tiled`).
"""

from __future__ import annotations

import functools
import logging
from collections.abc import Callable, Iterator
from typing import Any

import numpy as np
import torch

from srcaco2.trainers.tiling import (
    DEFAULT_OVERLAP,
    DEFAULT_TILE,
    Tiling,
    blend_ramp,
    plan_tiling,
    tile_starts,
)

__all__ = ["predict_tiled", "predict_to_store"]

log = logging.getLogger(__name__)


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


def _to_unit_float(lr: torch.Tensor | np.ndarray, in_max: float | None) -> torch.Tensor:
    """(C, h, w) float32 in [0, 1]: integers divided by `in_max` (default: the dtype's maximum)."""
    if isinstance(lr, np.ndarray):
        if np.issubdtype(lr.dtype, np.integer):
            top = float(in_max or np.iinfo(lr.dtype).max)
            return torch.from_numpy(np.clip(lr.astype(np.float32) / top, 0.0, 1.0))
        return torch.from_numpy(np.ascontiguousarray(lr, dtype=np.float32))
    if not torch.is_floating_point(lr):
        top = float(in_max or torch.iinfo(lr.dtype).max)
        return (lr.float() / top).clamp(0.0, 1.0)
    return lr.float()


def _quantise(rows: np.ndarray, out_dtype: np.dtype, out_max: float) -> np.ndarray:
    """``round(clip(rows, 0, 1) · out_max)`` as `out_dtype`."""
    return np.round(np.clip(rows, 0.0, 1.0) * out_max).astype(out_dtype)


def predict_tiled(
    model: Callable[[torch.Tensor], torch.Tensor],
    lr: torch.Tensor | np.ndarray,
    scale: int,
    *,
    tile: int = DEFAULT_TILE,
    overlap: int = DEFAULT_OVERLAP,
    halo: int | None = 16,
    batch_size: int = 4,
    align: int = 1,
    device: str | torch.device | None = None,
    sink: Callable[[int, np.ndarray], None] | None = None,
    progress: Callable[[int, int], None] | None = None,
    in_max: float | None = None,
    out_dtype: Any = np.uint8,
    out_max: float | None = None,
    to_raw: Callable[[np.ndarray], np.ndarray] | None = None,
) -> np.ndarray | None:
    """Super-resolve a whole LR image tile by tile.

    Parameters
    ----------
    model : callable
        Maps ``(B, C, h, w)`` float32 in [0, 1] to ``(B, C, s·h, s·w)`` (put it in eval mode).
    lr : (C, h, w) float32 in [0, 1], or integers (uint8, uint16) divided by `in_max`
        The LR image, LR pixels.
    scale : int
        Upscaling factor s.
    tile, overlap : int
        Core side and overlap between neighbouring cores, LR pixels.
    halo : int or None
        Discarded context on every side, LR pixels; a halo >= the network's receptive field
        radius makes each core exact (`plan_tiling` gives the registry's value). None: the whole
        image is the context of every core, i.e. one forward over the whole image (exact for any
        network; memory of a whole-image forward), whose output is still emitted row band by band.
    batch_size : int
        Cores per forward pass.
    align : int
        Every crop starts on a multiple of `align` LR px (its top/left halo grows by up to
        ``align − 1``), so window-attention networks see their window grid at the same phase as
        in whole-image inference; use ``input_grid(method)``.
    device : str or torch.device, optional
        Where the model runs (default: the model's parameters' device, else CPU).
    sink : callable, optional
        ``sink(row0_hr, rows)`` receives finished output rows ``(C, n, s·w)`` from top to bottom;
        when given, nothing is accumulated for the whole image and None is returned.
    progress : callable, optional
        ``progress(done, total)`` after each row of tiles.
    in_max : float, optional
        Integer input is divided by it (default: the dtype's maximum, 255 for uint8).
    out_dtype : numpy dtype
        uint8 (default) or uint16.
    out_max : float, optional
        Output grey level of 1.0 (default: `out_dtype`'s maximum).
    to_raw : callable, optional
        Maps finished (C, n, s·w) float32 rows to raw grey levels instead (a store's
        `srcaco2.srdata.intensity.Intensity.from_unit`); `out_dtype` / `out_max` are then unused.

    Returns
    -------
    (C, s·h, s·w) `out_dtype` (``round(clamp(sr, 0, 1)·out_max)``), or None when `sink` is given.
    """
    lr_t = _to_unit_float(lr, in_max)
    if lr_t.ndim != 3:
        raise ValueError(f"lr must be (C, h, w), got shape {tuple(lr_t.shape)}")
    if (halo is not None and halo < 0) or align < 1:
        raise ValueError(f"need halo >= 0 (or None) and align >= 1, got halo={halo}, align={align}")
    if device is None:
        params = list(getattr(model, "parameters", lambda: [])())
        device = params[0].device if params else torch.device("cpu")
    device = torch.device(device)
    out_dtype = np.dtype(out_dtype)
    top = float(out_max if out_max is not None else np.iinfo(out_dtype).max)
    c, h, w = lr_t.shape
    s = int(scale)
    out_w = s * w
    result = np.zeros((c, s * h, out_w), dtype=out_dtype) if sink is None else None

    def emit(row0: int, rows: np.ndarray) -> None:
        if result is not None:
            result[:, row0 : row0 + rows.shape[1]] = rows
        else:
            sink(row0, rows)

    if halo is None:  # whole-image context: one forward, rows handed out band by band
        with torch.no_grad():
            pred = model(lr_t[None].to(device))[0]
        _check_finite(pred, 0, s * h)
        band = s * min(tile, h)
        for row0 in range(0, s * h, band):
            rows = pred[:, row0 : row0 + band].float().cpu().numpy()
            emit(row0, _quantise(rows, out_dtype, top) if to_raw is None else to_raw(rows))
        if progress is not None:
            progress(1, 1)
        return result

    ys = tile_starts(h, tile, overlap)
    xs = tile_starts(w, tile, overlap)
    th, tw = min(tile, h), min(tile, w)
    band_top = 0  # first HR row not yet emitted
    cap = th * s  # a band never spans more than one core height of HR rows
    acc = np.zeros((c, cap, out_w), dtype=np.float32)  # rows band_top .. band_top + cap
    wacc = np.zeros((cap, out_w), dtype=np.float32)
    for r, y in enumerate(ys):
        tiles = _run_band(
            model, lr_t, y, xs, tile=tile, halo=halo, scale=s, batch_size=batch_size, device=device,
            align=align,
        )  # fmt: skip
        y_hr, band_end = y * s, (y + th) * s
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
            rows = acc[:, :n_final]  # quantised in place: these rows leave the buffer
            rows /= wacc[None, :n_final]
            _check_finite(rows, band_top, final_end)
            if to_raw is not None:  # the store's own map back to raw grey levels
                emit(band_top, to_raw(rows))
            else:
                np.clip(rows, 0.0, 1.0, out=rows)
                rows *= top
                np.round(rows, out=rows)
                emit(band_top, rows.astype(out_dtype))
            rem = band_end - final_end  # rows already accumulated below the emitted ones
            acc[:, :rem] = acc[:, n_final : n_final + rem]
            wacc[:rem] = wacc[n_final : n_final + rem]
            acc[:, rem:] = 0.0
            wacc[rem:] = 0.0
            band_top = final_end
        if progress is not None:
            progress(r + 1, len(ys))
    return result


def _check_finite(values: torch.Tensor | np.ndarray, row0: int, row1: int) -> None:
    """Refuse NaN / ±inf predictions before they are quantised (they would become 0 or 255 pixels)."""
    from srcaco2.trainers.evaluate import NonFiniteOutputError

    ok = (
        bool(torch.isfinite(values).all())
        if isinstance(values, torch.Tensor)
        else bool(np.isfinite(values).all())
    )
    if not ok:
        raise NonFiniteOutputError(
            f"the network's prediction holds NaN / infinite values (output rows {row0}-{row1}); nothing "
            "was written from them: check the checkpoint (srtrain eval) or use another one"
        )


def predict_to_store(
    model: Callable[[torch.Tensor], torch.Tensor],
    store: str,
    tile_id: int,
    scale: int,
    markers: list[str],
    *,
    name: str,
    method: str | None = None,
    out_store: str | None = None,
    tile: int | None = None,
    overlap: int | None = None,
    halo: int | None = None,
    whole: bool = False,
    tiling: Tiling | None = None,
    batch_size: int = 4,
    align: int | None = None,
    device: str | torch.device | None = None,
    progress: Callable[[int, int], None] | None = None,
    metadata: dict[str, Any] | None = None,
) -> str:
    """Predict a whole tile of a store and write it as an OME-NGFF image ``predictions/<name>/<tile>``.

    Reads the /`scale` acquisition of `tile_id` (the given markers), writes level 0 row band by
    row band (`srcaco2.srdata.ome.OmeImageWriter`) into `out_store` (default: the same store) — axes
    (c, y, x), uint8, HR pixels, the HR chunking and pixel size — then the display levels, then
    the OME metadata and ``attrs["srcaco2_prediction"]`` (markers, scale, source_tile, method,
    tiling), last, so an interrupted prediction is visibly incomplete.

    Parameters
    ----------
    method : str, optional
        Registry name: tiling defaults (`plan_tiling`: receptive halo, grid) come from it.
    tile, overlap, halo, whole, align
        Explicit tiling (LR px); see `plan_tiling` and `predict_tiled`.
    tiling : Tiling, optional
        A ready plan (wins over tile, overlap, halo, whole).

    Returns
    -------
    str
        The group path written.
    """
    from srcaco2.srdata.ome import OmeImageWriter
    from srcaco2.srdata.schema import PREDICTION_ATTRS
    from srcaco2.srdata.store import Store

    plan = tiling or plan_tiling(method, scale, tile=tile, overlap=overlap, halo=halo, whole=whole)
    # one handle on the source store: opened for writing when the prediction goes into it
    src = Store.open(store, mode="r+" if out_store is None else "r")
    src.check(tiles=[tile_id], marker=markers, scale=scale)
    lr_arr = src.tile_image(tile_id, scale)
    chans = [src.marker_index(m) for m in markers]
    lr = np.stack([np.asarray(lr_arr[c]) for c in chans])
    intensity = src.intensity.select(chans)
    to_raw = None
    if src.dtype != np.uint8:  # a uint16 store: its intensity scaling in, its grey levels out
        lr = intensity.to_unit(lr, axis=0)
        to_raw = functools.partial(intensity.from_unit, axis=0)
    c, h, w = lr.shape
    s = int(scale)
    dst = src if out_store is None else Store.open_or_create(out_store, like=src)
    with dst.write_prediction(name, tile_id) as group:
        group_path = group.path
        writer = OmeImageWriter(
            group, (c, s * h, s * w), chunk=int(src.attrs.chunks.get("hr", 512)), dtype=str(src.dtype),
            pixel_size_um=src.attrs.pixel_size_um.get("hr"), channel_names=list(markers), name=group_path,
        )  # fmt: skip
        predict_tiled(
            model, lr, s, tile=plan.tile, overlap=plan.overlap, halo=plan.halo, batch_size=batch_size,
            align=plan.align if align is None else align, device=device, sink=writer.write_rows,
            progress=progress, to_raw=to_raw,
        )  # fmt: skip
        info = {"markers": list(markers), "scale": s, "source_tile": tile_id, "method": method,
                "tiling": plan.to_json(), **(metadata or {})}  # fmt: skip
        writer.finish({PREDICTION_ATTRS: info})
    return group_path
