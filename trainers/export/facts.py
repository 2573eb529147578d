"""What an exported model says about itself: the run's facts, written into the file and read back.

The facts are one JSON-able dict (`EXPORT_FORMAT`, version 1)::

    {"format": "srcaco2-export", "version": 1, "method": "swinir", "scale": 4, "marker": "CELL2",
     "in_channels": 1, "overrides": {...}, "source": "runs/x/best.pt", "source_format": "srcaco2",
     "step": 12000, "epoch": 40, "store": "/data/caco2.zarr", "recipe": "paper",
     "validation": {"step": 11000, "psnr": 31.2, ...}, "test": {...}}

They go into a bioimage.io package's rdf (``config: {srcaco2: facts}``) and into a safetensors
header (`facts_to_metadata`: every value a string, as the format requires), and are what
`srcaco2.trainers.checkpoints.read_weights` reads back: ``method``, ``scale``, ``marker``,
``in_channels`` and ``overrides`` rebuild the network.
"""

from __future__ import annotations

import csv
import json
import logging
from collections.abc import Mapping
from pathlib import Path
from typing import Any

__all__ = ["EXPORT_FORMAT", "EXPORT_VERSION", "run_facts", "facts_to_metadata", "facts_from_metadata"]

log = logging.getLogger(__name__)

EXPORT_FORMAT = "srcaco2-export"
EXPORT_VERSION = 1
_FLAT = ("method", "scale", "marker", "in_channels", "overrides")
"""Facts also written as their own header keys (JSON strings) for readers that do not parse ours."""


def _number(text: str) -> float | str:
    try:
        return float(text)
    except ValueError:
        return text


def _validation_row(run_dir: Path, best_step: Any) -> dict[str, Any] | None:
    """The ``val.csv`` row of the best step (else the last row), numbers as floats."""
    path = run_dir / "val.csv"
    if not path.is_file():
        return None
    try:
        with path.open(newline="", encoding="utf-8") as fh:
            rows = list(csv.DictReader(fh))
    except (OSError, csv.Error) as exc:
        log.warning("cannot read %s (%s); the export states no validation metrics", path, exc)
        return None
    if not rows:
        return None
    pick = next((r for r in rows if str(r.get("step")) == str(best_step)), rows[-1])
    return {k: _number(v) for k, v in pick.items() if k and v not in (None, "")}


def _test_summary(run_dir: Path) -> dict[str, Any] | None:
    """The overall means of an ``srtrain eval`` summary.json in the run directory (one level deep)."""
    for path in sorted([*run_dir.glob("summary.json"), *run_dir.glob("*/summary.json")]):
        try:
            data = json.loads(path.read_text(encoding="utf-8"))
        except (OSError, ValueError):
            continue
        means = data.get("overall") or data.get("mean") or data.get("metrics")
        if isinstance(means, Mapping):
            return {"file": path.name if path.parent == run_dir else f"{path.parent.name}/{path.name}",
                    **{k: data[k] for k in ("split", "n_windows") if k in data},
                    **{k: v for k, v in means.items() if isinstance(v, (int, float, str))}}  # fmt: skip
    return None


def run_facts(info: Mapping[str, Any]) -> dict[str, Any]:
    """The facts of the weights `load_pretrained` read (its returned ``info``).

    Parameters
    ----------
    info : mapping
        ``method``, ``scale``, ``marker``, ``overrides``, ``source``, ``format`` and, for our
        checkpoints, ``meta`` / ``config``.

    Returns
    -------
    dict
        See the module docstring; ``validation`` / ``test`` only when the run folder holds them.
    """
    meta = dict(info.get("meta") or {})
    config = dict(info.get("config") or {})
    facts: dict[str, Any] = {
        "format": EXPORT_FORMAT, "version": EXPORT_VERSION, "method": info["method"],
        "scale": int(info["scale"]), "marker": info.get("marker"),
        "in_channels": int(meta.get("in_channels") or info.get("in_channels") or 1),
        "overrides": dict(info.get("overrides") or {}), "source": str(info.get("source", "")),
        "source_format": info.get("format"),
    }  # fmt: skip
    if info.get("format") in ("srcaco2", "safetensors", "bioimageio") and info.get("facts"):
        earlier = dict(info["facts"])  # re-exporting an export keeps the training facts
        facts.update({k: v for k, v in earlier.items() if k not in facts or k == "source_format"})
    if meta.get("intensity"):  # a uint16 store's scaling of the marker: the package's pre-processing
        facts["intensity"] = meta["intensity"]
    for key in ("step", "epoch", "select_metric", "best", "best_step"):
        if key in meta:
            facts[key] = meta[key]
    data = config.get("data") or {}
    if data.get("store"):
        facts["store"] = str(data["store"])
    if config.get("recipe"):
        facts["recipe"] = config["recipe"]
    if info.get("format") == "original":
        facts["original"] = {k: v for k, v in (info.get("original") or {}).items() if k != "overrides"}
    source = Path(str(info.get("source", "")))
    run_dir = source.parent
    if info.get("format") == "srcaco2" and (run_dir / "config.yaml").is_file():
        row = _validation_row(run_dir, meta.get("best_step"))
        if row:
            facts["validation"] = row
        test = _test_summary(run_dir)
        if test:
            facts["test"] = test
    return json.loads(json.dumps(facts, default=str))  # plain JSON types only


def facts_to_metadata(facts: Mapping[str, Any]) -> dict[str, str]:
    """A safetensors header ``__metadata__`` (str -> str): each flat fact and the whole dict, as JSON."""
    out = {k: json.dumps(facts[k]) for k in _FLAT if k in facts}
    out["format"] = EXPORT_FORMAT
    out["srcaco2"] = json.dumps(dict(facts), sort_keys=True)
    return out


def facts_from_metadata(metadata: Mapping[str, str] | None) -> dict[str, Any] | None:
    """The facts `facts_to_metadata` wrote, None when the header is not ours (a foreign file)."""
    if not metadata or metadata.get("format") != EXPORT_FORMAT or "srcaco2" not in metadata:
        return None
    facts = json.loads(metadata["srcaco2"])
    return facts if isinstance(facts, dict) else None
