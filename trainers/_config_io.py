"""Typed conversion behind `srcaco2.trainers.config`: YAML / ``--set`` text → dataclass fields, with errors
that name the key, the value, the expected type and the closest known key."""

from __future__ import annotations

import dataclasses
import difflib
import types
import typing
from collections.abc import Iterable, Mapping
from typing import Any, Literal, Union

__all__ = ["ConfigError", "hints", "coerce", "unknown_key", "all_keys", "from_dict"]


class ConfigError(ValueError):
    """A configuration value or key is invalid; the message names the key and how to fix it."""


def hints(cls: type) -> dict[str, Any]:
    return typing.get_type_hints(cls)


def _type_name(tp: Any) -> str:
    origin = typing.get_origin(tp)
    if origin is Literal:
        return "one of " + ", ".join(repr(a) for a in typing.get_args(tp))
    if origin in (Union, types.UnionType):
        return " or ".join(_type_name(a) for a in typing.get_args(tp))
    if tp is type(None):
        return "null"
    return getattr(tp, "__name__", str(tp))


def coerce(value: Any, tp: Any, key: str, *, from_text: bool, root: type | None = None) -> Any:
    """Convert `value` (a YAML value, or text from ``--set`` when `from_text`) to type `tp`."""
    origin = typing.get_origin(tp)
    bad = ConfigError(f"{key}={value!r} has the wrong type: expected {_type_name(tp)}")
    if origin in (Union, types.UnionType):
        args = typing.get_args(tp)
        if type(None) in args and (value is None or (from_text and str(value).lower() in ("none", "null"))):
            return None
        for a in args:
            if a is type(None):
                continue
            try:
                return coerce(value, a, key, from_text=from_text, root=root)
            except ConfigError:
                continue
        raise bad
    if origin is Literal:
        allowed = typing.get_args(tp)
        if value in allowed:
            return value
        raise ConfigError(f"{key}={value!r} is not allowed: expected one of {', '.join(map(repr, allowed))}")
    if tp is bool:
        if isinstance(value, bool):
            return value
        if from_text and str(value).lower() in ("true", "yes", "on", "1", "false", "no", "off", "0"):
            return str(value).lower() in ("true", "yes", "on", "1")
        raise bad
    if tp is int:
        if isinstance(value, int) and not isinstance(value, bool):
            return value
        if from_text:
            try:
                return int(str(value))
            except ValueError:
                raise bad from None
        raise bad
    if tp is float:
        if isinstance(value, (int, float)) and not isinstance(value, bool):
            return float(value)
        if from_text:
            try:
                return float(str(value))
            except ValueError:
                raise bad from None
        raise bad
    if tp is str:
        if isinstance(value, str):
            return value
        raise bad
    if origin is dict or tp is dict:
        if from_text and isinstance(value, str):
            import yaml

            value = yaml.safe_load(value)
        if isinstance(value, Mapping):
            return dict(value)
        raise bad
    if dataclasses.is_dataclass(tp):
        return from_dict(tp, value, key, root)
    raise bad  # pragma: no cover


def unknown_key(key: str, known: Iterable[str]) -> ConfigError:
    known = list(known)
    close = difflib.get_close_matches(key, known, n=1, cutoff=0.5)
    hint = f" Did you mean {close[0]!r}?" if close else ""
    return ConfigError(f"unknown config key {key!r}.{hint} Known keys: {', '.join(known)}")


def all_keys(cls: type, prefix: str = "") -> list[str]:
    keys = []
    for f in dataclasses.fields(cls):
        tp = hints(cls)[f.name]
        name = prefix + f.name
        keys.extend(all_keys(tp, name + ".") if dataclasses.is_dataclass(tp) else [name])
    return keys


def from_dict(cls: type, data: Any, where: str, root: type | None = None) -> Any:
    """Build dataclass `cls` from a mapping (`where`: its dotted key; `root`: the tree's top class)."""
    if not isinstance(data, Mapping):
        raise ConfigError(f"{where or 'config'} must be a mapping, got {type(data).__name__}")
    field_types = hints(cls)
    kwargs = {}
    prefix = f"{where}." if where else ""
    for key, value in data.items():
        if key not in field_types:
            raise unknown_key(prefix + str(key), all_keys(root or cls))
        kwargs[key] = coerce(value, field_types[key], prefix + key, from_text=False, root=root or cls)
    try:
        return cls(**kwargs)
    except ConfigError:
        raise
    except (TypeError, ValueError) as exc:  # pragma: no cover - defensive
        raise ConfigError(f"{where or 'config'}: {exc}") from exc
