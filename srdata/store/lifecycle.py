"""Creating, resuming and removing a store (`create_store`, `remove_store`, `store_exists`)."""

from __future__ import annotations

import logging
from typing import Any, Literal

from srcaco2.srdata.schema import (
    FORMAT_VERSION,
    StoreAttrs,
    StoreFormatError,
)
from srcaco2.srdata.store.handle import Store
from srcaco2.srdata.store.paths import open_root

log = logging.getLogger(__name__)


_RESUME_FIELDS = ("format_version", "markers", "scales", "pixel_size_um", "chunks", "tiles", "roi")


# -- creating and removing ------------------------------------------------------------------------------


def _fs_and_path(path: str) -> tuple[Any, str]:
    import fsspec

    fs, _, paths = fsspec.get_fs_token_paths(path)
    return fs, paths[0]


def store_exists(path: str) -> bool:
    """True if `path` (local path or fsspec URL) exists and is not an empty directory."""
    fs, p = _fs_and_path(path)
    if not fs.exists(p):
        return False
    if fs.isdir(p):
        return len(fs.ls(p)) > 0
    return True


def remove_store(path: str) -> None:
    """Delete an existing srcaco2 store (any format version); refuse anything else.

    Raises
    ------
    StoreFormatError
        If `path` holds something that is not a srcaco2 store (nothing is deleted).
    """
    if not store_exists(path):
        return
    try:
        root = open_root(path, mode="r")
        is_store = isinstance(root.attrs.get("srcaco2"), dict)
    except Exception:  # noqa: BLE001 - anything unreadable is not ours to delete
        is_store = False
    if not is_store:
        raise StoreFormatError(
            f"{path}: exists and is not a srcaco2 store; refusing to delete it. "
            "Choose another STORE path or remove it yourself"
        )
    fs, p = _fs_and_path(path)
    fs.rm(p, recursive=True)


def create_store(path: str, attrs: StoreAttrs, *, mode: Literal["w-", "a"] = "w-") -> Store:
    """Create a store (``mode="w-"``) or reopen one for a resumed build (``mode="a"``).

    Parameters
    ----------
    path : str
        Local path or fsspec URL of the root group (e.g. ``out.zarr``, ``s3://bucket/x.zarr``).
    attrs : StoreAttrs
        Root attributes to write. With ``mode="a"`` and an existing store, the existing
        ``finished_tiles`` are kept and every field in ``_RESUME_FIELDS`` must agree.
    mode : {"w-", "a"}
        ``w-``: create, fail if anything exists at `path` (an empty directory is fine).
        ``a``: reopen an existing compatible store, or create it if missing.

    Returns
    -------
    Store
        The store, open for writing.

    Raises
    ------
    StoreFormatError
        `path` exists and is not a srcaco2 store; a store of another format version; ``w-`` on an
        existing store; ``a`` on a store built with other parameters.
    """
    if attrs.format_version != FORMAT_VERSION:
        raise ValueError(f"attrs.format_version must be {FORMAT_VERSION}, got {attrs.format_version}")
    if mode not in ("w-", "a"):
        raise ValueError(f"mode must be 'w-' or 'a', got {mode!r}")
    if store_exists(path):
        try:
            root = open_root(path, mode="r+")
            raw = root.attrs.get("srcaco2")
        except Exception as exc:  # noqa: BLE001 - not a zarr group at all
            raise StoreFormatError(
                f"{path}: exists and is not a srcaco2 store ({type(exc).__name__}); "
                "choose a new STORE path or remove this one"
            ) from None
        if not isinstance(raw, dict):
            raise StoreFormatError(
                f"{path}: exists and is not a srcaco2 store (no attrs['srcaco2']); "
                "choose a new STORE path or remove this one"
            )
        if raw.get("format_version") != FORMAT_VERSION:
            raise StoreFormatError(
                f"{path}: store format_version {raw.get('format_version')!r}, this toolkit writes version "
                f"{FORMAT_VERSION}; build into a new path or rerun with --overwrite to replace it"
            )
        if mode == "w-":
            raise StoreFormatError(
                f"{path}: a srcaco2 store already exists; resume its build by rerunning the same "
                "`srdata build` command, write to another STORE path, or pass --overwrite to replace it"
            )
        store = Store.of_root(root, where=str(path))
        old = store.attrs
        for name in _RESUME_FIELDS:
            if _norm(getattr(old, name)) != _norm(getattr(attrs, name)):
                raise StoreFormatError(
                    f"{path}: existing store has {name}={getattr(old, name)!r} but this build asks for "
                    f"{getattr(attrs, name)!r}; rerun with the same options or with --overwrite"
                )
        return store
    root = open_root(path, mode="a")
    root.attrs["srcaco2"] = attrs.to_json()
    log.info("created store %s", path)
    return Store(root, str(path), attrs)


def _norm(value: Any) -> Any:
    import json

    return json.loads(json.dumps(value, sort_keys=True))
