"""A bioimage.io model package (spec 0.5) of a trained network, written with ``bioimageio.spec``.

What the package holds (``save_bioimageio_package`` zips it with the rdf and checksums):

* ``<method>.py``: the architecture, self-contained (`srcaco2.trainers.export.standalone_source`),
  and ``weights.pt`` (plain state_dict): the ``pytorch_state_dict`` weights, built with the
  registry's builder kwargs (scale, in_channels, the run's overrides);
* ``weights_torchscript.pt`` where ``torch.jit.trace`` reproduces the network exactly on the test
  input and on three other sizes, the smallest among them (not for networks whose Python control
  flow depends on the input size: the trace would freeze it);
* input ``lr`` (b, c, y, x) uint8 (the raw image; pre-processing: float32, x 1/255, as the toolkit);
  output ``sr`` (b, c, s·y, s·x) float32 grey levels (post-processing: x 255, clip to [0, 255]);
  the y/x axes carry the scale (output ``scale`` = 1/s of the input's) and the output ``halo``:
  the registry's receptive halo x s, so consumers' tiled prediction equals whole-image prediction
  (bioimageio.core's tiling, measured in the tests; exact for networks on a 1-px grid). The
  declared minimum input is the network's smallest input, raised so that a tile keeps at least one
  grid step of output beside its halos; where that exceeds the real sample's LR side (512 / s: MemNet,
  and SwinIR, DBPN, ProSR, EDSR-LIIF at some scales) the minimum is that side and the halo is the
  smallest measured with the exported weights to keep tiles within 1 grey level
  (`srcaco2.trainers.export.halo`). Consumers pad the image by the input halo; the package asks for
  grey level 255 and its network cuts such strips off again (`srcaco2.trainers.export.border`), so
  border pixels equal ``srtrain predict``'s too. A global network (FFT, non-local attention) declares no halo
  and says in its description and README that it needs the whole image;
* test tensors from the real sample at the network's scale, a cover (LR | SR | HR), a README
  (training data, metrics, citation, licence) and ``config.srcaco2``: the run's facts
  (`srcaco2.trainers.export.facts`), which ``srtrain predict --checkpoint`` and ``--init-from``
  read back.

The package is written to a temporary file beside the output, checked with bioimageio.core's
``test_model`` (when ``check``), then renamed: a failure leaves nothing under the output name.
"""

from __future__ import annotations

import logging
import os
import tempfile
import warnings
from collections.abc import Mapping, Sequence
from pathlib import Path
from typing import Any

import numpy as np

__all__ = ["write_bioimageio_package", "package_geometry", "TEST_SIDE"]

log = logging.getLogger(__name__)

TEST_SIDE = 32
"""Test input side, LR px, unless the network needs more (CPU seconds in ``bioimageio test``)."""

SAMPLE_SIDE = 512
"""HR side of the real sample (`srcaco2.srdata.real_sample`): the largest test input is this / scale."""


def package_geometry(
    method: str, scale: int, overrides: Mapping[str, Any], halo: int | None = None
) -> dict[str, Any]:
    """Input size rule, output halo and test-input side of `method` at `scale`.

    `halo` (LR px, optional) replaces the receptive halo (and its measurement) by the caller's.

    Returns
    -------
    dict
        ``step`` (LR px: the window grid of a windowed local network, else 1), ``min`` (smallest
        declared input side, LR px),
        ``halo_lr`` (None: global), ``halo`` (output px, 0 for a global network), ``test_side``
        (LR px, fits the real sample), ``note`` (one sentence on tiling for the README) and
        ``measure`` (True when the receptive halo does not fit the real sample's LR side: ``halo_lr``
        is then the largest that fits, to be replaced by `srcaco2.trainers.export.halo.measured_halo`).
    """
    from srcaco2.trainers.models import model_info

    info = model_info(method)
    halo_lr = None if info.is_global else int(info.receptive_halo(scale, overrides) or 0)
    # a windowed local network (SwinIR) tiles exactly when every tile starts on its window grid: sizes
    # step by the grid, the halo and the cores (min - 2 halo) are multiples of it; any size otherwise
    step = int(info.input_grid) if halo_lr is not None else 1
    reach = halo_lr
    if halo is not None:
        if halo_lr is None:
            raise ValueError(
                f"{method} is a global network (no finite halo): it needs the whole image; drop --halo"
            )
        halo_lr = int(halo)
    if halo_lr is not None:  # tiles (core start - halo) then start on the grid too
        halo_lr = -(-halo_lr // step) * step
    need = int(info.min_input_size(overrides, scale=scale))
    side_max = SAMPLE_SIDE // int(scale)

    def smallest_for(h: int) -> int:
        return 2 * h + step * max(1, -(-(need - 2 * h) // step))

    smallest = smallest_for(halo_lr or 0)
    measure = smallest > side_max
    if measure and halo is not None:
        most = (side_max - step) // 2 // step * step
        raise ValueError(
            f"--halo {halo} needs inputs of at least {smallest} LR px, more than the real sample's "
            f"{side_max} at x{scale} (the test input): give --halo {most} or less"
        )
    if measure:  # the receptive halo does not fit the real sample's LR image: measure the one that does
        halo_lr = (side_max - step) // 2 // step * step
        smallest = smallest_for(halo_lr)
    test_side = smallest + step * max(0, -(-(TEST_SIDE - smallest) // step))
    if halo_lr is None:
        note = (f"needs the whole image ({info.global_reason}): predict without tiling (in deepImageJ, "
                "a tile as large as the image)")  # fmt: skip
    elif halo is not None:
        note = (f"output halo {halo_lr * scale} px ({halo_lr} LR px, chosen at export; the receptive halo is "
                f"{reach} LR px): tiled prediction is approximate where the halo is smaller")  # fmt: skip
    else:
        note = (f"output halo {halo_lr * scale} px (= receptive halo {halo_lr} LR px x {scale}): tiled "
                "prediction equals whole-image prediction"
                + ("" if step == 1 else f" when tiles start on multiples of {step} LR px"))  # fmt: skip
    return {"step": step, "min": smallest, "halo_lr": halo_lr, "halo": (halo_lr or 0) * int(scale),
            "test_side": test_side, "note": note, "measure": measure}  # fmt: skip


def grey_levels(facts: Mapping[str, Any]) -> dict[str, Any]:
    """The package's raw grey levels: uint8 ``/ 255`` (SR-CACO-2), or a uint16 store's mapping of the
    marker (``facts["intensity"]``: low, high -> 0, 1). ``gain``/``offset``: the pre-processing;
    ``pad``: the padding value, ``threshold``: it after pre-processing (`srcaco2.trainers.export.border`)."""
    mapping = facts.get("intensity")
    if not mapping:
        return {"dtype": "uint8", "low": 0.0, "high": 255.0, "top": 255, "gain": 1.0 / 255.0, "offset": 0.0,
                "pad": 255, "threshold": None}  # fmt: skip
    lo, hi = float(mapping["low"][0]), float(mapping["high"][0])
    span = max(hi - lo, 1e-6)
    top = int(np.iinfo(np.dtype(mapping["dtype"])).max)
    return {"dtype": str(mapping["dtype"]), "low": lo, "high": hi, "top": top, "gain": 1.0 / span,
            "offset": -lo / span, "pad": top, "threshold": (top - 0.5 - lo) / span}  # fmt: skip


def _torchscript(
    model: Any,
    x: Any,
    others: Sequence[Any],
    path: Path,
    halo: int,
    scale: int,
    threshold: float | None = None,
) -> bool:
    """Trace `model` on `x` into `path` (scripted in `BorderCut` when `halo`); True when the trace equals
    eager on `x` and on each of `others` (other sizes: a trace freezes size-dependent Python)."""
    import torch

    from srcaco2.trainers.export.border import BorderCut

    try:
        with torch.no_grad(), warnings.catch_warnings():
            # TracerWarnings (shape-dependent branches) are what the two-size comparison below decides on
            warnings.simplefilter("ignore")
            traced = torch.jit.trace(model, x, check_trace=False)
            ok = all(torch.equal(traced(t), model(t)) for t in (x, *others))
    except Exception as exc:  # a network that cannot be traced ships state_dict weights only
        log.info("torch.jit.trace failed (%s); no torchscript weights", exc)
        return False
    if not ok:
        return False
    if halo:
        try:
            cut = (
                BorderCut(traced, halo, scale)
                if threshold is None
                else BorderCut(traced, halo, scale, threshold)
            )
            traced = torch.jit.script(cut)
        except Exception as exc:  # pragma: no cover - BorderCut is TorchScript-compatible
            log.info("cannot script the border cut (%s); no torchscript weights", exc)
            return False
    traced.save(str(path))
    return True


def write_bioimageio_package(
    model: Any,
    facts: Mapping[str, Any],
    output: Path,
    *,
    name: str | None = None,
    description: str | None = None,
    authors: Sequence[str] = (),
    license_id: str = "MIT",
    tags: Sequence[str] = (),
    halo: int | None = None,
    check: bool = True,
) -> dict[str, Any]:
    """Write `model` (eval mode, CPU) and its `facts` as a bioimage.io package at `output` (.zip).

    Parameters
    ----------
    model : torch.nn.Module
        The network `load_pretrained` built (LR float32 [0, 1] -> SR).
    facts : mapping
        `srcaco2.trainers.export.facts.run_facts` of its weights.
    output : Path
        The package; replaced atomically (the caller decides about an existing file).
    name, description, authors, license_id, tags
        Package metadata (defaults from the facts).
    halo : int, optional
        Tiling halo, LR px, instead of the receptive halo or its measurement (`package_geometry`).
    check : bool
        Run ``bioimageio.core.test_model`` on the package before renaming it into place.

    Returns
    -------
    dict
        ``output``, ``weights`` (formats), ``halo`` (output px), ``min_input`` (LR px), ``test``
        (the test summary status or None).

    Raises
    ------
    ImportError
        bioimageio.spec / bioimageio.core not installed (``pip install srcaco2[bioimageio]``).
    ValueError
        The description is invalid or the package fails its own test (the summary's first error).
    """
    import torch
    from bioimageio.spec import ValidationContext, save_bioimageio_package
    from bioimageio.spec.model import v0_5 as bio

    from srcaco2.trainers.export.package_docs import (
        CITATION,
        CITATION_URL,
        readme_text,
        test_crop,
        write_cover,
    )
    from srcaco2.trainers.export.standalone_source import ENTRY_POINT, standalone_source
    from srcaco2.trainers.models import model_info

    method, s = str(facts["method"]), int(facts["scale"])
    overrides = dict(facts.get("overrides") or {})
    info = model_info(method)
    geo = package_geometry(method, s, overrides, halo)
    marker = facts.get("marker") or "channel0"
    output = Path(output)
    with tempfile.TemporaryDirectory(prefix=f".{output.name}.", dir=output.parent) as tmp_name:
        tmp = Path(tmp_name)
        arch = tmp / f"{method}_x{s}.py"
        title = f"{info.display_name} x{s} ({info.paper})"
        arch.write_text(standalone_source(method, title=title), encoding="utf-8")
        torch.save({k: v.detach().cpu() for k, v in model.state_dict().items()}, tmp / "weights.pt")
        if geo["measure"]:
            from srcaco2.srdata.real_sample import real_lr
            from srcaco2.trainers.export.halo import measured_halo

            h, diff = measured_halo(model, real_lr(s), s, step=geo["step"], min_input=geo["min"],
                                    h_max=geo["halo_lr"])  # fmt: skip
            reach = info.receptive_halo(s, overrides)
            note = (f"output halo {h * s} px, measured on the real sample: the receptive halo ({reach} LR "
                    "px) exceeds the smallest input; tiled prediction differs from whole-image prediction "
                    f"by at most {diff:g} grey level(s) there")  # fmt: skip
            geo = {**geo, "halo_lr": h, "halo": h * s, "measured_diff": diff, "note": note}
        lr8, hr = test_crop(s, geo["test_side"])
        g8 = grey_levels(facts)
        if g8["dtype"] == "uint8":
            lr = lr8
            x = torch.from_numpy(lr[None, None].astype(np.float32) / 255.0)
        else:  # the real sample placed in the store's grey-level range (its scaling's inverse)
            lr = np.round(lr8 / 255.0 * (g8["high"] - g8["low"]) + g8["low"]).astype(g8["dtype"])
            x = torch.from_numpy(
                lr[None, None].astype(np.float32) * np.float32(g8["gain"]) + np.float32(g8["offset"])
            )
        span, top = g8["high"] - g8["low"], float(g8["top"])
        with torch.no_grad(), torch.random.fork_rng(devices=[]):
            torch.manual_seed(0)  # as the package's forward (NLSN draws random rotations)
            sr = (model(x) * span + g8["low"]).clamp(0.0, top).numpy().astype(np.float32)
        np.save(tmp / "test_input.npy", lr[None, None])
        np.save(tmp / "test_output.npy", sr)
        import tifffile

        tifffile.imwrite(tmp / "sample_input.tif", lr)  # the same images for viewers (FAIR sample tensors)
        tifffile.imwrite(tmp / "sample_output.tif", sr[0, 0])
        low, g, t = geo["min"], geo["step"], geo["test_side"]  # what bioimageio's test runs, and more
        gen = torch.Generator().manual_seed(0)  # the caller's RNG stream is left alone
        sizes = ((low, low), (low + g, low + 2 * g), (t + g, t + 2 * g))
        others = [torch.rand(1, 1, a, b, generator=gen) for a, b in sizes]
        has_ts = _torchscript(model, x, others, tmp / "weights_torchscript.pt", geo["halo_lr"] or 0, s,
                              g8["threshold"])  # fmt: skip
        write_cover(tmp / "cover.png", lr8, (sr[0, 0] - g8["low"]) * (255.0 / span), hr)
        (tmp / "README.md").write_text(
            readme_text(facts, display_name=info.display_name, paper=info.paper, license_id=license_id,
                        halo_note=geo["note"], torchscript=has_ts), encoding="utf-8")  # fmt: skip
        with ValidationContext(perform_io_checks=False, root=tmp):
            descr = _describe(bio, facts, info, geo, marker, overrides, has_ts, tmp, arch.name, ENTRY_POINT,
                              name=name, description=description, authors=authors, license_id=license_id,
                              tags=tags, citation=(CITATION, CITATION_URL))  # fmt: skip
        if isinstance(descr, bio.InvalidDescr):  # pragma: no cover - built from typed parts
            raise ValueError(f"invalid bioimage.io description: {descr.validation_summary.format()}")
        packed = tmp / output.name
        save_bioimageio_package(descr, output_path=packed)
        status = None
        if check:
            from bioimageio.core import test_model

            summary = test_model(packed)
            status = summary.status
            if status != "passed":
                first = next((e.msg for d in summary.details for e in d.errors), summary.status)
                raise ValueError(f"the exported package fails bioimageio test: {first}")
        os.replace(packed, output)
    weights = ["pytorch_state_dict"] + (["torchscript"] if has_ts else [])
    return {"output": str(output), "weights": weights, "halo": geo["halo"], "min_input": geo["min"],
            "step": geo["step"], "global": geo["halo_lr"] is None, "measured_diff": geo.get("measured_diff"),
            "test": status}  # fmt: skip


def _describe(bio: Any, facts: Mapping[str, Any], info: Any, geo: Mapping[str, Any], marker: str,
              overrides: Mapping[str, Any], has_ts: bool, tmp: Path, arch_name: str, entry: str, *,
              name: str | None, description: str | None, authors: Sequence[str], license_id: str,
              tags: Sequence[str], citation: tuple[str, str]) -> Any:  # fmt: skip
    """The `bioimageio.spec.model.v0_5.ModelDescr` of the files in `tmp`."""
    import torch

    s = int(facts["scale"])
    g8 = grey_levels(facts)
    span = g8["high"] - g8["low"]
    what = "8-bit" if g8["dtype"] == "uint8" else f"{g8['dtype']} (the training store's)"
    ids = (bio.AxisId("y"), bio.AxisId("x"))
    in_axes = [bio.BatchAxis(), bio.ChannelAxis(channel_names=[bio.Identifier(marker)])] + [
        bio.SpaceInputAxis(id=a, size=bio.ParameterizedSize(min=geo["min"], step=geo["step"])) for a in ids
    ]
    out_space = [
        (bio.SpaceOutputAxisWithHalo if geo["halo"] else bio.SpaceOutputAxis)(
            id=a,
            size=bio.SizeReference(tensor_id=bio.TensorId("lr"), axis_id=a),
            scale=1.0 / s,
            **({"halo": geo["halo"]} if geo["halo"] else {}),
        )  # fmt: skip
        for a in ids
    ]
    inp = bio.InputTensorDescr(
        id=bio.TensorId("lr"), axes=in_axes, test_tensor=bio.FileDescr(source=tmp / "test_input.npy"),
        sample_tensor=bio.FileDescr(source=tmp / "sample_input.tif"),
        data=bio.IntervalOrRatioDataDescr(type=g8["dtype"]),
        pad=bio.ConstantPadding(value=g8["pad"]) if geo["halo"] else None,  # cut off again: border.py
        description=f"raw low-resolution image, {what} grey levels",
        preprocessing=[
            bio.EnsureDtypeDescr(kwargs=bio.EnsureDtypeKwargs(dtype="float32")),
            bio.ScaleLinearDescr(kwargs=bio.ScaleLinearKwargs(gain=g8["gain"], offset=g8["offset"])),
            # stated last, or the spec appends a cast back to the input's dtype (uint8)
            bio.EnsureDtypeDescr(kwargs=bio.EnsureDtypeKwargs(dtype="float32")),
        ],
    )  # fmt: skip
    out = bio.OutputTensorDescr(
        id=bio.TensorId("sr"), axes=[bio.BatchAxis(), bio.ChannelAxis(channel_names=[bio.Identifier(marker)]),
                                     *out_space],
        test_tensor=bio.FileDescr(source=tmp / "test_output.npy"),
        sample_tensor=bio.FileDescr(source=tmp / "sample_output.tif"),
        data=bio.IntervalOrRatioDataDescr(type="float32", range=(0.0, float(g8["top"]))),
        description=f"super-resolved image (x{s}), {what} grey levels in [0, {g8['top']}] (float)",
        postprocessing=[
            bio.ScaleLinearDescr(kwargs=bio.ScaleLinearKwargs(gain=span, offset=g8["low"])),
            bio.ClipDescr(kwargs=bio.ClipKwargs(min=0.0, max=float(g8["top"]))),
            bio.EnsureDtypeDescr(kwargs=bio.EnsureDtypeKwargs(dtype="float32")),
        ],
    )  # fmt: skip
    torch_version = bio.Version(torch.__version__.split("+")[0])
    kwargs = {"scale": s, "in_channels": int(facts.get("in_channels") or 1), **overrides}
    if geo["halo"]:
        kwargs["border_halo"] = int(geo["halo_lr"])
        if g8["threshold"] is not None:
            kwargs["border_threshold"] = float(g8["threshold"])
    weights = bio.WeightsDescr(
        pytorch_state_dict=bio.PytorchStateDictWeightsDescr(
            source=tmp / "weights.pt", pytorch_version=torch_version,
            architecture=bio.ArchitectureFromFileDescr(source=tmp / arch_name, callable=bio.Identifier(entry),
                                                       kwargs=kwargs),
        ),
        torchscript=bio.TorchscriptWeightsDescr(
            source=tmp / "weights_torchscript.pt", pytorch_version=torch_version, parent="pytorch_state_dict"
        ) if has_ts else None,
    )  # fmt: skip
    marker_text = facts.get("marker") or "one channel"
    default_name = f"SR-CACO-2 {info.display_name} x{s} {marker_text}"
    default_description = (
        f"x{s} super-resolution of confocal fluorescence microscopy ({marker_text}, SR-CACO-2), "
        f"{info.display_name}; {geo['note']}."
    )
    return bio.ModelDescr(
        name=name or default_name, description=description or default_description,
        authors=[bio.Author(name=a) for a in (authors or ["srcaco2 contributors"])],
        cite=[bio.CiteEntry(text=citation[0], url=bio.HttpUrl(citation[1]))],
        license=bio.LicenseId(license_id), documentation=bio.FileDescr(source=tmp / "README.md"),
        covers=[bio.FileDescr(source=tmp / "cover.png")],
        tags=list(dict.fromkeys([*tags, "super-resolution", "confocal", "fluorescence", "2d", "pytorch",
                                 "sr-caco-2", info.name])),
        inputs=[inp], outputs=[out], weights=weights,
        config={"srcaco2": dict(facts)},
    )  # fmt: skip
