"""`dense-reward-server serve`: every flag is a Settings field (the demo, evaluation, trainer and
benchmarks are the repository's harness: `python -m harness --help`)."""

from __future__ import annotations

import logging
import sys

import typer

from dense_reward_server.config import Settings, settings_error_lines
from dense_reward_server.logs import configure_logging


def load_settings(args: list[str], prog: str) -> Settings:
    """Settings from DRS_* and `args`; a bad one exits 2 with one line per setting, no traceback."""
    try:
        return Settings(
            _cli_parse_args=args,  # type: ignore[call-arg]
            _cli_prog_name=prog,
            _cli_exit_on_error=False,
        )
    except ValueError as error:  # ValidationError, SettingsError (bad JSON, unknown flag), ...
        for line in settings_error_lines(error):
            typer.echo(line, err=True)
        raise typer.Exit(2) from None


cli = typer.Typer(
    name="dense-reward-server",
    help="Dense token-level rewards from an SFT model and its base model.",
    no_args_is_help=True,
    add_completion=False,
)


@cli.callback()
def _commands() -> None:
    """Dense token-level rewards from an SFT model and its base model."""


@cli.command(
    context_settings={"allow_extra_args": True, "ignore_unknown_options": True},
    add_help_option=False,
)
def serve(ctx: typer.Context) -> None:
    """Serve the HTTP API. Flags mirror DRS_* variables: `serve --help` lists them."""
    settings = load_settings(ctx.args, "dense-reward-server serve")
    configure_logging(settings.log_format, settings.log_level)
    from dense_reward_server.api.server import run_server

    run_server(settings)


def main() -> None:
    try:
        cli()
    except KeyboardInterrupt:
        logging.getLogger(__name__).info("interrupted")
        sys.exit(130)


if __name__ == "__main__":
    main()
