"""`srdata`: synthetic tiles, store build/import, info, verify, patch export."""

from __future__ import annotations

import click

from cli._commands import LazyGroup, configure_logging, verbose_option

_COMMANDS = {
    "synth": "cli.srdata_synth:synth",
    "build": "cli.srdata_build:build",
    "import-patches": "cli.srdata_import:import_patches",
    "info": "cli.srdata_inspect:info",
    "verify": "cli.srdata_inspect:verify",
    "export-patches": "cli.srdata_export:export_patches",
}


@click.group(cls=LazyGroup, lazy_commands=_COMMANDS, context_settings={"help_option_names": ["-h", "--help"]})
@verbose_option
def main(verbose: int) -> None:
    """SR-CACO-2 data: raw tiles or released patches -> one Zarr store -> aligned LR/HR crops."""
    configure_logging(verbose)


if __name__ == "__main__":
    main()
