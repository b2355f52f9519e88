"""`python -m harness COMMAND [flags]` (harness/cli.py lists the commands)."""

from harness.cli import app

app(prog_name="python -m harness")
