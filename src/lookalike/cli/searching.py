"""`lookalike search`, `dedup` and `shard`: parse, call the library, print."""

from __future__ import annotations

import time
from pathlib import Path
from typing import TYPE_CHECKING, Annotated, Any

import typer
from rich.markup import escape
from rich.table import Table

from lookalike.catalog import CatalogError
from lookalike.cli.common import (
    AbsoluteOpt,
    IndexOpt,
    JsonOpt,
    QuietOpt,
    ShardsDirOpt,
    fail,
    hits_table,
    open_collection,
    out,
    print_json,
    progress_bar,
    shown_path,
)
from lookalike.settings import DEDUP_GATE, DEDUP_NEIGHBOURS, DEDUP_THRESHOLD, SearchOptions

if TYPE_CHECKING:
    from lookalike.collection import Collection
    from lookalike.scale.coordinator import ShardedCollection


def search(
    query: Annotated[str, typer.Argument(help="Query image file (or an indexed image's id).")],
    k: Annotated[
        int | None,
        typer.Option(
            "-k", "--top", help="How many hits (default: the index's setting, 20).", min=1
        ),
    ] = None,
    index: IndexOpt = None,
    mode: Annotated[
        str | None,
        typer.Option(
            help="fused, asmk (local features) or global (kNN); similar (the same kind of "
            "thing, not the same object: unverified); or a classic descriptor alone: "
            "colour (HSV histogram), texture (LBP), shape (HOG), or rootsift (RootSIFT + ASMK, "
            "in an index made with --sift). Default: the index's setting (fused)."
        ),
    ] = None,
    fuse: Annotated[
        str | None,
        typer.Option(
            help="Add classic descriptors' scores to the CNN ones, e.g. colour or "
            "colour,texture (or rootsift, in an index made with --sift)."
        ),
    ] = None,
    as_json: JsonOpt = False,
    region: Annotated[
        str | None,
        typer.Option(
            help="Search for what lies in this box of the query only: x,y,w,h in pixels of "
            "the query as you see it (full size, upright)."
        ),
    ] = None,
    verify: Annotated[
        int | None,
        typer.Option(
            help="Verify the best R first-stage hits spatially (RANSAC on local matches) and "
            "re-rank them; 0 turns it off. Default: the index's setting (100).",
            min=0,
        ),
    ] = None,
    expand: Annotated[
        bool | None,
        typer.Option(
            "--expand/--no-expand",
            help="Query expansion from the best verified hits (default: the index's setting).",
        ),
    ] = None,
    retry: Annotated[
        bool | None,
        typer.Option(
            "--retry/--no-retry",
            help="When no image verifies for sure, look again at the query coarser and turned a "
            "quarter, three quarters and a half (blurred, sideways or upside-down photographs), "
            "and keep the look that verifies the most. Default: the index's setting (on).",
        ),
    ] = None,
    min_verdict: Annotated[
        str | None,
        typer.Option(
            help="List only hits with this verdict or a stronger one: match (the same object "
            "or scene, verified), similar, or none (every hit, the default)."
        ),
    ] = None,
    matches_only: Annotated[
        bool, typer.Option("--matches-only", help="Same as --min-verdict match.")
    ] = False,
    explain: Annotated[
        Path | None,
        typer.Option(
            help="Write a side-by-side PNG per verified hit into this folder, with the "
            "matched points and region drawn."
        ),
    ] = None,
    ray: Annotated[
        str | None,
        typer.Option(
            "--ray",
            help="Search through --shards actors on the Ray cluster at this address (HOST:PORT "
            "or auto): the same hits as unsharded. Needs the ray extra:\n\n"
            "`pip install 'lookalike\\[ray]'`",
        ),
    ] = None,
    shards: Annotated[
        int,
        typer.Option(
            help="With --ray: split the index into this many shards (written once, see "
            "`lookalike shard`), each held by one actor.",
            min=0,
        ),
    ] = 0,
    shards_dir: ShardsDirOpt = None,
    shard_cpus: Annotated[
        float, typer.Option(help="With --ray: CPUs each shard actor reserves.", min=0.0)
    ] = 1.0,
    absolute: AbsoluteOpt = False,
) -> None:
    """Find the images most like QUERY (or a region of it)."""
    # lazy: images and region import numpy (0.2 s), too slow for `--help`
    from lookalike.images import ImageError
    from lookalike.search.region import parse_region

    fused = None if fuse is None else tuple(n.strip() for n in fuse.split(",") if n.strip())
    try:  # every option checked before any work
        options = SearchOptions(
            k=k,
            mode=mode,
            fuse=fused,
            verify=verify,
            expand=expand,
            retry=retry,
            min_verdict=_weakest_listed(min_verdict, matches_only),
        )
        box = None if region is None else parse_region(region)
    except ValueError as exc:
        raise fail(str(exc)) from exc
    if (ray is None) != (shards == 0):
        raise fail("sharded search needs both --ray ADDRESS and --shards N")
    collection = open_collection(index)
    sharded = None if ray is None else _sharded(collection, shards, ray, shards_dir, shard_cpus)
    searched: Collection | ShardedCollection = collection if sharded is None else sharded
    target: Any = int(query) if query.isdigit() and not Path(query).exists() else Path(query)
    t0 = time.perf_counter()
    try:
        hits = searched.searcher.search(target, options, region=box)
    except ImageError as exc:
        raise fail(str(exc)) from exc
    except KeyError as exc:
        raise fail(str(exc.args[0])) from exc
    except ValueError as exc:  # a bad option, a region outside the image, descriptors missing
        raise fail(str(exc)) from exc
    except (CatalogError, FileNotFoundError) as exc:  # a damaged index: the message says so
        raise fail(str(exc)) from exc
    finally:
        if sharded is not None:
            sharded.close()
    seconds = time.perf_counter() - t0
    try:
        written = [] if explain is None else searched.explain(target, hits, explain, region=box)
    except (CatalogError, FileNotFoundError) as exc:
        raise fail(str(exc)) from exc
    if as_json:
        print_json(
            {
                "query": query,
                "mode": mode,
                "fuse": list(fused or ()),
                "region": None if box is None else list(box),
                "root": str(collection.root),
                "seconds": round(seconds, 4),
                "hits": [h.as_dict() for h in hits],
                "explanations": [str(p) for p in written],
            }
        )
        return
    used = "" if mode is None else f"{mode}, "
    title = f"{len(hits)} hits for {query} ({used}{seconds * 1000:.0f} ms)"
    out.print(hits_table(title, hits, absolute))
    if not any(h.verdict == "match" for h in hits):
        out.print("no match in the collection: nothing shows the same object or scene for sure")
    if written:
        out.print(f"{len(written)} explanations written to {explain}")


def _weakest_listed(min_verdict: str | None, matches_only: bool) -> str | None:
    """The verdict `--min-verdict` and `--matches-only` ask for together."""
    if matches_only and min_verdict not in (None, "match"):
        raise ValueError(f"--matches-only and --min-verdict {min_verdict} disagree: give one")
    return "match" if matches_only else min_verdict


def _sharded(
    collection: Collection, shards: int, ray: str, folder: Path | None, cpus: float
) -> ShardedCollection:
    """`collection` searched through `shards` actors on the Ray cluster at `ray`."""
    # lazy: scale.coordinator imports the collection and, when started, Ray
    from lookalike.scale.coordinator import ShardedCollection

    try:
        return ShardedCollection.start(
            collection.index_dir, shards=shards, address=ray, out=folder, cpus=cpus
        )
    except (CatalogError, ValueError, RuntimeError) as exc:
        raise fail(escape(str(exc))) from exc


def dedup(
    folder: Annotated[
        Path,
        typer.Argument(help="Collection or index folder (a folder without an index is indexed)."),
    ],
    threshold: Annotated[
        int,
        typer.Option(
            help="Inliers (local features that agree geometrically) that make two images near "
            "duplicates; higher is stricter. Below twice this, a pair joins two groups only "
            "when a third image is a copy of both or it is one image's best match.",
            min=1,
        ),
    ] = DEDUP_THRESHOLD,
    neighbours: Annotated[
        int, typer.Option(help="Candidates verified per image (its nearest images).", min=1)
    ] = DEDUP_NEIGHBOURS,
    gate: Annotated[
        float,
        typer.Option(
            help="Global similarity (-1 to 1) a candidate needs to be verified; lower finds "
            "more, slower.",
            min=-1.0,
            max=1.0,
        ),
    ] = DEDUP_GATE,
    looks: Annotated[
        bool,
        typer.Option(
            help="Look again (coarser, turned, mirrored) at images with no sure copy: finds "
            "copies turned or mirrored; --no-looks compares stored features only, faster.",
        ),
    ] = True,
    as_json: JsonOpt = False,
    quiet: QuietOpt = False,
    absolute: AbsoluteOpt = False,
) -> None:
    """List groups of exact copies (same bytes) and near duplicates (resized, recompressed,
    cropped, rotated, mirrored, recoloured copies) in a collection. Compares each image with
    its nearest images only: memory grows with the number of images, not its square."""
    # lazy: importing collection loads torch and FAISS (2 s), too slow for `--help`
    from lookalike.collection import Collection

    try:
        try:
            collection = Collection.open(folder)
        except CatalogError:
            collection = Collection.create(folder)
            with progress_bar(not quiet and not as_json) as bar:
                collection.index(progress=bar)
        with progress_bar(not quiet and not as_json) as bar:
            groups = collection.dedup(
                threshold=threshold, neighbours=neighbours, gate=gate, looks=looks, progress=bar
            )
    except (FileNotFoundError, CatalogError, ValueError) as exc:
        raise fail(str(exc)) from exc
    if as_json:
        print_json(
            {
                "root": str(collection.root),
                "threshold": threshold,
                "groups": [g.as_dict() for g in groups],
            }
        )
        return
    if not groups:
        out.print(f"no duplicates in {collection.root}")
        return
    table = Table(title=escape(f"{len(groups)} groups of duplicates in {collection.root}"))
    table.add_column("group", justify="right")
    table.add_column("kind")
    table.add_column("inliers", justify="right")
    table.add_column("id", justify="right")
    table.add_column("images")
    for number, group in enumerate(groups, start=1):
        inliers = "" if group.inliers is None else str(group.inliers)
        paths = [escape(shown_path(collection.root / p, absolute)) for p in group.paths]
        ids = "\n".join(str(i) for i in group.ids)
        table.add_row(str(number), group.kind, inliers, ids, "\n".join(paths))
    out.print(table)


def shard(
    folder: Annotated[Path | None, typer.Argument(help="Collection or index folder.")] = None,
    shards: Annotated[int, typer.Option(help="How many shards.", min=1)] = 2,
    shards_dir: ShardsDirOpt = None,
    as_json: JsonOpt = False,
) -> None:
    """Split the current index into shards for `search --ray ADDRESS --shards N`: each a
    self-contained folder (its images' ASMK index, global descriptors and local features)."""
    # lazy: scale.coordinator imports the collection (torch and FAISS, 2 s)
    from lookalike.scale.split import split_generation

    collection = open_collection(folder)
    try:
        shard_set = split_generation(collection.index_dir, shards, shards_dir)
    except (CatalogError, ValueError) as exc:
        raise fail(str(exc)) from exc
    parts = [
        {"shard": str(shard_set.part(i)), "rows": shard_set.bounds[i + 1] - shard_set.bounds[i]}
        for i in range(shard_set.n)
    ]
    if as_json:
        print_json(
            {
                "folder": str(shard_set.folder),
                "generation": shard_set.generation,
                "asmk_index": shard_set.asmk_kind,
                "candidates": shard_set.candidates,
                "shards": parts,
            }
        )
        return
    out.print(
        f"generation {shard_set.generation} in {shard_set.n} shards in {shard_set.folder} "
        f"(ASMK: {shard_set.asmk_kind})"
    )
    for part in parts:
        out.print(f"  {part['shard']}: {part['rows']} images")
