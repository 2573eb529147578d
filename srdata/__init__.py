"""Raw tiles or released patches -> one Zarr store (OME-NGFF + ROI index) -> streaming loader."""

from __future__ import annotations

from typing import Any

__all__ = ["open_store", "Store"]


def __getattr__(name: str) -> Any:
    # Lazy: `import srdata` stays light; xarray/dask load on first use of `srdata.open_store`.
    if name == "open_store":
        from srcaco2.srdata.xr import open_store

        return open_store
    if name == "Store":
        from srcaco2.srdata.store import Store

        return Store
    raise AttributeError(f"module 'srdata' has no attribute {name!r}")
