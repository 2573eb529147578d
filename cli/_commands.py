"""Lazy sub-command loading for the click groups (heavy imports only when a command runs)."""

from __future__ import annotations

import importlib

import click

__all__ = ["LazyGroup", "TILE_ID", "configure_logging", "verbose_option"]


class _TileId(click.ParamType):
    """A tile id: an integer (SR-CACO-2) or a name (letters, digits, ``-``, ``_``)."""

    name = "tile"

    def convert(self, value: object, param: object, ctx: object) -> int | str:
        text = str(value)
        return int(text) if text.lstrip("-").isdigit() else text


TILE_ID = _TileId()
"""Click type of a ``--tile`` option."""


class LazyGroup(click.Group):
    """A click group whose sub-commands live in other modules, imported on first use.

    ``commands`` maps the command name to ``"module:attribute"``.
    """

    def __init__(self, *args, lazy_commands: dict[str, str] | None = None, **kwargs):
        super().__init__(*args, **kwargs)
        self.lazy_commands = dict(lazy_commands or {})

    def list_commands(self, ctx: click.Context) -> list[str]:
        return sorted(set(super().list_commands(ctx)) | set(self.lazy_commands))

    def get_command(self, ctx: click.Context, cmd_name: str) -> click.Command | None:
        if cmd_name in self.lazy_commands:
            module, attr = self.lazy_commands[cmd_name].split(":")
            return getattr(importlib.import_module(module), attr)
        return super().get_command(ctx, cmd_name)


def configure_logging(verbose: int) -> None:
    """Log to stderr: warnings by default, ``-v`` info, ``-vv`` debug."""
    import logging

    level = logging.WARNING - 10 * min(verbose, 2)
    logging.basicConfig(level=level, format="%(levelname)s %(name)s: %(message)s")


verbose_option = click.option(
    "-v", "--verbose", count=True, help="More log output on stderr (-v info, -vv debug)."
)
"""The ``-v/--verbose`` counter shared by both groups."""
