"""The store handle: one object that knows where everything of a store lives and what it holds.

`Store.open` reads the root attributes once (`StoreAttrs`, validated) and then hands out the
arrays and groups of the store by meaning, never by spelled path: `tile_image(t, s)`,
`roi(t)`, `index()`, `prediction(name, t)`. It answers the questions every command asks
(`check(tiles=, marker=, scale=)` with one-line errors), writes the root attributes
(`update_attrs`) and a prediction (`write_prediction`, a context manager: lease, create, finish,
delete on failure).

This package (`paths`) is the only place that spells a path inside a store (``tiles/<t>/<acq>/<level>``,
``tiles/<t>/hr/labels/roi``, ``index/<column>``, ``predictions/<name>/<t>``); the layout itself
is documented in `srcaco2.srdata.schema` and docs/store.md.
"""

from __future__ import annotations

from srcaco2.srdata.store.handle import Store
from srcaco2.srdata.store.lifecycle import create_store, remove_store, store_exists
from srcaco2.srdata.store.paths import (
    ARRAY_CONFIG,
    COMPRESSION,
    COVERAGE,
    TileId,
    compressors,
    coverage_path,
    image_group_path,
    image_path,
    index_path,
    level_count,
    open_root,
    parse_prediction_path,
    prediction_path,
    roi_group_path,
    roi_path,
    tile_path,
)

__all__ = [
    "ARRAY_CONFIG",
    "COMPRESSION",
    "compressors",
    "Store",
    "TileId",
    "create_store",
    "remove_store",
    "store_exists",
    "COVERAGE",
    "open_root",
    "level_count",
    "tile_path",
    "image_path",
    "image_group_path",
    "roi_group_path",
    "roi_path",
    "coverage_path",
    "index_path",
    "prediction_path",
    "parse_prediction_path",
]
