"""`lookalike eval holidays | groups | robustness`: parse, call the library, print."""

from __future__ import annotations

import json
from pathlib import Path
from typing import TYPE_CHECKING, Annotated, Any, TypedDict

import typer
from rich.table import Table

from lookalike.cli.common import JsonOpt, WorkersOpt, fail, out, print_json, progress_bar
from lookalike.settings import PRESETS

if TYPE_CHECKING:
    from lookalike.evaluate.datasets import RetrievalSet
    from lookalike.evaluate.robustness_run import RobustnessResult
    from lookalike.evaluate.run import EvalResult
    from lookalike.settings import Settings

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
EvalIndexOpt = Annotated[
    Path | None,
    typer.Option(help="Index folder (default: a cache, rebuilt when the code changes)."),
]
ModelOpt = Annotated[Path | None, typer.Option(help="Model bundle to index with.")]
PresetOpt = Annotated[
    str | None,
    typer.Option(
        help="Settings preset of the index (default, fast, fingerprints, fingerprints-fast); "
        "the cached index of each preset is its own."
    ),
]


def _modes(modes: str) -> list[str]:
    """The comma-separated method names, each checked; exits naming the allowed ones."""
    # lazy: evaluate.* import numpy (0.2 s), too slow for `--help`
    from lookalike.evaluate.methods import methods_help, parse_method

    chosen = [m.strip() for m in modes.split(",") if m.strip()]
    if not chosen:
        raise fail(f"no method given; {methods_help()}")
    try:
        for name in chosen:
            parse_method(name)
    except ValueError as exc:
        raise fail(str(exc)) from exc
    return chosen


def _names(given: str | None, allowed: tuple[str, ...], what: str) -> tuple[str, ...]:
    """The comma-separated names in `given` (all of `allowed` when None); exits on others."""
    if given is None:
        return allowed
    chosen = tuple(n.strip() for n in given.split(",") if n.strip())
    bad = [n for n in chosen if n not in allowed]
    if bad or not chosen:
        raise fail(f"unknown {what}(s) {bad}; allowed: {', '.join(allowed)}")
    return chosen


ByIdOpt = Annotated[
    bool,
    typer.Option(
        "--by-id",
        help="The fast path: search each indexed query by its stored features (no decoding, "
        "no second looks) instead of from its file as `lookalike search` does.",
    ),
]
OutOpt = Annotated[
    Path | None,
    typer.Option(
        "--out",
        help="Write the full results (per-query APs, times and top-100 rankings) to this JSON "
        "file, again as each method finishes.",
    ),
]


def _print_eval(result: EvalResult, as_json: bool) -> None:
    if as_json:
        print_json(result.as_dict())
        return
    splits = [
        s for s in ("validation", "test") if any(s in m.reports for m in result.modes.values())
    ]
    table = Table(
        title=f"{result.dataset}, {result.protocol} protocol: {result.images} images indexed in "
        f"{result.index_seconds:.0f} s"
    )
    columns = ["method", "mAP", "INRIA mAP", *(f"INRIA {s[:4]}." for s in splits)]
    for col in (*columns, "P@1", "P@10", "median query", "p95 query"):
        table.add_column(col, justify="right")
    for mode, res in result.modes.items():
        every = res.reports["all"]
        table.add_row(
            mode,
            f"{every.map:.4f}",
            f"{every.map_inria:.4f}",
            *(f"{res.reports[s].map_inria:.4f}" if s in res.reports else "" for s in splits),
            f"{every.p_at_1:.3f}",
            f"{every.p_at_10:.3f}",
            f"{res.median_seconds * 1000:.0f} ms",
            f"{res.p95_seconds * 1000:.0f} ms",
        )
    out.print(table)


def _run_eval(rset: RetrievalSet, options: EvalOptions, as_json: bool, write: Path | None) -> None:
    """Evaluate, print the table (or JSON), and write the full results to `write` as each
    method finishes; a failure after some methods still prints (and keeps) theirs."""
    # lazy: evaluate.* import numpy (0.2 s), too slow for `--help`
    from lookalike.evaluate.run import evaluate

    done: list[EvalResult] = []

    def finished(result: EvalResult) -> None:
        done[:] = [result]
        if write is not None:
            _write_json(write, result.as_dict(detail=True))

    with progress_bar(not as_json) as bar:
        try:
            result = evaluate(rset, **options, progress=bar, finished=finished)
        except Exception as exc:
            if done:
                _print_eval(done[0], as_json)
                raise fail(f"stopped after {len(done[0].modes)} method(s): {exc}") from exc
            if isinstance(exc, ValueError):  # e.g. a method the index cannot run
                raise fail(str(exc)) from exc
            raise
    _print_eval(result, as_json)


def _write_json(path: Path, data: dict[str, Any]) -> None:
    """`data` as JSON at `path`, replaced whole (a reader never sees half a file)."""
    path.parent.mkdir(parents=True, exist_ok=True)
    tmp = path.with_name(f".{path.name}.tmp")
    tmp.write_text(json.dumps(data, indent=1))
    tmp.replace(path)


def eval_holidays(
    upright: Annotated[
        bool, typer.Option("--upright", help="Turn the 94 sideways images upright first.")
    ] = False,
    leave_out: Annotated[
        bool,
        typer.Option(
            "--leave-out",
            help="Index the 511 images that are not queries and search the 300 query files "
            "(queries not in the collection), instead of the official protocol.",
        ),
    ] = False,
    modes: ModesOpt = "fused,asmk,global",
    index: EvalIndexOpt = None,
    model: ModelOpt = None,
    preset: PresetOpt = None,
    workers: WorkersOpt = 0,
    verify: EvalVerifyOpt = None,
    expand: EvalExpandOpt = None,
    by_id: ByIdOpt = False,
    write: OutOpt = None,
    as_json: JsonOpt = False,
) -> None:
    """INRIA Holidays-300 (the first 300 groups, 811 images, 400 px wide): each query
    searched from its file, by the official protocol (the query is indexed and removed from
    its ranking) or --leave-out. mAP by both rules (ours and INRIA's), on all 300 queries and
    on each half (validation: even groups; test: odd groups)."""
    # lazy: evaluate.* import numpy (0.2 s), too slow for `--help`
    from lookalike.evaluate import DataMissing, holidays
    from lookalike.evaluate.datasets import leave_out as leave_queries_out
    from lookalike.evaluate.run import upright_view

    if by_id and leave_out:
        raise fail("--by-id searches indexed queries: it does not go with --leave-out")
    try:
        rset = holidays()
    except DataMissing as exc:
        raise fail(str(exc)) from exc
    if upright:
        rset = upright_view(rset)
    if leave_out:
        rset = leave_queries_out(rset)
    options = _eval_options(modes, index, model, workers, verify, expand, by_id, preset)
    _run_eval(rset, options, as_json, write)


def eval_groups(
    folder: Annotated[Path, typer.Argument(help="A folder with one subfolder per group.")],
    distractors: Annotated[
        list[Path] | None,
        typer.Option("--distractors", help="Folder of distractor images (repeatable)."),
    ] = None,
    leave_out: Annotated[
        int,
        typer.Option(
            "--leave-out",
            help="Make the first N files of each group (sorted by name) queries that are not "
            "indexed, each searched from its file for the rest of its group (0: every image "
            "is indexed and queries its group).",
            min=0,
        ),
    ] = 0,
    modes: ModesOpt = "fused,asmk,global",
    max_queries: Annotated[
        int | None, typer.Option(help="Score a seeded sample of this many queries.")
    ] = None,
    index: EvalIndexOpt = None,
    model: ModelOpt = None,
    preset: PresetOpt = None,
    workers: WorkersOpt = 0,
    verify: EvalVerifyOpt = None,
    expand: EvalExpandOpt = None,
    by_id: ByIdOpt = False,
    write: OutOpt = None,
    as_json: JsonOpt = False,
) -> None:
    """Any one-subfolder-per-group collection: every image (or, with --leave-out N, the first
    N of each group, not indexed) searched from its file for the rest of its group."""
    # lazy: evaluate.* import numpy (0.2 s), too slow for `--help`
    from lookalike.evaluate import groups
    from lookalike.evaluate.datasets import leave_out as leave_queries_out
    from lookalike.evaluate.run import with_distractors

    if by_id and leave_out:
        raise fail("--by-id searches indexed queries: it does not go with --leave-out")
    if not folder.is_dir():
        raise fail(f"{folder}: not a folder")
    try:
        rset = groups(folder)
        if leave_out:
            rset = leave_queries_out(rset, leave_out)
        rset = with_distractors(rset, distractors or ())
    except (ValueError, OSError) as exc:  # no group big enough; a missing distractor folder
        raise fail(str(exc)) from exc
    options = _eval_options(modes, index, model, workers, verify, expand, by_id, preset)
    _run_eval(rset, {**options, "max_queries": max_queries}, as_json, write)


def _eval_options(
    modes: str,
    index: Path | None,
    model: Path | None,
    workers: int,
    verify: int | None,
    expand: bool | None,
    by_id: bool,
    preset: str | None = None,
) -> EvalOptions:
    """The options `eval holidays` and `eval groups` share, as `evaluate` takes them."""
    if preset is not None and preset not in PRESETS:
        raise fail(f"unknown preset {preset!r}; allowed: {', '.join(PRESETS)}")
    return {
        "settings": None if preset is None else PRESETS[preset],
        "modes": _modes(modes),
        "index_dir": index,
        "model": model,
        "workers": workers,
        "verify": verify,
        "expand": expand,
        "by_id": by_id,
    }


class EvalOptions(TypedDict, total=False):
    modes: list[str]
    index_dir: Path | None
    model: Path | None
    workers: int
    verify: int | None
    expand: bool | None
    by_id: bool
    max_queries: int | None
    settings: Settings | None


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
    index: EvalIndexOpt = None,
    workers: WorkersOpt = 0,
    seed: Annotated[int, typer.Option(help="Seed of the query sample and the transforms.")] = 0,
    split: Annotated[
        str | None,
        typer.Option(
            help="Draw the originals from every image of one half of the set (validation or "
            "test: its queries and their relevant images) instead of from its queries."
        ),
    ] = None,
    as_json: JsonOpt = False,
) -> None:
    """Transform query images (noise, light, scale, rotation, perspective, crop, JPEG, blur;
    five strengths each) and measure how often each method finds the untouched original among
    the set and its distractors: recall@1 and recall@10."""
    # lazy: the collection (torch, FAISS) and the robustness run (OpenCV) are slow to import
    from lookalike.collection import Collection
    from lookalike.evaluate import DataMissing, groups, load_dataset
    from lookalike.evaluate.datasets import SPLITS
    from lookalike.evaluate.robustness import FAMILIES
    from lookalike.evaluate.robustness_run import METHODS, plot_families, run_robustness
    from lookalike.evaluate.run import cached_index_dir, default_distractors, with_distractors

    chosen_families = _names(families, tuple(FAMILIES), "transform family")
    if split is not None:
        _names(split, SPLITS, "split")
    chosen_methods = None if methods is None else _names(methods, METHODS, "method")
    try:
        folder = Path(dataset)
        rset = groups(folder) if folder.is_dir() else load_dataset(dataset)
        extra = default_distractors(rset) if distractors is None else distractors
        rset = with_distractors(rset, extra)
    except (DataMissing, ValueError, OSError) as exc:
        raise fail(str(exc)) from exc
    collection = Collection.create(rset.root, index=index or cached_index_dir(rset))
    with progress_bar(not as_json) as bar:
        collection.index(workers=workers, progress=bar)
        result = run_robustness(
            rset,
            collection,
            queries=queries or None,
            families=chosen_families,
            methods=chosen_methods,
            seed=seed,
            split=split,
            progress=bar,
        )
    written = [] if plots is None else plot_families(result, plots)
    if as_json:
        print_json({**result.as_dict(), "plots": [str(p) for p in written]})
        return
    _print_robustness(result, tuple(FAMILIES))
    for path in written:
        out.print(f"plot: {path}")


def _print_robustness(result: RobustnessResult, families: tuple[str, ...]) -> None:
    table = Table(
        title=f"{result.dataset}: {len(result.queries)} queries x {len(result.transforms)} "
        f"transforms, among {result.images} images (recall@1 / recall@10)"
    )
    shown = sorted({t.family for t in result.transforms}, key=families.index)
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
