"""What every command shares: the consoles, logging, the progress bar, error exits, opening the
index a command names, the options several commands take, and the table of hits."""

from __future__ import annotations

import logging
import time
from collections.abc import Iterator, Sequence
from contextlib import contextmanager
from pathlib import Path
from typing import TYPE_CHECKING, Annotated

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

out = Console()
err = Console(stderr=True)

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
ShardsDirOpt = Annotated[
    Path | None,
    typer.Option(
        "--shards-dir",
        help="Where the shards are written (default: INDEX/shards); on a cluster, a folder "
        "every node sees at the same path.",
    ),
]


def setup_logging(verbose: bool) -> None:
    """Log to stderr through rich: DEBUG with `verbose`, INFO otherwise; FAISS only warns."""
    logging.basicConfig(
        level=logging.DEBUG if verbose else logging.INFO,
        format="%(message)s",
        handlers=[RichHandler(console=err, show_time=False, show_path=False)],
    )
    logging.getLogger("faiss").setLevel(logging.WARNING)


def main(
    verbose: Annotated[bool, typer.Option("--verbose", "-v", help="Log more.")] = False,
) -> None:
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


def fail(message: str, code: int = 1) -> typer.Exit:
    """Print `error: message` on stderr and return the exit to raise."""
    err.print(f"[red]error:[/red] {message}")
    return typer.Exit(code)


def hits_table(title: str, hits: Sequence[Hit]) -> Table:
    """Rank, verdict, similarity, inliers (when any hit was verified) and path of each hit."""
    table = Table(title=title)
    table.add_column("rank", justify="right")
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
        table.add_row(str(h.rank), shown, alike, *middle, escape(h.path))
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
