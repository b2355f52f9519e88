"""`dense-reward-server serve | build-demo`: every serve flag is a Settings field."""

from __future__ import annotations

import logging
import sys
from pathlib import Path

import typer

from service.config import Settings, settings_error_lines
from service.logs import configure_logging


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


@cli.command(
    context_settings={"allow_extra_args": True, "ignore_unknown_options": True},
    add_help_option=False,
)
def serve(ctx: typer.Context) -> None:
    """Serve the HTTP API. Flags mirror DRS_* variables: `serve --help` lists them."""
    settings = load_settings(ctx.args, "dense-reward-server serve")
    configure_logging(settings.log_format, settings.log_level)
    from service.api.server import run_server

    run_server(settings)


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


@cli.command(
    "eval",
    context_settings={"allow_extra_args": True, "ignore_unknown_options": True},
)
def eval_command(
    ctx: typer.Context,
    pairs: Path = typer.Argument(..., help="JSONL: prompt or messages, chosen, rejected, kind."),
    url: str | None = typer.Option(None, help="A running server; default: in-process engines."),
    api_key: str | None = typer.Option(None, envvar="DRS_EVAL_API_KEY", help="Bearer key."),
    out: Path = typer.Option(Path("results/eval.json"), help="Report (JSON)."),
    plot: Path = typer.Option(Path("results/eval.png"), help="Plot (PNG)."),
    batch_size: int = typer.Option(32, help="Pairs per request."),
    append_eos: bool = typer.Option(True, help="Score the EOS that ends each completion."),
) -> None:
    """Pairwise accuracy of the reward on (chosen, rejected) pairs, with a bootstrap 95% CI.

    Extra flags (e.g. --backend transformers --baseline none) configure in-process engines.
    """
    configure_logging("text", "warning")
    from service.evaluation.run import evaluate, in_process_scorer, write_report
    from service.evaluation.scoring import HttpScorer

    if url is not None:
        scorer = HttpScorer(url, api_key)
        report = evaluate(pairs, scorer, batch_size=batch_size, append_eos=append_eos)
    else:
        local = in_process_scorer(load_settings(ctx.args, "dense-reward-server eval"))
        try:
            report = evaluate(pairs, local, batch_size=batch_size, append_eos=append_eos)
        finally:
            local.close()
    write_report(report, out, plot, f"{pairs.name}")
    total = report["total_reward"]
    typer.echo(
        f"pairwise accuracy (total reward): {total['accuracy']:.3f} "
        f"[{total['ci95'][0]:.3f}, {total['ci95'][1]:.3f}] over {report['pairs']} pairs "
        f"-> {out}, {plot}"
    )


@cli.command()
def ablation(
    pairs: Path = typer.Argument(..., help="Held-out pairs (JSONL)."),
    demo: Path = typer.Option(Path(".models/demo"), help="The demo pair folder."),
    out: Path = typer.Option(Path("results"), help="Folder for the reports and the table."),
    backend: str = typer.Option("transformers", help="Engine for the in-process scorers."),
) -> None:
    """The paper's baseline ablation on the demo pair: base, sft-half, and no baseline."""
    configure_logging("text", "warning")
    from service.evaluation.run import ablation as run_ablation

    typer.echo(run_ablation(pairs, demo, out, backend))


def main() -> None:
    try:
        cli()
    except KeyboardInterrupt:
        logging.getLogger(__name__).info("interrupted")
        sys.exit(130)


if __name__ == "__main__":
    main()
