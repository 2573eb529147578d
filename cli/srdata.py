"""`srdata`: synthetic tiles, store build/import, info, verify, patch export."""

from __future__ import annotations

import logging

import click

from cli._commands import LazyGroup

_COMMANDS = {
    "synth": "cli.srdata_synth:synth",
    "build": "cli.srdata_build:build",
    "import-patches": "cli.srdata_import:import_patches",
    "info": "cli.srdata_inspect:info",
    "verify": "cli.srdata_inspect:verify",
    "export-patches": "cli.srdata_export:export_patches",
}


@click.group(cls=LazyGroup, lazy_commands=_COMMANDS, context_settings={"help_option_names": ["-h", "--help"]})
@click.option("-v", "--verbose", count=True, help="More log output on stderr (-v info, -vv debug).")
def main(verbose: int) -> None:
    """SR-CACO-2 data: raw tiles or released patches -> one Zarr store -> aligned LR/HR crops."""
    level = logging.WARNING - 10 * min(verbose, 2)
    logging.basicConfig(level=level, format="%(levelname)s %(name)s: %(message)s")


if __name__ == "__main__":
    main()
