"""Typed conversion behind `srcaco2.trainers.config`: YAML / ``--set`` text → dataclass fields, with errors
that name the key, the value, the expected type and the closest known key."""

from __future__ import annotations

import dataclasses
import difflib
import logging
import math
import types
import typing
from collections.abc import Iterable, Mapping
from typing import Any, Literal, Union

__all__ = ["ConfigError", "hints", "coerce", "unknown_key", "all_keys", "from_dict", "load_yaml"]

log = logging.getLogger(__name__)


def load_yaml(text: str, where: str) -> Any:
    """Parse YAML `text` (safe loader) refusing a key given twice in one mapping (PyYAML keeps the last).

    Raises
    ------
    ConfigError
        Not YAML, or a duplicate key (named with its line).
    """
    import yaml

    class _Strict(yaml.SafeLoader):
        pass

    def mapping(loader: yaml.SafeLoader, node: yaml.MappingNode) -> dict[Any, Any]:
        seen: dict[Any, int] = {}
        for key_node, _ in node.value:
            key = loader.construct_object(key_node)
            if key in seen:
                raise ConfigError(
                    f"{where}: key {key!r} is given twice (lines {seen[key] + 1} and "
                    f"{key_node.start_mark.line + 1}); keep one"
                )
            seen[key] = key_node.start_mark.line
        return loader.construct_mapping(node)

    _Strict.add_constructor(yaml.resolver.BaseResolver.DEFAULT_MAPPING_TAG, mapping)
    try:
        return yaml.load(text, Loader=_Strict)  # noqa: S506 - a SafeLoader subclass
    except yaml.YAMLError as exc:
        detail = " ".join(str(exc).split())
        raise ConfigError(f"{where}: not valid YAML ({detail}); fix the file or write a new one") from None


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
            number = float(value)
        elif isinstance(value, str):  # --set text, or YAML 1.1's "1e-3" (PyYAML reads it as a string)
            try:
                number = float(value.strip())
            except ValueError:
                raise bad from None
            if not from_text:
                log.warning("config: %s=%r is a string in YAML (PyYAML reads 1e-3 without a dot as text); "
                            "read as the number %g", key, value, number)  # fmt: skip
        else:
            raise bad
        if not math.isfinite(number):
            raise ConfigError(f"{key}={value!r} must be a finite number")
        return number
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
