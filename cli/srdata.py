"""`srdata`: synthetic tiles, store build/import, info, verify, patch export."""

from __future__ import annotations

import click

from srcaco2.cli._commands import LazyGroup, configure_logging, verbose_option

_COMMANDS = {
    "synth": "srcaco2.cli.srdata_synth:synth",
    "build": "srcaco2.cli.srdata_build:build",
    "import-patches": "srcaco2.cli.srdata_import:import_patches",
    "info": "srcaco2.cli.srdata_inspect:info",
    "verify": "srcaco2.cli.srdata_inspect:verify",
    "export-patches": "srcaco2.cli.srdata_export:export_patches",
    "register-subpixel": "srcaco2.cli.srdata_register:register_subpixel",
}


@click.group(cls=LazyGroup, lazy_commands=_COMMANDS, context_settings={"help_option_names": ["-h", "--help"]})
@verbose_option
def main(verbose: int) -> None:
    """SR-CACO-2 data: raw tiles or released patches -> one Zarr store -> aligned LR/HR crops."""
    configure_logging(verbose)


if __name__ == "__main__":
    main()
