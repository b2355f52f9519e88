"""`dense-reward-server serve`: every flag is a Settings field (the demo, evaluation, trainer and
benchmarks are the repository's harness: `python -m harness --help`)."""

from __future__ import annotations

import logging
import sys
from pathlib import Path

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


def reward_fields(text: str, prog: str) -> dict[str, object]:
    """A `--reward` option's JSON object of request fields; anything else exits 2."""
    import json

    try:
        fields = json.loads(text)
        if not isinstance(fields, dict):
            raise ValueError("must be a JSON object")
    except ValueError as error:
        typer.echo(f"{prog}: --reward {text!r}: {error}", err=True)
        raise typer.Exit(2) from None
    return fields


@cli.command()
def audit(
    url: str = typer.Option("http://127.0.0.1:8000", help="The running server to audit."),
    demos: Path = typer.Option(
        ..., help="JSONL of expert demonstrations: prompt or messages, completion or chosen."
    ),
    out: Path | None = typer.Option(None, help="Write the whole report (JSON) here."),
    api_key: str | None = typer.Option(None, envvar="DRS_API_KEY", help="Bearer key."),
    reward: str = typer.Option(
        "{}",
        help='Reward fields sent with every request, as JSON: {"baselines": ["base", '
        '"sft-half"], "ref_logprob_floor": -8, "aggregate": "soft_min", ...}; default: the '
        "server's defaults.",
    ),
    edit_demos: int = typer.Option(200, min=1, help="Demonstrations edited (off-support)."),
    prompts: int = typer.Option(48, min=1, help="Prompts for best-of-N (on-support)."),
    samples: int = typer.Option(64, min=1, help="Policy samples per prompt (the largest N)."),
    max_new_tokens: int = typer.Option(64, min=1, help="Longest sampled answer."),
    policy: str | None = typer.Option(
        None, help="Policy folder to sample from (transformers); default: the server's SFT."
    ),
    samples_file: Path | None = typer.Option(
        None, help="JSONL instead of sampling: prompt or messages, samples (texts), reference."
    ),
    verifier: str | None = typer.Option(
        None,
        help="module:function(prompt, completion) -> bool; default: exact match of the "
        "expert answer (the reference).",
    ),
    max_edit_win_rate: float = typer.Option(
        0.1, min=0, max=1, help="Fail if an edit out-scores the expert in more demos than this."
    ),
    max_best_of_n_drop: float = typer.Option(
        0.02, min=0, max=1, help="Fail if best-of-N accuracy falls more than this below N=1."
    ),
    seed: int = typer.Option(0, help="Seeds the edits, the samples and the intervals."),
) -> None:
    """Is a running server's reward safe to optimize? Exit 1 if it looks gameable."""
    import json

    from dense_reward_server.audit.run import AuditConfig, summary
    from dense_reward_server.audit.run import audit as run_audit

    fields = reward_fields(reward, "dense-reward-server audit")
    if not demos.is_file():
        typer.echo(f"dense-reward-server audit: --demos {str(demos)!r} is not a file", err=True)
        raise typer.Exit(2)
    config = AuditConfig(
        url=url,
        demos=demos,
        api_key=api_key,
        reward=fields,
        edit_demos=edit_demos,
        prompts=prompts,
        samples=samples,
        max_new_tokens=max_new_tokens,
        policy=policy,
        samples_file=samples_file,
        verifier=verifier,
        seed=seed,
        max_edit_win_rate=max_edit_win_rate,
        max_best_of_n_drop=max_best_of_n_drop,
    )
    report = run_audit(config)
    if out is not None:
        out.write_text(json.dumps(report, indent=2) + "\n")
    typer.echo(summary(report))
    raise typer.Exit(1 if report["gameable"] else 0)


def main() -> None:
    try:
        cli()
    except KeyboardInterrupt:
        logging.getLogger(__name__).info("interrupted")
        sys.exit(130)


if __name__ == "__main__":
    main()
