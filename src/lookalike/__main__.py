"""`python -m lookalike`: the `lookalike` command."""

from lookalike.cli import app

app(prog_name="lookalike")
