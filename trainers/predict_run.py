"""One `srtrain predict` request, from options to written outputs: `PredictRequest` and `run_predict`.

The CLI parses options into a `PredictRequest` and calls `run_predict`; everything else (which
model, which tiling, checks of the store or the image file before anything is loaded, the store's
lease, nothing half-written) happens here. Errors a user can fix are `PredictError` (one line:
what, where, how to fix) or `PredictUsageError` (a bad combination of options).
"""

from __future__ import annotations

import dataclasses
import os
from collections.abc import Callable
from typing import Any

__all__ = ["PredictRequest", "PredictError", "PredictUsageError", "run_predict", "default_output_path"]

Progress = Callable[[int, int], None]
"""``progress(done, total)`` in tile rows of one image."""


class PredictError(ValueError):
    """A prediction that cannot run or failed; the message is one line for the user."""


class PredictUsageError(PredictError):
    """A bad combination of options; ``param`` names the option to blame (or None)."""

    def __init__(self, message: str, param: str | None = None) -> None:
        super().__init__(message)
        self.param = param


@dataclasses.dataclass
class PredictRequest:
    """What to predict, with what, and where to write it (the options of `srtrain predict`).

    Exactly one of `store` (LR tiles of a store, written to its ``predictions/<name>/<tile>``) and
    `input_path` (an image file, written to `output_path`); exactly one of `checkpoint` and
    `method` (a weight-free method). Tiling sizes are LR pixels; None takes the network's defaults.
    """

    store: str | None = None
    input_path: str | None = None
    output_path: str | None = None
    checkpoint: str | None = None
    method: str | None = None
    scale: int | None = None
    marker: str | None = None
    tiles: tuple[Any, ...] = ()
    name: str | None = None
    out_store: str | None = None
    channels: tuple[int, ...] = ()
    in_max: float | None = None
    pixel_size_um: float | None = None
    overwrite: bool = False
    tile_size: int | None = None
    overlap: int | None = None
    halo: int | None = None
    whole_image: bool = False
    batch_size: int = 4
    device: str = "auto"
    panels: int = 0
    split: str = "test"
    panel_dir: str | None = None

    def check(self) -> None:
        """Refuse contradictory options and a bad image request before anything slow is loaded."""
        if (self.store is None) == (self.input_path is None):
            raise PredictUsageError("give exactly one of --store STORE or --input IMAGE")
        if (self.checkpoint is None) == (self.method is None):
            raise PredictUsageError("give exactly one of --checkpoint PATH or --method bicubic")
        if self.whole_image and self.halo is not None:
            raise PredictUsageError(
                "--whole-image and --halo exclude each other (whole image = unlimited halo)"
            )
        if self.overlap is not None and self.tile_size is not None and self.overlap >= self.tile_size:
            raise PredictUsageError(
                f"--overlap {self.overlap} must be smaller than --tile-size {self.tile_size} "
                "(cores must advance)",
                "--overlap",
            )
        if self.method is not None and self.scale is None:
            raise PredictUsageError("--method needs --scale")
        if self.input_path is not None:
            from srcaco2.srdata.images import check_image_request

            try:
                check_image_request(self.input_path, self.output_path, self.channels, self.overwrite)
            except (ValueError, FileExistsError, FileNotFoundError) as exc:
                raise PredictError(str(exc)) from None


@dataclasses.dataclass
class _Model:
    net: Any
    method: str
    scale: int
    marker: str | None
    overrides: dict[str, Any] | None
    intensity: dict[str, Any] | None = None  # the training store's scaling (uint16 stores), else None


def _load_model(req: PredictRequest) -> _Model:
    if req.checkpoint is not None:
        from srcaco2.trainers.checkpoints import load_pretrained

        try:
            net, info = load_pretrained(req.checkpoint, scale=req.scale, marker=req.marker)
        except (ValueError, FileNotFoundError, KeyError) as exc:
            raise PredictError(str(exc)) from None
        marker = req.marker or info.get("marker")
        return _Model(
            net, info["method"], int(info["scale"]), marker, info.get("overrides"), info.get("intensity")
        )
    from srcaco2.trainers.evaluate import check_weight_free_method
    from srcaco2.trainers.models import build_model

    try:
        method = check_weight_free_method(req.method)  # a network without weights would predict noise
    except ValueError as exc:
        raise PredictError(str(exc)) from None
    return _Model(build_model(method, int(req.scale)).eval(), method, int(req.scale), req.marker, None)


def default_output_path(input_path: str, method: str, scale: int) -> str:
    """``<input stem>_<method>_x<scale>.ome.zarr`` beside the input."""
    stem = os.path.basename(input_path.rstrip("/"))
    for ext in (".ome.zarr", ".zarr", ".ome.tiff", ".ome.tif", ".tiff", ".tif"):
        if stem.lower().endswith(ext):
            stem = stem[: -len(ext)]
            break
    return os.path.join(os.path.dirname(os.path.abspath(input_path)), f"{stem}_{method}_x{scale}.ome.zarr")


def run_predict(
    req: PredictRequest,
    *,
    progress: Callable[[str], Progress] | None = None,
    notify: Callable[[str], None] | None = None,
) -> list[str]:
    """Run one prediction request.

    Parameters
    ----------
    progress : callable, optional
        ``progress(label)`` returns the ``(done, total)`` callback of one image (a tile or the file).
    notify : callable, optional
        Receives notes worth a user's attention before the work starts (an inexact tiling).

    Returns
    -------
    list of str
        One line per output: the written prediction groups (store) or the file with its shape,
        dtype and pixel size (input), then any panel PNGs.

    Raises
    ------
    PredictError
        Anything the user can fix, one line (out of memory included: smaller tiles help).
    """
    import torch

    from srcaco2.trainers._ddp import resolve_device
    from srcaco2.trainers.tiling import plan_tiling

    req.check()
    model = _load_model(req)
    try:
        dev = resolve_device(req.device)
    except ValueError as exc:
        raise PredictUsageError(str(exc), "--device") from None
    model.net = model.net.to(dev).eval()
    try:
        plan = plan_tiling(
            model.method,
            model.scale,
            overrides=model.overrides,
            tile=req.tile_size,
            overlap=req.overlap,
            halo=req.halo,
            whole=req.whole_image,
        )
    except ValueError as exc:
        raise PredictUsageError(str(exc), "--overlap") from None
    if not plan.exact and notify is not None:
        reach = plan.receptive_halo if plan.receptive_halo is not None else "the whole image"
        notify(
            f"note: --halo {plan.halo} is below {model.method}'s receptive reach ({reach} LR px): tiles "
            "differ slightly from whole-image inference near their borders"
        )
    bar = progress or (lambda _label: None)
    oom = (torch.OutOfMemoryError,) if hasattr(torch, "OutOfMemoryError") else (MemoryError,)
    try:
        if req.input_path is not None:
            return [_predict_file(req, model, plan, dev, bar)]
        return _predict_store(req, model, plan, dev, bar)
    except oom as exc:
        raise PredictError(
            f"out of memory ({type(exc).__name__}); pass a smaller --tile-size or --batch-size"
            + (", or --halo N to tile this global network" if plan.halo is None else "")
        ) from None


def _predict_file(req: PredictRequest, model: _Model, plan: Any, dev: Any, bar: Callable[[str], Any]) -> str:
    from srcaco2.trainers.predict_image import predict_image

    assert req.input_path is not None
    output = req.output_path or default_output_path(req.input_path, model.method, model.scale)
    label = os.path.basename(req.input_path)
    try:
        out = predict_image(
            model.net,
            req.input_path,
            output,
            model.scale,
            method=model.method,
            channels=list(req.channels) or None,
            in_max=req.in_max,
            pixel_size_um=req.pixel_size_um,
            tiling=plan,
            batch_size=req.batch_size,
            device=dev,
            progress=bar(label),
            overwrite=req.overwrite,
            metadata={"source_model": str(req.checkpoint or req.method)},
            intensity=model.intensity,
        )
    except (ValueError, FileExistsError, FileNotFoundError) as exc:
        raise PredictError(str(exc)) from None
    except OSError as exc:  # disk full, folder made read-only meanwhile: the partial output is removed
        raise PredictError(
            f"could not write {output} ({exc.strerror or exc}); nothing was left there: free space "
            "or choose another --output and rerun"
        ) from None
    px = "unknown pixel size" if out["pixel_size_um"] is None else f"{out['pixel_size_um']:g} um/px"
    return f"{out['output']}  ({out['kind']}, {'x'.join(map(str, out['shape']))} {out['dtype']}, {px})"


def _predict_store(
    req: PredictRequest, model: _Model, plan: Any, dev: Any, bar: Callable[[str], Any]
) -> list[str]:
    from srcaco2.srdata.integrity import CheckedReader, ChunkError
    from srcaco2.srdata.lease import LeaseLostError, store_lease
    from srcaco2.srdata.schema import StoreFormatError
    from srcaco2.srdata.store import Store
    from srcaco2.srdata.storefs import StoreNotWritableError, ensure_writable
    from srcaco2.trainers.predict import predict_to_store

    assert req.store is not None
    target = req.out_store or req.store
    try:
        src = Store.open(req.store)
        marker = model.marker or ("CELL2" if "CELL2" in src.markers else src.markers[0])
        todo = list(req.tiles) or list(src.tiles)
        src.check(tiles=todo, marker=marker, scale=model.scale)
        ensure_writable(target, fix="predict into a writable store with --out-store PATH")
    except (StoreFormatError, ValueError, StoreNotWritableError) as exc:
        raise PredictError(str(exc)) from None
    name = req.name or f"{model.method}_x{model.scale}_{marker}"
    checked = CheckedReader(req.store)
    lr_arrays = {t: src.tile_image(t, model.scale) for t in todo}
    lines = []
    try:  # a deleted LR chunk would be predicted from zeros: refuse before writing anything
        for arr in lr_arrays.values():
            checked.check_box(arr, [(0, int(n)) for n in arr.shape])
        with store_lease(target, operation="srtrain predict"):  # one writer per store
            for t in todo:
                try:
                    path = predict_to_store(
                        model.net,
                        req.store,
                        t,
                        model.scale,
                        [marker],
                        name=name,
                        method=model.method,
                        out_store=req.out_store,
                        tiling=plan,
                        batch_size=req.batch_size,
                        device=dev,
                        progress=bar(f"tile {t}"),
                        metadata={"source": str(req.checkpoint or req.method)},
                    )
                except ValueError as exc:  # a damaged chunk, or a network refusing the tile size
                    arr = lr_arrays[t]
                    err = checked.explain(arr, [(0, int(n)) for n in arr.shape], exc)
                    raise PredictError(
                        str(err) if isinstance(err, ChunkError) else f"tile {t}: {exc}"
                    ) from None
                lines.append(f"{target}/{path}")
    except (StoreFormatError, LeaseLostError) as exc:  # missing chunk, another writer, lost lease
        raise PredictError(str(exc)) from None
    if req.panels > 0:
        from srcaco2.trainers.report import write_window_panels

        try:
            pngs = write_window_panels(
                model.net,
                req.store,
                req.panel_dir or f"panels_{name}",
                split=req.split,
                scale=model.scale,
                marker=marker,
                n=req.panels,
                device=dev,
                tiles=list(req.tiles) or None,
            )
        except ValueError as exc:
            raise PredictError(str(exc)) from None
        lines += [str(p) for p in pngs]
    return lines
