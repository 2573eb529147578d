"""`srtrain`: fit, eval, eval-runs, predict, export, table, methods, demo."""

from __future__ import annotations

import click

from srcaco2.cli._commands import LazyGroup, configure_logging, verbose_option

_COMMANDS = {
    "fit": "srcaco2.cli.srtrain_fit:fit",
    "eval": "srcaco2.cli.srtrain_eval:eval_cmd",
    "eval-runs": "srcaco2.cli.srtrain_eval_runs:eval_runs_cmd",
    "table": "srcaco2.cli.srtrain_eval:table",
    "predict": "srcaco2.cli.srtrain_predict:predict",
    "export": "srcaco2.cli.srtrain_export:export_cmd",
    "methods": "srcaco2.cli.srtrain_methods:methods",
    "demo": "srcaco2.cli.srtrain_demo:demo",
}


@click.group(cls=LazyGroup, lazy_commands=_COMMANDS, context_settings={"help_option_names": ["-h", "--help"]})
@verbose_option
def main(verbose: int) -> None:
    """SR-CACO-2 training, evaluation (the paper's protocol), whole-tile prediction and tables."""
    configure_logging(verbose)


if __name__ == "__main__":
    main()
