"""`python -m lookalike.cli`: the `lookalike` command."""

from lookalike.cli import app

app(prog_name="lookalike")
