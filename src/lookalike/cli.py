"""`lookalike`: index a folder of images, search it by image, evaluate, inspect.

A thin layer over `Collection` and the stage functions: parse, call, print (tables or --json).
"""

from __future__ import annotations

import json
import logging
import os
import sys
import time
from collections.abc import Iterator, Sequence
from contextlib import contextmanager
from dataclasses import replace
from pathlib import Path
from typing import Annotated, Any

import typer
from rich.console import Console
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

from lookalike.settings import DEDUP_THRESHOLD

app = typer.Typer(
    help="lookalike: find the images in a collection that show the same thing as a query image.",
    no_args_is_help=True,
    add_completion=False,
    pretty_exceptions_enable=False,
)
eval_app = typer.Typer(help="Measure retrieval accuracy on benchmark sets.", no_args_is_help=True)
app.add_typer(eval_app, name="eval")

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


def _setup_logging(verbose: bool) -> None:
    from rich.logging import RichHandler

    logging.basicConfig(
        level=logging.DEBUG if verbose else logging.INFO,
        format="%(message)s",
        handlers=[RichHandler(console=err, show_time=False, show_path=False)],
    )
    logging.getLogger("faiss").setLevel(logging.WARNING)


@app.callback()
def main(
    verbose: Annotated[bool, typer.Option("--verbose", "-v", help="Log more.")] = False,
) -> None:
    _setup_logging(verbose)


class _Bar:
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
def _progress(enabled: bool) -> Iterator[_Bar | None]:
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
        yield _Bar(progress)


def _fail(message: str, code: int = 1) -> typer.Exit:
    err.print(f"[red]error:[/red] {message}")
    return typer.Exit(code)


def _hits_table(title: str, hits: Sequence[Any]) -> Table:
    table = Table(title=title)
    table.add_column("rank", justify="right")
    table.add_column("score", justify="right")
    verified = any(h.inliers is not None for h in hits)
    if verified:
        table.add_column("inliers", justify="right")
    table.add_column("path")
    for h in hits:
        middle = [] if not verified else ["" if h.inliers is None else str(h.inliers)]
        table.add_row(str(h.rank), f"{h.score:.4f}", *middle, h.path)
    return table


def _open(index: Path | None) -> Any:
    from lookalike.catalog import CatalogError
    from lookalike.collection import Collection, find_index_upwards

    try:
        if index is not None:
            return Collection.open(index)
        found = find_index_upwards(Path.cwd())
        if found is None:
            raise _fail(
                "no index here: pass --index FOLDER, or run inside an indexed collection "
                "(`lookalike index FOLDER` makes one)"
            )
        return Collection.open(found)
    except CatalogError as exc:
        raise _fail(str(exc)) from exc


@app.command()
def index(
    folder: Annotated[Path, typer.Argument(help="Folder of images (searched recursively).")],
    index: Annotated[
        Path | None,
        typer.Option("--index", help="Where to keep the index (default: FOLDER/.lookalike)."),
    ] = None,
    model: Annotated[
        Path | None,
        typer.Option("--model", help="Model bundle from `lookalike train` to index with."),
    ] = None,
    preset: Annotated[
        str | None, typer.Option(help="Feature preset for a new index: default or fast.")
    ] = None,
    refit: Annotated[
        bool, typer.Option("--refit", help="Learn whitening and codebook again.")
    ] = False,
    sift: Annotated[
        bool | None,
        typer.Option(
            "--sift/--no-sift",
            help="Store RootSIFT features too, for `search --mode rootsift` (slower indexing, "
            "about twice the disk); kept for later runs. Default: as the index was made (off).",
        ),
    ] = None,
    workers: WorkersOpt = 0,
    as_json: JsonOpt = False,
    quiet: Annotated[bool, typer.Option("--quiet", "-q", help="No progress bar.")] = False,
    ray: Annotated[
        str | None,
        typer.Option(
            "--ray",
            help="Describe the images on the Ray cluster at this address (HOST:PORT, or auto "
            "on a node of it), --workers actors (0: one per CPU there); FOLDER must be at the "
            "same path on every node. Needs `pip install 'lookalike[ray]'`.",
        ),
    ] = None,
) -> None:
    """Index FOLDER, or bring its index up to date (only new, changed and deleted files)."""
    from lookalike.catalog import CatalogError
    from lookalike.collection import Collection
    from lookalike.settings import PRESETS

    settings = None
    if preset is not None:
        if preset not in PRESETS:
            raise _fail(f"unknown preset {preset!r}; allowed: {', '.join(PRESETS)}")
        settings = PRESETS[preset]
    try:
        collection = Collection.create(folder, index=index, settings=settings, model=model)
        if sift is not None and sift != collection.settings.sift.enabled:
            current = collection.settings
            collection.configure(replace(current, sift=replace(current.sift, enabled=sift)))
        with _progress(not quiet and not as_json) as bar:
            report = collection.index(workers=workers, refit=refit, progress=bar, ray=ray)
    except (FileNotFoundError, CatalogError, ValueError) as exc:
        raise _fail(str(exc)) from exc
    except RuntimeError as exc:  # Ray missing or its cluster unreachable
        if ray is None:
            raise
        raise _fail(escape(str(exc))) from exc
    if as_json:
        out.print_json(json.dumps({"index": str(collection.index_dir), **report.as_dict()}))
        return
    table = Table(title=f"{collection.root}", show_header=True)
    for name in ("added", "updated", "removed", "skipped", "failed", "indexed"):
        table.add_column(name, justify="right")
    table.add_row(
        str(len(report.added)),
        str(len(report.updated)),
        str(len(report.removed)),
        str(report.skipped),
        str(len(report.failed)),
        str(report.images),
    )
    out.print(table)
    for path, reason in report.failed:
        out.print(f"[yellow]failed[/yellow] {path}: {reason}")
    rate = (
        f", {len(report.added) + len(report.updated)} images in {report.seconds:.1f} s"
        if report.added or report.updated
        else ""
    )
    fitted = " (fitted now)" if report.model_fitted else ""
    out.print(f"model: {report.model}{fitted}; generation {report.generation}{rate}")


@app.command()
def train(
    folder: Annotated[
        Path,
        typer.Argument(help="Folder of images to learn from (no labels), or its index folder."),
    ],
    start: Annotated[
        str, typer.Option("--from", help="imagenet (fine-tune) or scratch (random weights).")
    ] = "imagenet",
    minutes: Annotated[float, typer.Option(help="Training time budget.", min=0.01)] = 30.0,
    out_path: Annotated[
        Path | None,
        typer.Option(
            "--out",
            help="Where to write the model bundle (default: inside the collection's index, "
            "FOLDER/.lookalike/trained, and the collection then indexes with it).",
        ),
    ] = None,
    as_json: JsonOpt = False,
) -> None:
    """Train the network on FOLDER's own images without labels, then write a model bundle
    (weights, whitening, codebook). Interrupted runs resume where they stopped."""
    from lookalike.catalog import CATALOG_FILE
    from lookalike.collection import INDEX_DIR_NAME, Collection
    from lookalike.images import find_images
    from lookalike.learn.bundle import make_bundle
    from lookalike.learn.train import TrainSettings
    from lookalike.learn.train import train as run_training
    from lookalike.settings import FeatureSettings, LearnSettings

    if not folder.is_dir():
        raise _fail(f"{folder}: not a folder of images")
    try:
        settings = TrainSettings(start=start, minutes=minutes)
    except ValueError as exc:
        raise _fail(str(exc)) from exc
    if (folder / CATALOG_FILE).is_file():  # an index folder: learn from its collection
        index_dir = folder.resolve()
        root = Collection.open(index_dir).root
    else:
        root = folder.resolve()
        index_dir = root / INDEX_DIR_NAME
    in_place = out_path is None
    bundle = (index_dir / "trained") if out_path is None else out_path.resolve()
    run_dir = bundle.with_name(bundle.name + ".training")
    paths = [p for p in find_images(root) if index_dir not in p.parents]
    rel = [p.relative_to(root).as_posix() for p in paths]
    features = FeatureSettings()
    with _progress(not as_json) as bar:

        def on_step(elapsed: float, budget: float, parts: Any) -> None:
            if bar is not None:
                info = f"loss {parts.total:.3f} · matched {parts.matched:.0%}"
                bar("train", int(elapsed), int(budget), info)

        try:
            weights = run_training(paths, run_dir, features, settings, progress=on_step)
        except ValueError as exc:
            raise _fail(str(exc)) from exc

        def on_extract(done: int, total: int) -> None:
            if bar is not None:
                bar("bundle", done, total)

        model = make_bundle(
            root,
            rel,
            weights,
            features,
            LearnSettings(),
            bundle,
            meta={"trained_on": str(root), "train": settings.__dict__},
            progress=on_extract,
        )
    if in_place:
        Collection.create(root, index=index_dir).use_model(bundle)
    summary = {
        "bundle": str(bundle),
        "model_id": model.id,
        "images": len(paths),
        "in_place": in_place,
    }
    if as_json:
        out.print_json(json.dumps(summary))
        return
    out.print(f"model bundle: {bundle} ({model.id})")
    if in_place:
        out.print(f"the collection now uses it: run `lookalike index {folder}`")
    else:
        out.print(f"use it with: lookalike index FOLDER --model {bundle}")


@app.command()
def search(
    query: Annotated[str, typer.Argument(help="Query image file (or an indexed image's id).")],
    k: Annotated[int, typer.Option("-k", "--top", help="How many hits.", min=1)] = 20,
    index: IndexOpt = None,
    mode: Annotated[
        str,
        typer.Option(
            help="fused (default), asmk (local features) or global (kNN); or a classic "
            "descriptor alone: colour (HSV histogram), texture (LBP), shape (HOG), or rootsift "
            "(RootSIFT + ASMK, in an index made with --sift)."
        ),
    ] = "fused",
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
            "or auto): the same hits as unsharded. Needs `pip install 'lookalike[ray]'`.",
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
) -> None:
    """Find the images most like QUERY (or a region of it)."""
    from lookalike.images import ImageError
    from lookalike.search.region import parse_region
    from lookalike.settings import SEARCH_MODES, SearchSettings

    if mode not in SEARCH_MODES:
        raise _fail(f"unknown mode {mode!r}; allowed: {', '.join(SEARCH_MODES)}")
    fused = None if fuse is None else tuple(n.strip() for n in fuse.split(",") if n.strip())
    try:
        box = None if region is None else parse_region(region)
        if fused is not None:
            SearchSettings(mode=mode, fuse=fused)  # check the names before any work
    except ValueError as exc:
        raise _fail(str(exc)) from exc
    if (ray is None) != (shards == 0):
        raise _fail("sharded search needs both --ray ADDRESS and --shards N")
    collection = _open(index)
    if ray is not None:
        collection = _sharded(collection, shards, ray, shards_dir, shard_cpus)
    target: Any = int(query) if query.isdigit() and not Path(query).exists() else Path(query)
    t0 = time.perf_counter()
    try:
        hits = collection.search(
            target,
            k=k,
            mode=mode,
            region=box,
            verify=verify,
            expand=expand,
            fuse=fused,
            retry=retry,
        )
    except ImageError as exc:
        raise _fail(str(exc)) from exc
    except KeyError as exc:
        raise _fail(str(exc.args[0])) from exc
    except ValueError as exc:  # a region outside the image, descriptors the index lacks
        raise _fail(str(exc)) from exc
    finally:
        if ray is not None:
            collection.close()
    seconds = time.perf_counter() - t0
    written = [] if explain is None else collection.explain(target, hits, explain, region=box)
    if as_json:
        out.print_json(
            json.dumps(
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
        )
        return
    out.print(_hits_table(f"{len(hits)} hits for {query} ({mode}, {seconds * 1000:.0f} ms)", hits))
    if written:
        out.print(f"{len(written)} explanations written to {explain}")


@app.command()
def dedup(
    folder: Annotated[
        Path,
        typer.Argument(help="Collection or index folder (a folder without an index is indexed)."),
    ],
    threshold: Annotated[
        int,
        typer.Option(
            help="Inliers (local features that agree geometrically) that make two images near "
            "duplicates; higher is stricter.",
            min=1,
        ),
    ] = DEDUP_THRESHOLD,
    neighbours: Annotated[
        int, typer.Option(help="Candidates verified per image (its best first-stage hits).", min=1)
    ] = 10,
    as_json: JsonOpt = False,
    quiet: Annotated[bool, typer.Option("--quiet", "-q", help="No progress bar.")] = False,
) -> None:
    """List groups of exact copies (same bytes) and near duplicates (resized, recompressed,
    cropped, recoloured copies) in a collection."""
    from lookalike.catalog import CatalogError
    from lookalike.collection import Collection

    try:
        try:
            collection = Collection.open(folder)
        except CatalogError:
            collection = Collection.create(folder)
            with _progress(not quiet and not as_json) as bar:
                collection.index(progress=bar)
        with _progress(not quiet and not as_json) as bar:
            groups = collection.dedup(threshold=threshold, neighbours=neighbours, progress=bar)
    except (FileNotFoundError, CatalogError, ValueError) as exc:
        raise _fail(str(exc)) from exc
    if as_json:
        out.print_json(
            json.dumps(
                {
                    "root": str(collection.root),
                    "threshold": threshold,
                    "groups": [g.as_dict() for g in groups],
                }
            )
        )
        return
    if not groups:
        out.print(f"no duplicates in {collection.root}")
        return
    table = Table(title=f"{len(groups)} groups of duplicates in {collection.root}")
    table.add_column("group", justify="right")
    table.add_column("kind")
    table.add_column("inliers", justify="right")
    table.add_column("images")
    for number, group in enumerate(groups, start=1):
        inliers = "" if group.inliers is None else str(group.inliers)
        table.add_row(str(number), group.kind, inliers, "\n".join(group.paths))
    out.print(table)


def _sharded(collection: Any, shards: int, ray: str, folder: Path | None, cpus: float) -> Any:
    """`collection` searched through `shards` actors on the Ray cluster at `ray`."""
    from lookalike.catalog import CatalogError
    from lookalike.scale.coordinator import ShardedCollection

    try:
        return ShardedCollection.start(
            collection.index_dir, shards=shards, address=ray, out=folder, cpus=cpus
        )
    except (CatalogError, ValueError, RuntimeError) as exc:
        raise _fail(escape(str(exc))) from exc


@app.command()
def shard(
    folder: Annotated[Path | None, typer.Argument(help="Collection or index folder.")] = None,
    shards: Annotated[int, typer.Option(help="How many shards.", min=1)] = 2,
    shards_dir: ShardsDirOpt = None,
    as_json: JsonOpt = False,
) -> None:
    """Split the current index into shards for `search --ray ADDRESS --shards N`: each a
    self-contained folder (its images' ASMK index, global descriptors and local features)."""
    from lookalike.catalog import CatalogError
    from lookalike.scale.split import split_generation

    collection = _open(folder)
    try:
        shard_set = split_generation(collection.index_dir, shards, shards_dir)
    except (CatalogError, ValueError) as exc:
        raise _fail(str(exc)) from exc
    parts = [
        {"shard": str(shard_set.part(i)), "rows": shard_set.bounds[i + 1] - shard_set.bounds[i]}
        for i in range(shard_set.n)
    ]
    if as_json:
        out.print_json(
            json.dumps(
                {
                    "folder": str(shard_set.folder),
                    "generation": shard_set.generation,
                    "asmk_index": shard_set.asmk_kind,
                    "candidates": shard_set.candidates,
                    "shards": parts,
                }
            )
        )
        return
    out.print(
        f"generation {shard_set.generation} in {shard_set.n} shards in {shard_set.folder} "
        f"(ASMK: {shard_set.asmk_kind})"
    )
    for part in parts:
        out.print(f"  {part['shard']}: {part['rows']} images")


@app.command()
def info(
    folder: Annotated[Path | None, typer.Argument(help="Collection or index folder.")] = None,
    as_json: JsonOpt = False,
) -> None:
    """Show what an index holds: images, failures, model, sizes on disk."""
    collection = _open(folder)
    data = collection.info()
    if as_json:
        out.print_json(json.dumps(data))
        return
    table = Table(show_header=False, title=str(collection.root))
    table.add_row("index", data["index"])
    table.add_row("images", str(data["images"]))
    table.add_row("failed", str(data["failed"]))
    table.add_row("generation", str(data["generation"]))
    table.add_row("last run", str(data["last_run"]))
    if data["model"]:
        m = data["model"]
        table.add_row(
            "model",
            f"{m['origin']} · {m['features']} · codebook {m['codebook_size']} · "
            f"local {m['local_dim']}-D · global {m['global_dim']}-D",
        )
    for part, value in data["bytes"].items():
        per = data["bytes_per_image"][part]
        table.add_row(f"bytes: {part}", f"{value / 1e6:.1f} MB ({per / 1e3:.1f} kB/image)")
    out.print(table)
    for failure in data["failures"]:
        out.print(f"[yellow]failed[/yellow] {failure['path']}: {failure['reason']}")


@app.command()
def serve(
    folder: Annotated[
        Path,
        typer.Argument(
            help="Collection folder (indexed in the background first if it has no index yet)."
        ),
    ],
    index: Annotated[
        Path | None,
        typer.Option("--index", help="Where the index is (default: FOLDER/.lookalike)."),
    ] = None,
    host: Annotated[
        str, typer.Option(help="Address to listen on; beyond loopback a token is required.")
    ] = "127.0.0.1",
    port: Annotated[int, typer.Option(help="Port to listen on.")] = 8000,
    token: Annotated[
        str | None,
        typer.Option(
            envvar="LOOKALIKE_TOKEN",
            help="Token the write endpoints (upload, delete) require as 'Authorization: "
            "Bearer TOKEN'. Made up and printed when HOST is not loopback and none is given.",
        ),
    ] = None,
    max_upload_mb: Annotated[float, typer.Option(help="Largest image accepted, in MiB.")] = 20,
    search_threads: Annotated[
        int, typer.Option(help="Searches run at once (others queue); about one per core.")
    ] = 2,
    verify: Annotated[
        int | None,
        typer.Option(
            min=0,
            help="Images each search verifies spatially, unless the request says (default: "
            "the index's setting, 100). Fewer is faster; verified hits carry matched points.",
        ),
    ] = None,
) -> None:
    """Serve FOLDER over HTTP: the web page at /, the API under /api, its docs at /docs."""
    import secrets

    import uvicorn

    from lookalike.catalog import CatalogError
    from lookalike.collection import Collection
    from lookalike.server import ServerSettings, create_app
    from lookalike.server.app import is_loopback

    if token is None and not is_loopback(host):
        token = secrets.token_urlsafe(24)
        err.print(f"write endpoints need this token: [bold]{token}[/bold]")
    try:
        settings = ServerSettings(
            host=host,
            port=port,
            token=token,
            max_upload_bytes=int(max_upload_mb * 2**20),
            search_threads=search_threads,
            verify=verify,
        )
        collection = Collection.create(folder, index=index)
        application = create_app(collection, settings)
    except (FileNotFoundError, CatalogError, ValueError) as exc:
        raise _fail(str(exc)) from exc
    err.print(
        f"lookalike: serving {collection.root} at http://{host}:{port}/ (Ctrl+C stops)",
        soft_wrap=True,
    )
    # one core per search: the application sets the thread pools when it starts (`create_app`)
    uvicorn.run(application, host=host, port=port, log_level="warning")


def _print_eval(result: Any, as_json: bool) -> None:
    if as_json:
        out.print_json(json.dumps(result.as_dict()))
        return
    table = Table(
        title=f"{result.dataset}: {result.images} images, indexed in {result.index_seconds:.0f} s"
    )
    for col in ("mode", "mAP", "P@1", "P@5", "P@10", "N-S (top 4)", "median query"):
        table.add_column(col, justify="right")
    for mode, rep in result.reports.items():
        table.add_row(
            mode,
            f"{rep.map:.4f}",
            f"{rep.p_at_1:.3f}",
            f"{rep.p_at_5:.3f}",
            f"{rep.p_at_10:.3f}",
            f"{rep.ns_score:.2f}",
            f"{result.query_seconds[mode] * 1000:.0f} ms",
        )
    out.print(table)


ModesOpt = Annotated[
    str,
    typer.Option(
        "--modes",
        help="Comma-separated methods to score: search modes (fused, asmk, global, colour, "
        "texture, shape, rootsift), a CNN mode with classic descriptors fused in "
        "(fused+classic, fused+colour+texture, fused+rootsift), or peers (phash, gem).",
    ),
]
EvalVerifyOpt = Annotated[
    int | None,
    typer.Option(
        "--verify",
        help="Images verified spatially per query (0: the first stage alone; default: the "
        "index's setting).",
        min=0,
    ),
]
EvalExpandOpt = Annotated[
    bool | None,
    typer.Option("--expand/--no-expand", help="Query expansion (default: the index's setting)."),
]


def _modes(modes: str) -> list[str]:
    from lookalike.evaluate.methods import methods_help, parse_method

    chosen = [m.strip() for m in modes.split(",") if m.strip()]
    if not chosen:
        raise _fail(f"no method given; {methods_help()}")
    try:
        for name in chosen:
            parse_method(name)
    except ValueError as exc:
        raise _fail(str(exc)) from exc
    return chosen


@eval_app.command("holidays")
def eval_holidays(
    upright: Annotated[
        bool, typer.Option("--upright", help="Turn the 94 sideways images upright first.")
    ] = False,
    modes: ModesOpt = "fused,asmk,global",
    index: Annotated[Path | None, typer.Option(help="Index folder (default: a cache).")] = None,
    model: Annotated[Path | None, typer.Option(help="Model bundle to index with.")] = None,
    workers: WorkersOpt = 0,
    verify: EvalVerifyOpt = None,
    expand: EvalExpandOpt = None,
    as_json: JsonOpt = False,
) -> None:
    """INRIA Holidays with its official protocol (mAP over 300 queries, query removed)."""
    from lookalike.evaluate import DataMissing, holidays
    from lookalike.evaluate.run import cache_root, evaluate, upright_view

    try:
        rset = holidays()
    except DataMissing as exc:
        raise _fail(str(exc)) from exc
    if upright:
        rset = upright_view(rset, cache_root() / "views" / "holidays-upright")
    with _progress(not as_json) as bar:
        result = evaluate(
            rset,
            modes=_modes(modes),
            index_dir=index,
            model=model,
            workers=workers,
            verify=verify,
            expand=expand,
            progress=bar,
        )
    _print_eval(result, as_json)


@eval_app.command("groups")
def eval_groups(
    folder: Annotated[Path, typer.Argument(help="A folder with one subfolder per group.")],
    distractors: Annotated[
        list[Path] | None,
        typer.Option("--distractors", help="Folder of distractor images (repeatable)."),
    ] = None,
    modes: ModesOpt = "fused,asmk,global",
    max_queries: Annotated[
        int | None, typer.Option(help="Score a seeded sample of this many queries.")
    ] = None,
    index: Annotated[Path | None, typer.Option(help="Index folder (default: a cache).")] = None,
    model: Annotated[Path | None, typer.Option(help="Model bundle to index with.")] = None,
    workers: WorkersOpt = 0,
    verify: EvalVerifyOpt = None,
    expand: EvalExpandOpt = None,
    as_json: JsonOpt = False,
) -> None:
    """Any one-subfolder-per-group collection: every image queries its group."""
    import hashlib

    from lookalike.evaluate import groups
    from lookalike.evaluate.run import cache_root, evaluate, merged_view

    if not folder.is_dir():
        raise _fail(f"{folder}: not a folder")
    try:
        rset = groups(folder)
        if distractors:
            key = hashlib.blake2b(
                "|".join(str(p.resolve()) for p in [folder, *distractors]).encode(), digest_size=6
            ).hexdigest()
            rset = merged_view(rset, distractors, cache_root() / "views" / f"{rset.name}-{key}")
    except (ValueError, OSError) as exc:  # no group big enough; a missing distractor folder
        raise _fail(str(exc)) from exc
    with _progress(not as_json) as bar:
        result = evaluate(
            rset,
            modes=_modes(modes),
            index_dir=index,
            model=model,
            workers=workers,
            max_queries=max_queries,
            verify=verify,
            expand=expand,
            progress=bar,
        )
    _print_eval(result, as_json)


@eval_app.command("robustness")
def eval_robustness(
    dataset: Annotated[
        str, typer.Argument(help="A benchmark set with queries (holidays) or a groups folder.")
    ],
    distractors: Annotated[
        list[Path] | None,
        typer.Option(
            "--distractors",
            help="Folder of distractor images (repeatable); default for holidays: the Corel "
            "set, when the benchmark data has it.",
        ),
    ] = None,
    queries: Annotated[
        int, typer.Option(help="A seeded sample of this many query images (0: all).", min=0)
    ] = 100,
    families: Annotated[
        str | None,
        typer.Option(help="Comma-separated transform families (default: all eight)."),
    ] = None,
    methods: Annotated[
        str | None,
        typer.Option(
            help="Comma-separated methods (default: all; rootsift and lookalike+rootsift when "
            "the index has --sift)."
        ),
    ] = None,
    plots: Annotated[
        Path | None, typer.Option(help="Write one PNG per transform family into this folder.")
    ] = None,
    index: Annotated[Path | None, typer.Option(help="Index folder (default: a cache).")] = None,
    workers: WorkersOpt = 0,
    seed: Annotated[int, typer.Option(help="Seed of the query sample and the transforms.")] = 0,
    as_json: JsonOpt = False,
) -> None:
    """Transform query images (noise, light, scale, rotation, perspective, crop, JPEG, blur;
    five strengths each) and measure how often each method finds the untouched original among
    the set and its distractors: recall@1 and recall@10."""
    from lookalike.collection import Collection
    from lookalike.evaluate import DataMissing, data_root, groups, load_dataset
    from lookalike.evaluate.robustness import FAMILIES
    from lookalike.evaluate.robustness_run import METHODS, plot_families, run_robustness
    from lookalike.evaluate.run import cache_root, default_index_dir, merged_view

    chosen_families = _names(families, tuple(FAMILIES), "transform family")
    chosen_methods = None if methods is None else _names(methods, METHODS, "method")
    try:
        folder = Path(dataset)
        rset = groups(folder) if folder.is_dir() else load_dataset(dataset)
        if distractors is None:
            corel = data_root() / "corel"
            distractors = [corel] if corel.is_dir() and rset.name == "holidays" else []
        if distractors:
            names = "+".join([rset.name, *(d.name for d in distractors)])
            rset = merged_view(rset, distractors, cache_root() / "views" / names)
    except (DataMissing, ValueError, OSError) as exc:
        raise _fail(str(exc)) from exc
    collection = Collection.create(rset.root, index=index or default_index_dir(rset))
    with _progress(not as_json) as bar:
        collection.index(workers=workers, progress=bar)
        result = run_robustness(
            rset,
            collection,
            queries=queries or None,
            families=chosen_families,
            methods=chosen_methods,
            seed=seed,
            progress=bar,
        )
    written = [] if plots is None else plot_families(result, plots)
    if as_json:
        out.print_json(json.dumps({**result.as_dict(), "plots": [str(p) for p in written]}))
        return
    table = Table(
        title=f"{result.dataset}: {len(result.queries)} queries x {len(result.transforms)} "
        f"transforms, among {result.images} images (recall@1 / recall@10)"
    )
    shown = sorted({t.family for t in result.transforms}, key=list(FAMILIES).index)
    for col in ("method", *shown, "average"):
        table.add_column(col, justify="right")
    for method in result.methods:
        cells = [
            f"{result.family_recall(method, f, 1):.2f} / {result.family_recall(method, f, 10):.2f}"
            for f in shown
        ]
        average = f"{result.average(method, 1):.2f} / {result.average(method, 10):.2f}"
        table.add_row(method, *cells, average)
    out.print(table)
    for path in written:
        out.print(f"plot: {path}")


def _names(given: str | None, allowed: tuple[str, ...], what: str) -> tuple[str, ...]:
    if given is None:
        return allowed
    chosen = tuple(n.strip() for n in given.split(",") if n.strip())
    bad = [n for n in chosen if n not in allowed]
    if bad or not chosen:
        raise _fail(f"unknown {what}(s) {bad}; allowed: {', '.join(allowed)}")
    return chosen


@app.command()
def demo(
    folder: Annotated[Path, typer.Option("--dir", help="Where to build the demo.")] = Path("demo"),
    k: Annotated[int, typer.Option("-k", help="Hits to show.")] = 8,
) -> None:
    """Build the demo collection (scikit-image photographs and transformed copies), index it,
    search it, and check that every copy finds its original."""
    from lookalike.collection import Collection
    from lookalike.demo import build_demo_collection

    built = build_demo_collection(folder)
    out.print(
        f"demo collection: {len(built.images)} images in {built.root} "
        f"({len(set(built.originals.values()))} photographs and transformed copies)"
    )
    collection = Collection.create(built.root)
    with _progress(True) as bar:
        report = collection.index(progress=bar)
    out.print(f"indexed {report.images} images in {report.seconds:.1f} s; model: {report.model}")
    query = built.root / built.query
    hits = collection.search(query, k=k)
    out.print(_hits_table(f"query: {built.query} (itself a member of the collection)", hits))

    def photo(path: str) -> str:
        return Path(path).stem.split("-")[0]

    found = 0
    for copy, original in sorted(built.originals.items()):
        paths = [h.path for h in collection.search(built.root / copy, k=k) if h.path != copy]
        own = [p for p in paths if photo(p) == photo(copy)]
        first_other = next((i for i, p in enumerate(paths) if photo(p) != photo(copy)), len(paths))
        found += bool(own) and paths[0] in own and original in paths[:first_other]
    out.print(
        f"{found} of {len(built.originals)} transformed copies find their own photograph first "
        "(the original, or another copy of it, before any other photograph)"
    )
    program = Path(sys.argv[0])
    shown = os.path.relpath(program) if program.is_file() else "lookalike"
    out.print(f"try: {shown} search {query} --index {built.root}")
    if found < len(built.originals):
        raise typer.Exit(1)


if __name__ == "__main__":
    app()
