"""Super-resolve a user's own image file (TIFF or OME-Zarr) into an OME-Zarr image or a TIFF.

The image is read whole (it is the low-resolution input: 1/s² of the output), tiled with the
network's defaults (`srcaco2.trainers.tiling.plan_tiling`), and the output is streamed row band by row
band into its file (`srcaco2.srdata.ome.OmeImageWriter` or `srcaco2.srdata.images.TiffRowWriter`), so the
super-resolved image itself never has to fit in RAM (a 9,344² x8 output passes through one band of
tile rows at a time).

Intensities: the networks see float32 in [0, 1]. uint8 input is divided by 255 and the output is
uint8 ``round(clip(sr, 0, 1) · 255)`` (the benchmark's convention). uint16 input is divided by
`in_max` (default 65535; pass the detector's maximum, e.g. 4095 for 12-bit data, so that its
range maps onto [0, 1]) and the output is uint16 ``round(clip(sr, 0, 1) · in_max)``, the same
scale as the input. The scaling is recorded in the output's metadata.
"""

from __future__ import annotations

import logging
import os
import shutil
from collections.abc import Callable, Sequence
from typing import Any

import numpy as np
import torch

from srcaco2.srdata.images import output_kind
from srcaco2.trainers.predict import predict_tiled
from srcaco2.trainers.tiling import Tiling, plan_tiling

__all__ = ["predict_image", "PREDICTION_INFO_KEY"]

log = logging.getLogger(__name__)

PREDICTION_INFO_KEY = "srcaco2_prediction"
"""Attribute (OME-Zarr) / ImageJ ``Info`` JSON (TIFF) holding what made the output."""


def predict_image(
    model: Callable[[torch.Tensor], torch.Tensor],
    input_path: str,
    output_path: str,
    scale: int,
    *,
    method: str | None,
    channels: Sequence[int] | None = None,
    channel_names: Sequence[str] | None = None,
    in_max: float | None = None,
    pixel_size_um: float | None = None,
    tiling: Tiling | None = None,
    batch_size: int = 4,
    device: str | torch.device | None = None,
    progress: Callable[[int, int], None] | None = None,
    overwrite: bool = False,
    chunk: int = 512,
    metadata: dict[str, Any] | None = None,
    intensity: dict[str, Any] | None = None,
) -> dict[str, Any]:
    """Super-resolve the image at `input_path` into `output_path`.

    Parameters
    ----------
    model : callable
        ``(B, C, h, w)`` float32 in [0, 1] -> ``(B, C, s·h, s·w)``, in eval mode. Channels are
        predicted one at a time (the benchmark's networks take one channel).
    input_path : str
        TIFF (2-D or channel-first, uint8 or uint16) or OME-Zarr image (`srcaco2.srdata.images.load_image`).
    output_path : str
        ``*.ome.zarr`` / ``*.zarr`` (OME-NGFF 0.5 multiscales with channel names, colours and the
        pixel size divided by `scale`) or ``*.tif`` / ``*.tiff`` (ImageJ hyperstack).
    scale : int
        Upscaling factor.
    method : str or None
        Registry name (tiling defaults come from it when `tiling` is None).
    channels : sequence of int, optional
        Channel indices to predict (default: all).
    channel_names : sequence of str, optional
        Names of the predicted channels (default: the file's, else ``C<i>``).
    in_max : float, optional
        Integer grey level that maps to 1.0 (default: 255 for uint8, 65535 for uint16).
    pixel_size_um : float, optional
        Input pixel size in µm when the file does not state it (or to override it).
    tiling : Tiling, optional
        Explicit tiling (default `plan_tiling(method, scale)`).
    batch_size, device, progress
        As in `predict_tiled` (`progress(done, total)` counts tile rows over all channels).
    overwrite : bool
        Replace an existing output.
    chunk : int
        OME-Zarr chunk edge, output pixels.
    metadata : dict, optional
        Extra provenance recorded beside the prediction (e.g. the checkpoint).

    Returns
    -------
    dict
        ``output``, ``kind``, ``shape`` (c, y, x), ``dtype``, ``pixel_size_um`` (output, or None),
        ``channel_names``, ``intensity`` (the scaling) and ``tiling``.

    Raises
    ------
    FileNotFoundError, FileExistsError, ValueError
        Missing input, existing output without `overwrite`, a bad format / channel / size; on any
        failure during prediction the partial output is removed.
    """
    from srcaco2.srdata.images import TiffRowWriter, check_image_request, load_image

    check_image_request(input_path, output_path, channels, overwrite)  # the CLI's checks, from headers
    kind = output_kind(output_path)
    img = load_image(input_path)
    picks = list(range(len(img.data))) if channels is None else [int(c) for c in channels]
    names = list(channel_names) if channel_names else [img.channel_names[c] for c in picks]
    if len(names) != len(picks):
        raise ValueError(f"{len(names)} channel names for {len(picks)} channels")
    s = int(scale)
    c, h, w = len(picks), int(img.data.shape[1]), int(img.data.shape[2])
    plan = tiling or plan_tiling(method, s)
    if method is not None:
        from srcaco2.trainers.models import model_info

        need = model_info(method).min_input_size()
        if min(h, w) < need:
            raise ValueError(f"{input_path}: {h}x{w} LR px is below {method}'s smallest input {need}x{need}")
    dtype = img.data.dtype
    top = float(in_max or np.iinfo(dtype).max)
    if top <= 0 or top > np.iinfo(dtype).max:
        raise ValueError(f"in_max={in_max} must be in (0, {np.iinfo(dtype).max}] for {dtype} input")
    mapping = None  # a model of a uint16 store sees the grey levels through that store's scaling
    if intensity and in_max is None and str(dtype) == intensity.get("dtype"):
        from srcaco2.srdata.intensity import Intensity

        mapping = Intensity.from_attrs(intensity, str(dtype), 1)  # the model's one channel, for each
    px_in = pixel_size_um or img.pixel_size_um
    px_out = None if px_in is None else float(px_in) / s
    intensity = {
        "input_dtype": str(dtype), "in_max": top, "network_input": f"clip(pixels / {top:g}, 0, 1)",
        "output_dtype": str(dtype), "output": f"round(clip(sr, 0, 1) * {top:g})",
    }  # fmt: skip
    if mapping is not None:
        lo, hi = mapping.low[0], mapping.high[0]
        intensity = {
            "input_dtype": str(dtype), "network_input": f"(pixels - {lo:g}) / ({hi:g} - {lo:g})",
            "output_dtype": str(dtype), "output": f"clip(round(sr * ({hi:g} - {lo:g}) + {lo:g}))",
            "from": "the training store's intensity scaling (p0.1-p99.9 of its HR)",
        }  # fmt: skip
    info = {"method": method, "scale": s, "source": os.path.abspath(input_path), "source_channels": picks,
            "pixel_size_um_input": px_in, "intensity": intensity, "tiling": plan.to_json(),
            **(metadata or {})}  # fmt: skip
    shape = (c, s * h, s * w)
    if kind == "tiff":
        writer: Any = TiffRowWriter(
            output_path, shape, dtype=dtype, pixel_size_um=px_out, channel_names=names, info=info,
            overwrite=overwrite,
        )  # fmt: skip
    else:
        import zarr

        from srcaco2.srdata.ome import OmeImageWriter

        if os.path.exists(output_path):
            shutil.rmtree(output_path)
        writer = OmeImageWriter(zarr.open_group(output_path, mode="w-", zarr_format=3), shape, chunk=chunk,
                                pixel_size_um=px_out, channel_names=names, name=os.path.basename(output_path),
                                dtype=str(dtype))  # fmt: skip
    try:
        _stream_channels(model, img.data, picks, s, plan, writer, top, dtype, batch_size, device, progress,
                         mapping)  # fmt: skip
        if kind == "tiff":
            writer.finish()
        else:
            writer.finish({PREDICTION_INFO_KEY: info})
    except BaseException:
        _remove(output_path)
        raise
    return {"output": output_path, "kind": kind, "shape": list(shape), "dtype": str(dtype),
            "pixel_size_um": px_out, "channel_names": names, "intensity": intensity,
            "tiling": plan.to_json()}  # fmt: skip


def _stream_channels(
    model: Callable[[torch.Tensor], torch.Tensor],
    data: np.ndarray,
    picks: list[int],
    s: int,
    plan: Tiling,
    writer: Any,
    top: float,
    dtype: np.dtype,
    batch_size: int,
    device: str | torch.device | None,
    progress: Callable[[int, int], None] | None,
    mapping: Any = None,
) -> None:
    """Predict the channels one at a time (the networks take one channel), each into its plane;
    `mapping` (an `srcaco2.srdata.intensity.Intensity` of one channel) replaces ``/ top``."""
    import functools

    for k, ch in enumerate(picks):

        def sink(row0: int, rows: np.ndarray, k: int = k) -> None:
            writer.write_rows(row0, rows, channel=k)

        def tick(done: int, total: int, k: int = k) -> None:
            if progress is not None:
                progress(k * total + done, len(picks) * total)

        plane, to_raw = data[ch : ch + 1], None
        if mapping is not None:
            plane = mapping.to_unit(np.asarray(plane), axis=0)
            to_raw = functools.partial(mapping.from_unit, axis=0)
        predict_tiled(
            model, plane, s, tile=plan.tile, overlap=plan.overlap, halo=plan.halo,
            align=plan.align, batch_size=batch_size, device=device, sink=sink, progress=tick, in_max=top,
            out_dtype=dtype, out_max=top, to_raw=to_raw,
        )  # fmt: skip


def _remove(path: str) -> None:
    """Delete a partial output (file or OME-Zarr folder)."""
    try:
        if os.path.isdir(path):
            shutil.rmtree(path)
        elif os.path.exists(path):
            os.remove(path)
    except OSError as exc:  # pragma: no cover - report, do not mask the original error
        log.warning("could not remove the partial output %s: %s", path, exc)
