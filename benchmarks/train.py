"""Training without labels (`lookalike train`): what it buys, measured.

    .venv/bin/python benchmarks/train.py holidays      # transductive: train on Holidays itself
    .venv/bin/python benchmarks/train.py transfer      # train on Corel, test on Holidays
    .venv/bin/python benchmarks/train.py scratch       # random weights, train on Holidays
    .venv/bin/python benchmarks/train.py fingerprints  # train on FVC2000, test on FVC2002
    .venv/bin/python benchmarks/train.py plot          # mAP against training minutes (PNG)

Each experiment trains with the same code and settings as `lookalike train` (the CPU, a time
budget in minutes), keeps the weights at a few points along the way, and evaluates each with a
model bundle made exactly as `lookalike train` makes it (whitening and codebook fitted on the
training images, described with the trained network). Results go to
`results/train-<experiment>.json`; the training runs, bundles and indexes to the cache folder
(`$LOOKALIKE_CACHE`, default `~/.cache/lookalike`), all removed when other code or another
precision made them. An interrupted experiment resumes: training from its checkpoint, evaluation
from the results already written.
"""

from __future__ import annotations

import argparse
import json
import logging
import sys
import time
from collections.abc import Callable, Sequence
from dataclasses import replace
from functools import partial
from pathlib import Path
from typing import Any

from common import RESULTS, TRAIN_PLOT, load_current, load_result, machine, save_result
from lookalike.evaluate import datasets
from lookalike.evaluate.cache import cache_root, fresh_cache_dir
from lookalike.evaluate.datasets import RetrievalSet
from lookalike.evaluate.run import evaluate, upright_view
from lookalike.images import find_images
from lookalike.learn.bundle import make_bundle
from lookalike.learn.train import TrainSettings, train
from lookalike.settings import PRESETS, FeatureSettings, LearnSettings, MinutiaeSettings, Settings

FEATURES = FeatureSettings()
PRINTS = replace(PRESETS["fingerprints"], minutiae=MinutiaeSettings())
"""What the fingerprints experiment trains and indexes with: the fingerprints preset's features
(prints at 800 px), its minutiae off (the learned features are measured alone, with no
minutiae matcher re-ranking them)."""
FVC2000 = [f"fvc2000_db{i}" for i in range(1, 5)]
FVC2002 = [f"fvc2002_db{i}" for i in range(1, 5)]


def _log(message: str) -> None:
    print(f"[{time.strftime('%H:%M:%S')}] {message}", flush=True)


def _work() -> Path:
    """The cache folder of training runs, bundles and indexes, emptied when other code made it
    (bundles are replaced whole when saved, so the stamp sits above them)."""
    return fresh_cache_dir(cache_root() / "bench-train")


def run_training(
    name: str,
    root: Path,
    start: str,
    minutes: float,
    snapshots: Sequence[float],
    features: FeatureSettings = FEATURES,
) -> tuple[Path, dict[str, Any]]:
    """Train on every image under `root`; returns (run folder, summary of the run)."""
    paths = find_images(root)
    run_dir = _work() / name
    settings = TrainSettings(start=start, minutes=minutes)
    last = [0.0]

    def progress(elapsed: float, budget: float, parts: Any) -> None:
        if elapsed - last[0] >= 60:
            last[0] = elapsed
            _log(f"{name}: {elapsed / 60:.0f}/{budget / 60:.0f} min, loss {parts.total:.3f}")

    _log(f"training {name} on {len(paths)} images of {root} from {start}, {minutes} min")
    train(paths, run_dir, features, settings, progress=progress, snapshots=snapshots)
    history = json.loads((run_dir / "history.json").read_text())

    def mean(rows: list[dict[str, float]], key: str) -> float:
        return sum(r[key] for r in rows) / max(len(rows), 1)

    head, tail = history[:100], history[-100:]
    summary = {
        "images": len(paths),
        "start": start,
        "minutes": minutes,
        "steps": len(history),
        "train_seconds": history[-1]["seconds"] if history else 0.0,
        "settings": settings.__dict__,
        "features": features.key,
        "loss_first_100": {k: mean(head, k) for k in ("total", "local", "global_", "matched")},
        "loss_last_100": {k: mean(tail, k) for k in ("total", "local", "global_", "matched")},
    }
    return run_dir, summary


def snapshot(run_dir: Path, minutes: float) -> Path:
    return run_dir / "snapshots" / f"weights-{minutes:g}min.pt"


def bundle_for(weights: Path, root: Path, tag: str, features: FeatureSettings = FEATURES) -> Path:
    """The model bundle `lookalike train` would write: `weights` plus whitening and codebook
    fitted on (a sample of) the images under `root`."""
    out = _work() / "bundles" / tag
    if not (out / "meta.json").is_file():
        rel = [p.relative_to(root).as_posix() for p in find_images(root)]
        make_bundle(root, rel, weights, features, LearnSettings(), out)
    return out


def score(
    rset: RetrievalSet,
    bundle: Path | None,
    tag: str,
    modes: Sequence[str],
    settings: Settings | None = None,
) -> dict:
    """mAP of each mode, the first stage alone (`{mode: mAP}`); with `settings`, also INRIA's
    AP and P@1 (`{mode: mAP, 'map_inria': {mode: ...}, 'p_at_1': {mode: ...}}`)."""
    result = evaluate(
        rset,
        modes=modes,
        model=bundle,
        index_dir=_work() / "indexes" / tag,
        verify=0,
        settings=settings,
    )
    out: dict[str, Any] = {mode: round(rep.map, 4) for mode, rep in result.reports.items()}
    if settings is not None:
        for name in ("map_inria", "p_at_1"):
            out[name] = {mode: round(getattr(rep, name), 4) for mode, rep in result.reports.items()}
    return out


def command(args: argparse.Namespace) -> str:
    """The command line that runs an experiment as `args` say."""
    snapshots = ",".join(f"{m:g}" for m in args.snapshots)
    return (
        f"python benchmarks/train.py {args.experiment} --minutes {args.minutes:g} "
        f"--snapshots {snapshots}"
    )


class Results:
    """One experiment's results file, saved after every measurement (resumable: a run of the
    same code carries on; what other code measured is dropped, never kept as this code's)."""

    def __init__(self, name: str, command: str) -> None:
        self.name = name
        self.data = load_current(self.name) or {}
        self.data.update(command=command)
        self.data.setdefault("runs", {})
        self.data.setdefault("scores", {})

    def measure(self, key: str, compute: Callable[[], Any]) -> Any:
        if key not in self.data["scores"]:
            t0 = time.perf_counter()
            self.data["scores"][key] = compute()
            seconds = time.perf_counter() - t0
            _log(f"{self.name} {key}: {self.data['scores'][key]} ({seconds:.0f} s)")
            self.save()
        return self.data["scores"][key]

    def save(self, *, partial: bool = True) -> None:
        """Write what is measured so far (`partial`: the experiment is still running)."""
        self.data["machine"] = machine()
        save_result(self.name, self.data, partial=partial)


def train_then_score_holidays(
    res: Results,
    run: str,
    root: Path,
    start: str,
    args: argparse.Namespace,
    points: Sequence[float],
    upright_at: Sequence[float] = (),
) -> None:
    """Train on the images under `root` from `start`, then score Holidays as stored with the
    weights at each of `points` (training minutes), and upright too at `upright_at`."""
    rset = datasets.holidays()
    upright = upright_view(rset, cache_root() / "views" / "holidays-upright")
    run_dir, summary = run_training(run, root, start, args.minutes, points)
    res.data["runs"][run] = summary
    res.save()
    for minutes in points:
        tag = f"{run}-{minutes:g}min"
        bundle = bundle_for(snapshot(run_dir, minutes), root, tag)
        res.measure(f"{minutes:g}/as_stored", partial(score, rset, bundle, tag, args.modes))
        if minutes in upright_at:
            res.measure(
                f"{minutes:g}/upright", partial(score, upright, bundle, tag + "-up", args.modes)
            )


def holidays_experiment(args: argparse.Namespace) -> Results:
    """Transductive: train on the Holidays images (no labels), evaluate on Holidays."""
    res = Results("train-holidays", command(args))
    points = sorted({0.0, *args.snapshots, args.minutes})
    root = datasets.holidays().root
    train_then_score_holidays(
        res, "holidays", root, "imagenet", args, points, upright_at=(0.0, args.minutes)
    )
    return res


def transfer_experiment(args: argparse.Namespace) -> Results:
    """Train on Corel only (network, whitening and codebook); evaluate on Holidays."""
    res = Results("train-transfer", command(args))
    points = [0.0, args.minutes]
    root = datasets.corel().root
    train_then_score_holidays(res, "corel", root, "imagenet", args, points, upright_at=points)
    return res


def scratch_experiment(args: argparse.Namespace) -> Results:
    """`--from scratch`: random weights, trained on Holidays with the same objective."""
    res = Results("train-scratch", command(args))
    points = sorted({*args.snapshots, args.minutes} - {0.0})
    rset = datasets.holidays()
    train_then_score_holidays(res, "holidays-scratch", rset.root, "scratch", args, points)
    res.measure("rootsift/as_stored", lambda: _rootsift(rset))
    return res


def _rootsift(rset: RetrievalSet) -> dict:
    from rootsift import evaluate_rootsift

    return {"asmk": round(evaluate_rootsift(rset, whiten=True)["map"], 4)}


def _linked_tree(source: Path, target: Path) -> None:
    """Mirror `source`'s folders in `target` with a symbolic link per image (a scan follows
    links to files, never links to folders)."""
    if target.is_symlink():
        target.unlink()
    for path in find_images(source):
        link = target / Path(path).resolve().relative_to(source.resolve())
        if not link.is_symlink():
            link.parent.mkdir(parents=True, exist_ok=True)
            link.symlink_to(Path(path).resolve())


def fingerprints_experiment(args: argparse.Namespace) -> Results:
    """Fine-tuned and from-scratch networks trained on the four FVC2000 sets (no labels),
    tested on the four FVC2002 sets; each set searched on its own (80 impressions), by file.
    Trained and indexed with the fingerprints preset's features (prints at 800 px); evaluated
    at each snapshot up to the budget."""
    root = datasets.data_root() / "fingerprints"
    train_root = _work() / "views" / "fvc2000"
    for name in FVC2000:  # one folder holding the four training sets (a link per file)
        _linked_tree(root / name, train_root / name)
    res = Results("train-fingerprints", command(args))
    sets = {name: datasets.fingerprints(name) for name in FVC2000 + FVC2002}
    modes = ("asmk", "global")

    def per_set(bundle: Path | None, tag: str) -> dict:
        return {
            name: score(rset, bundle, f"{tag}-{name}", modes, PRINTS) for name, rset in sets.items()
        }

    res.measure("off-the-shelf", lambda: per_set(None, "fp-default"))
    features = PRINTS.features
    during = sorted({m for m in args.snapshots if 0 < m < args.minutes} | {args.minutes})
    for start in ("imagenet", "scratch"):
        points = during if start == "scratch" else [0.0, *during]
        run_dir, summary = run_training(
            f"fvc2000-{start}", train_root, start, args.minutes, points, features
        )
        res.data["runs"][f"fvc2000-{start}"] = summary
        res.save()
        for minutes in points:
            tag = f"fvc2000-{start}-{minutes:g}min"
            bundle = bundle_for(snapshot(run_dir, minutes), train_root, tag, features)
            res.measure(tag, partial(per_set, bundle, tag))
    res.measure("rootsift", lambda: {name: _rootsift(rset) for name, rset in sets.items()})
    return res


def plot(_: argparse.Namespace) -> None:
    """mAP on Holidays (as stored) against training minutes, one line per search mode."""
    import matplotlib

    matplotlib.use("Agg")
    import matplotlib.pyplot as plt

    data = load_result("train-holidays")
    if not data:
        sys.exit("run `benchmarks/train.py holidays` first")
    rows = sorted(
        (float(key.split("/")[0]), value)
        for key, value in data["scores"].items()
        if key.endswith("/as_stored")
    )
    fig, ax = plt.subplots(figsize=(6, 4), dpi=120)
    for mode in ("asmk", "fused", "global"):
        xs = [m for m, v in rows if mode in v]
        ax.plot(xs, [v[mode] for m, v in rows if mode in v], marker="o", label=mode)
    scratch = load_result("train-scratch") or {}
    srows = sorted(
        (float(k.split("/")[0]), v)
        for k, v in scratch.get("scores", {}).items()
        if k.endswith("/as_stored") and not k.startswith("rootsift")
    )
    if srows:
        ax.plot(
            [m for m, _ in srows],
            [v["asmk"] for _, v in srows],
            marker="s",
            linestyle="--",
            label="asmk, from scratch",
        )
    rootsift = scratch.get("scores", {}).get("rootsift/as_stored")
    if rootsift:
        ax.axhline(rootsift["asmk"], color="grey", linestyle=":", label="RootSIFT + ASMK")
    ax.set_xlabel("training minutes (2 CPU cores)")
    ax.set_ylabel("Holidays mAP (as stored)")
    ax.set_title("lookalike train on Holidays, no labels")
    ax.grid(alpha=0.3)
    ax.legend()
    fig.tight_layout()
    out = RESULTS / TRAIN_PLOT
    fig.savefig(out)
    _log(f"-> {out}")


EXPERIMENTS: dict[str, Callable[[argparse.Namespace], Results | None]] = {
    "holidays": holidays_experiment,
    "transfer": transfer_experiment,
    "scratch": scratch_experiment,
    "fingerprints": fingerprints_experiment,
    "plot": plot,
}


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("experiment", choices=sorted(EXPERIMENTS))
    parser.add_argument("--minutes", type=float, default=30.0, help="training budget")
    parser.add_argument(
        "--snapshots",
        type=lambda s: [float(x) for x in s.split(",") if x],
        default=[5.0, 10.0, 20.0],
        help="training minutes at which to evaluate too (comma-separated)",
    )
    parser.add_argument("--modes", type=lambda s: s.split(","), default=["asmk", "global", "fused"])
    args = parser.parse_args()
    logging.basicConfig(level=logging.WARNING, format="%(levelname)s %(message)s")
    finished = EXPERIMENTS[args.experiment](args)
    if finished is not None:
        finished.save(partial=False)  # every measurement is in: the result is whole


if __name__ == "__main__":
    main()
