"""Synthetic raw tiles in the official layout: cysts of packed nuclei imaged at HR and at /2, /4, /8.

A documented physical acquisition model, calibrated on the real SR-CACO-2 sample
(``srdata/data/real_sample``, compared by ``python -m srcaco2.benchmarks.synth_realism``):

* `srcaco2.srdata.synth.model` — `SynthParams`, every parameter of the specimen, optics and detectors
  (one frozen dataclass, written to ``synth.json`` beside the tiles);
* `srcaco2.srdata.synth.scene` — the specimen: colonies of cysts of packed, touching, textured nuclei
  (CELL2), their membranes (CELL1), cytoplasmic puncta (CELL0), out-of-focus haze, cell depths;
* `srcaco2.srdata.synth.acquire` — the four scans, each a separate acquisition (own focus, PSF, pixel
  integration, stage offset of 1–2.5 LR px, gain, background, shot and read noise), and
  `write_synth`, which writes them in the official raw layout;
* `srcaco2.srdata.synth.own` — other channels, bit depths and scales: the "own data" form (TIFFs per
  tile and scale) and its manifest (`srcaco2.srdata.synth.manifest`, the schema), for `srdata build`.
"""

from srcaco2.srdata.synth.acquire import read_synth_params, synth_tile, tile_misregistration, write_synth
from srcaco2.srdata.synth.model import LR_SCALES, SCANS, SynthParams, channel_markers, nuclear_channel
from srcaco2.srdata.synth.own import write_own_synth
from srcaco2.srdata.synth.scene import Specimen, make_specimen, render

__all__ = [
    "SynthParams",
    "SCANS",
    "LR_SCALES",
    "Specimen",
    "make_specimen",
    "render",
    "synth_tile",
    "tile_misregistration",
    "write_synth",
    "read_synth_params",
    "channel_markers",
    "nuclear_channel",
    "write_own_synth",
]
