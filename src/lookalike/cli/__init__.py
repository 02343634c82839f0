"""`lookalike`: index a folder of images, search it by image, evaluate, inspect.

A thin layer over `Collection` and the stage functions: each command parses its options, calls
the library, and prints tables or --json. Every command is registered here, in the order
`--help` lists them; each lives in the module of its group.
"""

from __future__ import annotations

import inspect
from collections.abc import Callable
from typing import Any

import typer

from lookalike.cli import common, demo, evaluating, indexing, searching, serving

__all__ = ["app"]

app = typer.Typer(
    help="lookalike: find the images in a collection that show the same thing as a query image.",
    no_args_is_help=True,
    pretty_exceptions_enable=False,
)


def _help(function: Callable[..., Any]) -> str:
    """`function`'s docstring with each paragraph on one line: typer lists a command's help
    with the docstring's own line breaks, which cut phrases in the middle."""
    paragraphs = inspect.cleandoc(function.__doc__ or "").split("\n\n")
    return "\n\n".join(" ".join(p.split("\n")) for p in paragraphs)


def _command(group: typer.Typer, function: Callable[..., Any], name: str | None = None) -> None:
    group.command(name, help=_help(function))(function)


app.callback()(common.main)
_command(app, indexing.index)
_command(app, indexing.check)
_command(app, indexing.train)
_command(app, searching.search)
_command(app, searching.dedup)
_command(app, searching.shard)
_command(app, serving.info)
_command(app, serving.serve)
_command(app, demo.demo)

eval_app = typer.Typer(help="Measure retrieval accuracy on benchmark sets.", no_args_is_help=True)
_command(eval_app, evaluating.eval_holidays, "holidays")
_command(eval_app, evaluating.eval_groups, "groups")
_command(eval_app, evaluating.eval_robustness, "robustness")
app.add_typer(eval_app, name="eval")
