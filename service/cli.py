"""`dense-reward-server serve | build-demo`: every serve flag is a Settings field."""

from __future__ import annotations

import logging
import signal
import sys

import typer
from pydantic import ValidationError

from service.config import Settings
from service.logs import configure_logging

cli = typer.Typer(
    name="dense-reward-server",
    help="Dense token-level rewards from an SFT model and its base model.",
    no_args_is_help=True,
    add_completion=False,
)


@cli.command(
    context_settings={"allow_extra_args": True, "ignore_unknown_options": True},
    add_help_option=False,
)
def serve(ctx: typer.Context) -> None:
    """Serve the HTTP API. Flags mirror DRS_* variables: `serve --help` lists them."""
    try:
        settings = Settings(
            _cli_parse_args=ctx.args,  # type: ignore[call-arg]
            _cli_prog_name="dense-reward-server serve",
        )
    except ValidationError as error:
        typer.echo(f"invalid settings:\n{error}", err=True)
        raise typer.Exit(2) from error
    configure_logging(settings.log_format, settings.log_level)
    run_server(settings)


def run_server(settings: Settings) -> None:
    import uvicorn

    from service.api.app import create_app

    # After a graceful shutdown uvicorn re-raises the signal that stopped it, which would end
    # the process as "killed by SIGTERM". A completed drain is a clean exit: status 0.
    signal.signal(signal.SIGTERM, lambda *_: None)
    uvicorn.run(
        create_app(settings),
        host=settings.host,
        port=settings.port,
        log_config=None,  # ours, configured above, for uvicorn's loggers too
        access_log=False,
    )


@cli.command("build-demo")
def build_demo(
    out: str = typer.Option(".models/demo", help="Folder for tokenizer + base, sft, sft-half."),
    seed: int = typer.Option(0, help="Seed: the same seed gives the same weights."),
    log_format: str = typer.Option("text", help="json or text."),
) -> None:
    """Build the small demo SFT/base pair (a few minutes on 2 CPU cores)."""
    configure_logging(log_format, "info")
    from service.demo.build import main as build_main

    build_main(out, seed)


def main() -> None:
    try:
        cli()
    except KeyboardInterrupt:
        logging.getLogger(__name__).info("interrupted")
        sys.exit(130)


if __name__ == "__main__":
    main()
