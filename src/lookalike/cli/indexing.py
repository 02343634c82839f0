"""`lookalike index` and `lookalike train`: parse, call the library, print."""

from __future__ import annotations

import json
from dataclasses import replace
from pathlib import Path
from typing import TYPE_CHECKING, Annotated

import typer
from rich.markup import escape
from rich.table import Table

from lookalike.catalog import CatalogError
from lookalike.cli.common import JsonOpt, QuietOpt, WorkersOpt, fail, out, print_json, progress_bar
from lookalike.settings import PRESETS, Settings

if TYPE_CHECKING:
    from lookalike.collection import IndexReport
    from lookalike.learn.train import StepLosses


BackboneOpt = Annotated[
    str | None,
    typer.Option(
        help="The network: efficientnet_lite0 (the default), efficientnet_lite1 or "
        "efficientnet_lite2 (larger, slower). Changing it describes every image again.",
    ),
]


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
        str | None,
        typer.Option(
            help="Settings preset for a new index: default; fast (quicker indexing); "
            "fingerprints (two minutiae matchers verify the CNN's short list); "
            "fingerprints-fast (NIST Bozorth3 alone)."
        ),
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
    compact: Annotated[
        bool | None,
        typer.Option(
            "--compact/--keep-features",
            help="Keep each image's 500 strongest local features in 24 bytes each once its "
            "codes are made (a fraction of the disk; verification then reads approximations), "
            "or every feature as extracted (features already compacted stay so). Default: as "
            "the index was made (every feature).",
        ),
    ] = None,
    backbone: BackboneOpt = None,
    workers: WorkersOpt = 0,
    as_json: JsonOpt = False,
    quiet: QuietOpt = False,
    ray: Annotated[
        str | None,
        typer.Option(
            "--ray",
            help="Describe the images on the Ray cluster at this address (HOST:PORT, or auto "
            "on a node of it), --workers actors (0: one per CPU there); FOLDER must be at the "
            "same path on every node. Needs the ray extra:\n\n`pip install 'lookalike\\[ray]'`",
        ),
    ] = None,
) -> None:
    """Index FOLDER, or bring its index up to date (only new, changed and deleted files)."""
    # lazy: importing collection loads torch and FAISS (2 s), too slow for `--help`
    from lookalike.collection import Collection

    settings = None
    if preset is not None:
        if preset not in PRESETS:
            raise fail(f"unknown preset {preset!r}; allowed: {', '.join(PRESETS)}")
        settings = PRESETS[preset]
    _refuse_a_new_index_without_images(folder, index)
    try:
        collection = Collection.create(folder, index=index, settings=settings, model=model)
        if sift is not None and sift != collection.settings.sift.enabled:
            current = collection.settings
            collection.configure(replace(current, sift=replace(current.sift, enabled=sift)))
        if compact is not None and compact != collection.settings.store.compact:
            current = collection.settings
            collection.configure(replace(current, store=replace(current.store, compact=compact)))
        if backbone is not None and backbone != collection.settings.features.backbone:
            current = collection.settings
            features = replace(current.features, backbone=backbone)
            collection.configure(replace(current, features=features))
        with progress_bar(not quiet and not as_json) as bar:
            report = collection.index(workers=workers, refit=refit, progress=bar, ray=ray)
    except (FileNotFoundError, CatalogError, ValueError) as exc:
        raise fail(str(exc)) from exc
    except RuntimeError as exc:  # Ray missing or its cluster unreachable
        if ray is None:
            raise
        raise fail(escape(str(exc))) from exc
    if as_json:
        print_json({"index": str(collection.index_dir), **report.as_dict()})
        return
    _print_report(collection.root, report)


def _refuse_a_new_index_without_images(folder: Path, index: Path | None) -> None:
    """Exit with a message when FOLDER holds no image file and has no index yet: before any
    index folder is made for it. (A folder whose images were all deleted is indexed: its
    index is emptied.)"""
    # lazy: images imports numpy and PIL, too slow for `--help`
    from lookalike.images import IMAGE_EXTENSIONS, find_images
    from lookalike.index.layout import INDEX_DIR_NAME, IndexLayout

    root = folder.expanduser()
    if not root.is_dir():
        return  # Collection.create says it is not a folder
    index_dir = index.expanduser() if index is not None else root / INDEX_DIR_NAME
    if IndexLayout(index_dir).catalog.is_file() or find_images(root):
        return
    endings = ", ".join(sorted(IMAGE_EXTENSIONS))
    raise fail(
        f"no images found in {escape(str(folder))} (files ending {endings}, in any case, in it "
        "or its subfolders): nothing to index"
    )


def _print_report(root: Path, report: IndexReport) -> None:
    table = Table(title=escape(str(root)), show_header=True)
    for name in ("added", "updated", "removed", "unchanged", "failed", "indexed"):
        table.add_column(name, justify="right")
    table.add_row(
        str(len(report.added)),
        str(len(report.updated)),
        str(len(report.removed)),
        str(report.unchanged),
        str(len(report.failed)),
        str(report.images),
    )
    out.print(table)
    for path, reason in report.failed:
        out.print(f"[yellow]failed[/yellow] {escape(path)}: {escape(reason)}")
    rate = (
        f", {len(report.added) + len(report.updated)} images in {report.seconds:.1f} s"
        if report.added or report.updated
        else ""
    )
    learned = " (learned from the collection in this run)" if report.learned_now else ""
    out.print(
        f"model: {escape(report.model)}{learned}; generation {report.generation}{rate}",
        highlight=False,
    )


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
    backbone: BackboneOpt = None,
    preset: Annotated[
        str | None,
        typer.Option(
            help="Train the network of this settings preset (default: the collection's, when "
            "it has an index; else the default)."
        ),
    ] = None,
    as_json: JsonOpt = False,
) -> None:
    """Train the network on FOLDER's own images without labels, then write a model bundle
    (weights, whitening, codebook). Interrupted runs resume where they stopped."""
    # lazy: training imports torch and the collection (2 s), too slow for `--help`
    from lookalike.learn.train import TrainSettings
    from lookalike.training import plan_training, train_collection

    if preset is not None and preset not in PRESETS:
        raise fail(f"unknown preset {preset!r}; allowed: {', '.join(PRESETS)}")
    try:
        plan = plan_training(folder, out_path)
        settings = TrainSettings(start=start, minutes=minutes)
        features = plan.features if preset is None else PRESETS[preset].features
        if backbone is not None:
            features = replace(features, backbone=backbone)
    except (FileNotFoundError, CatalogError, ValueError) as exc:
        raise fail(str(exc)) from exc
    with progress_bar(not as_json) as bar:

        def on_step(elapsed: float, budget: float, parts: StepLosses) -> None:
            if bar is not None:
                info = f"loss {parts.total:.3f} · matched {parts.matched:.0%}"
                bar("train", int(elapsed), int(budget), info)

        try:
            result = train_collection(plan, settings, features, on_step=on_step, progress=bar)
        except ValueError as exc:  # too few images to train on, or to describe for the bundle
            raise fail(str(exc)) from exc
    if as_json:
        print_json(result.as_dict())
        return
    out.print(f"model bundle: {result.bundle} ({result.model_id})")
    if result.in_place:
        out.print(f"the collection now uses it: run `lookalike index {folder}`")
    else:
        out.print(f"use it with: lookalike index FOLDER --model {result.bundle}")


def check(
    folder: Annotated[
        Path, typer.Argument(help="Collection folder (the one `lookalike index` was given).")
    ] = Path("."),
    index: Annotated[
        Path | None,
        typer.Option("--index", help="Where the index is (default: FOLDER/.lookalike)."),
    ] = None,
    repair: Annotated[
        bool,
        typer.Option(
            "--repair",
            help="Undo the damage found, then bring the index up to date (describes again "
            "only the images whose stored features were damaged).",
        ),
    ] = False,
    full: Annotated[
        bool,
        typer.Option(
            "--full/--quick",
            help="Read every byte against the checksum recorded when it was written (the "
            "default), or only sizes and headers (what `index` checks at every start).",
        ),
    ] = True,
    workers: WorkersOpt = 0,
    as_json: JsonOpt = False,
    quiet: QuietOpt = False,
) -> None:
    """Check an index for damaged files (catalog, feature shards, codes, model, the generation
    searches read): one line each, with what repairs it. Exits with 1 when damage is found and
    left; `--repair` repairs it."""
    # lazy: importing collection loads torch and FAISS (2 s), too slow for `--help`
    from lookalike.collection import Collection
    from lookalike.index.check import check_index
    from lookalike.index.check import repair as undo
    from lookalike.index.layout import INDEX_DIR_NAME, IndexLayout

    root = folder.expanduser().resolve()
    index_dir = index.expanduser().resolve() if index else root / INDEX_DIR_NAME
    if not IndexLayout(index_dir).catalog.exists() and not any(index_dir.glob("gen-*")):
        raise fail(f"no lookalike index at {index_dir}: run `lookalike index {folder}` first")
    damages = check_index(index_dir, full=full)
    done: list[str] = []
    report = None
    if repair and damages:
        from lookalike.catalog import writer_lock

        try:
            with writer_lock(index_dir):
                settings = _stored_settings(index_dir)
                done = undo(index_dir, damages)
            collection = Collection.create(root, index=index, settings=settings)
            with progress_bar(not quiet and not as_json) as bar:
                report = collection.index(workers=workers, progress=bar)
        except (FileNotFoundError, CatalogError, ValueError) as exc:
            raise fail(str(exc)) from exc
    left = [] if report is not None else damages
    if as_json:
        print_json(
            {
                "index": str(index_dir),
                "damaged": [d.as_dict() for d in damages],
                "repaired": done,
                "generation": None if report is None else report.generation,
            }
        )
    else:
        for d in damages:
            out.print(
                f"[red]damaged[/red] {d.part} {escape(str(d.path))}: {escape(d.reason)} "
                f"[dim](repair: {d.repair})[/dim]"
            )
        for line in done:
            out.print(f"[green]repaired[/green] {escape(line)}")
        if report is not None:
            out.print(f"the index is whole again: generation {report.generation}")
        elif not damages:
            out.print(f"{index_dir}: no damage found ({'full' if full else 'quick'} check)")
        else:
            out.print(f"run `lookalike check --repair {folder}` to repair it")
    if left:
        raise typer.Exit(1)


def _stored_settings(index_dir: Path) -> Settings | None:
    """The settings a (possibly damaged) catalog stores, when they can still be read."""
    from lookalike.catalog import Catalog
    from lookalike.collection import SETTINGS_KEY

    try:
        with Catalog.open(index_dir, readonly=True) as catalog:
            stored = catalog.get_meta(SETTINGS_KEY)
        return None if stored is None else Settings.from_dict(json.loads(stored))
    except (CatalogError, ValueError, TypeError):
        return None
