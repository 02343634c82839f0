"""`lookalike`: index a folder of images, search it by image, evaluate, inspect.

A thin layer over `Collection` and the stage functions: each command parses its options, calls
the library, and prints tables or --json. Every command is registered here, in the order
`--help` lists them; each lives in the module of its group.
"""

from __future__ import annotations

import typer

from lookalike.cli import common, demo, evaluating, indexing, searching, serving

__all__ = ["app"]

app = typer.Typer(
    help="lookalike: find the images in a collection that show the same thing as a query image.",
    no_args_is_help=True,
    add_completion=False,
    pretty_exceptions_enable=False,
)
app.callback()(common.main)
app.command()(indexing.index)
app.command()(indexing.check)
app.command()(indexing.train)
app.command()(searching.search)
app.command()(searching.dedup)
app.command()(searching.shard)
app.command()(serving.info)
app.command()(serving.serve)
app.command()(demo.demo)

eval_app = typer.Typer(help="Measure retrieval accuracy on benchmark sets.", no_args_is_help=True)
eval_app.command("holidays")(evaluating.eval_holidays)
eval_app.command("groups")(evaluating.eval_groups)
eval_app.command("robustness")(evaluating.eval_robustness)
app.add_typer(eval_app, name="eval")
