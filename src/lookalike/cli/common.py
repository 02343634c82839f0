"""What every command shares: the consoles, logging, the progress bar, error exits, opening the
index a command names, the options several commands take, and the table of hits."""

from __future__ import annotations

import json
import logging
import os
import time
from collections.abc import Iterator, Sequence
from contextlib import contextmanager
from pathlib import Path
from typing import TYPE_CHECKING, Annotated, Any

import typer
from rich.console import Console
from rich.logging import RichHandler
from rich.markup import escape
from rich.progress import (
    BarColumn,
    MofNCompleteColumn,
    Progress,
    TaskID,
    TextColumn,
    TimeElapsedColumn,
    TimeRemainingColumn,
)
from rich.table import Table

from lookalike.catalog import CatalogError

if TYPE_CHECKING:
    from lookalike.collection import Collection, Hit

WIDE = 10000
"""Columns of a console that is not a terminal (a pipe, a file, a test): wide enough that no
message or table row wraps mid-phrase. COLUMNS, when set, wins."""

out = Console()
err = Console(stderr=True)


def fit_consoles() -> None:
    """Give `out` and `err` `WIDE` columns when they do not write to a terminal and COLUMNS is
    not set (rich's own width otherwise). Run by every command: what stdout is can change
    between import and run (a test runner captures it)."""
    if os.environ.get("COLUMNS"):
        return
    for console in (out, err):
        if not console.is_terminal:
            console.width = WIDE


fit_consoles()


IndexOpt = Annotated[
    Path | None,
    typer.Option(
        "--index",
        help="Index folder, or the collection folder holding .lookalike/ "
        "(default: the nearest .lookalike/ at or above the current folder).",
    ),
]
JsonOpt = Annotated[bool, typer.Option("--json", help="Print machine-readable JSON.")]
QuietOpt = Annotated[bool, typer.Option("--quiet", "-q", help="No progress bar.")]
WorkersOpt = Annotated[
    int, typer.Option("--workers", "-w", help="Extraction processes (0: one per core, up to 4).")
]
AbsoluteOpt = Annotated[
    bool,
    typer.Option(
        "--absolute",
        help="Show absolute paths (default: relative to the current folder, as you would open "
        "them from here).",
    ),
]
ShardsDirOpt = Annotated[
    Path | None,
    typer.Option(
        "--shards-dir",
        help="Where the shards are written (default: INDEX/shards); on a cluster, a folder "
        "every node sees at the same path.",
    ),
]


def setup_logging(verbose: bool) -> None:
    """Log to stderr through rich: DEBUG with `verbose`, INFO otherwise; FAISS only warns.

    On a terminal through `err`, so that records print above the progress bar; elsewhere
    through a console of rich's default width, since rich pads each record to the width."""
    console = err if err.is_terminal else Console(stderr=True)
    logging.basicConfig(
        level=logging.DEBUG if verbose else logging.INFO,
        format="%(message)s",
        handlers=[RichHandler(console=console, show_time=False, show_path=False)],
    )
    logging.getLogger("faiss").setLevel(logging.WARNING)


def _print_version(value: bool) -> None:
    if value:
        from lookalike import __version__

        out.print(f"lookalike {__version__}", highlight=False)
        raise typer.Exit()


def main(
    verbose: Annotated[bool, typer.Option("--verbose", "-v", help="Log more.")] = False,
    version: Annotated[
        bool,
        typer.Option(
            "--version",
            callback=_print_version,
            is_eager=True,
            help="Print lookalike's version and exit.",
        ),
    ] = False,
) -> None:
    fit_consoles()
    setup_logging(verbose)


class Bar:
    """A rich progress bar with rate and ETA, fed by `(stage, done, total)` callbacks."""

    def __init__(self, progress: Progress) -> None:
        self.progress = progress
        self.tasks: dict[str, TaskID] = {}
        self.started: dict[str, float] = {}

    def __call__(self, stage: str, done: int, total: int, info: str | None = None) -> None:
        if stage not in self.tasks:
            self.tasks[stage] = self.progress.add_task(stage, total=max(total, 1), rate="")
            self.started[stage] = time.perf_counter()
        elapsed = time.perf_counter() - self.started[stage]
        rate = info or (f"{done / elapsed:.1f}/s" if elapsed > 0 and done else "")
        self.progress.update(self.tasks[stage], completed=done, total=max(total, 1), rate=rate)


@contextmanager
def progress_bar(enabled: bool) -> Iterator[Bar | None]:
    """A `Bar` on stderr while the block runs; None when `enabled` is false."""
    if not enabled:
        yield None
        return
    progress = Progress(
        TextColumn("[bold]{task.description:>16}"),
        BarColumn(),
        MofNCompleteColumn(),
        TextColumn("{task.fields[rate]}"),
        TimeElapsedColumn(),
        TextColumn("ETA"),
        TimeRemainingColumn(),
        console=err,
        transient=False,
    )
    with progress:
        yield Bar(progress)


def rounded(data: Any, digits: int = 6) -> Any:
    """`data` with every float rounded to `digits` decimals, at any depth (dicts, lists)."""
    if isinstance(data, float):
        return round(data, digits)
    if isinstance(data, dict):
        return {k: rounded(v, digits) for k, v in data.items()}
    if isinstance(data, list | tuple):
        return [rounded(v, digits) for v in data]
    return data


def print_json(data: dict[str, Any]) -> None:
    """Print a command's --json answer: `"schema"` (`lookalike.JSON_SCHEMA`) first, then
    `data`, floats rounded to 6 decimals."""
    from lookalike import JSON_SCHEMA

    out.print_json(json.dumps({"schema": JSON_SCHEMA, **rounded(data)}))


def fail(message: str, code: int = 1) -> typer.Exit:
    """Print `error: message` on stderr and return the exit to raise."""
    err.print(f"[red]error:[/red] {message}", soft_wrap=True)
    return typer.Exit(code)


def shown_path(path: Path, absolute: bool) -> str:
    """`path` (absolute) as a user opens it from the current folder: relative to it, or
    absolute with `absolute` (or when no relative path leads there, as on another drive)."""
    if absolute:
        return str(path)
    try:
        return os.path.relpath(path, Path.cwd())
    except ValueError:
        return str(path)


def hits_table(title: str, hits: Sequence[Hit], absolute: bool = False) -> Table:
    """Rank, id (to search by), verdict, similarity, inliers (when any hit was verified) and
    path of each hit, relative to the current folder (absolute with `absolute`)."""
    table = Table(title=escape(title))
    table.add_column("rank", justify="right")
    table.add_column("id", justify="right")
    table.add_column("verdict")
    table.add_column("similarity", justify="right")
    verified = any(h.inliers is not None for h in hits)
    if verified:
        table.add_column("inliers", justify="right")
    table.add_column("path")
    for h in hits:
        middle = [] if not verified else ["" if h.inliers is None else str(h.inliers)]
        alike = "" if h.similarity is None else f"{h.similarity:.3f}"
        shown = f"[bold green]{h.verdict}[/]" if h.verdict == "match" else h.verdict
        path = escape(shown_path(h.abspath, absolute))
        table.add_row(str(h.rank), str(h.id), shown, alike, *middle, path)
    return table


def open_collection(index: Path | None) -> Collection:
    """The collection of the index at `index`, or of the nearest one at or above the current
    folder; exits with a message saying how to make one when there is none."""
    # lazy: importing collection loads torch and FAISS (2 s), too slow for `--help`
    from lookalike.collection import Collection, find_index_upwards

    try:
        if index is not None:
            return Collection.open(index)
        found = find_index_upwards(Path.cwd())
        if found is None:
            raise fail(
                "no index here: pass --index FOLDER, or run inside an indexed collection "
                "(`lookalike index FOLDER` makes one)"
            )
        return Collection.open(found)
    except CatalogError as exc:
        raise fail(str(exc)) from exc
