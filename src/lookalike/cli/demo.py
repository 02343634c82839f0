"""`lookalike demo`: build the demo collection, index it, search it, print what was found."""

from __future__ import annotations

import os
import sys
from pathlib import Path
from typing import Annotated

import typer

from lookalike.cli.common import hits_table, out, progress_bar


def demo(
    folder: Annotated[Path, typer.Option("--dir", help="Where to build the demo.")] = Path("demo"),
    k: Annotated[int, typer.Option("-k", help="Hits to show.")] = 8,
) -> None:
    """Build the demo collection (scikit-image photographs and transformed copies), index it,
    search it, and check that every copy finds its original."""
    # lazy: the collection (torch, FAISS) and the demo builder (OpenCV) are slow to import
    from lookalike.collection import Collection
    from lookalike.demo import build_demo_collection, score_demo

    built = build_demo_collection(folder)
    out.print(
        f"demo collection: {len(built.images)} images in {built.root} "
        f"({len(set(built.originals.values()))} photographs and transformed copies)"
    )
    collection = Collection.create(built.root)
    with progress_bar(True) as bar:
        report = collection.index(progress=bar)
    out.print(f"indexed {report.images} images in {report.seconds:.1f} s; model: {report.model}")
    query = built.root / built.query
    hits = collection.search(query, k=k)
    out.print(hits_table(f"query: {built.query} (itself a member of the collection)", hits))
    score = score_demo(collection, built, k=k)
    out.print(
        f"{score.found} of {score.copies} transformed copies find their own photograph first "
        "(the original, or another copy of it, before any other photograph)"
    )
    program = Path(sys.argv[0])
    shown = os.path.relpath(program) if program.is_file() else "lookalike"
    out.print(f"try: {shown} search {query} --index {built.root}")
    if not score.passed:
        raise typer.Exit(1)
