"""Batch extraction: image files -> `Extracted` (features, size, hash, classic descriptors,
RootSIFT, fingerprint minutiae), in local processes (`iter_extract`);
`scale.ray_index.iter_extract_ray` does the same on a Ray cluster. A bad file gives an
`Extracted` with its reason, never an exception.
"""

from __future__ import annotations

import logging
import multiprocessing
import os
import sys
import threading
import time
from collections.abc import Iterator, Sequence
from concurrent.futures import ProcessPoolExecutor
from dataclasses import dataclass
from pathlib import Path
from typing import Protocol

import numpy as np

from lookalike.features.classic import describe, rootsift_file
from lookalike.features.extract import Extractor, ImageFeatures
from lookalike.features.minutiae import Minutiae
from lookalike.features.minutiae import extract_file as minutiae_file
from lookalike.images import ImageError, content_hash, image_size, load_image
from lookalike.settings import ClassicSettings, FeatureSettings, MinutiaeSettings, SiftSettings

logger = logging.getLogger("lookalike")


@dataclass(frozen=True)
class Extracted:
    """The outcome for one file: features, or the reason it failed."""

    path: str
    features: ImageFeatures | None
    width: int
    height: int
    hash: str | None
    error: str | None
    classic: dict[str, np.ndarray] | None = None
    sift: np.ndarray | None = None  # (N, 128) float16 RootSIFT descriptors
    minutiae: Minutiae | None = None


@dataclass(frozen=True)
class Extras:
    """What is stored for each image besides its CNN features: the `classic` descriptors its
    settings name, RootSIFT features when `sift` is given and enabled, and fingerprint
    minutiae when `minutiae` is."""

    classic: ClassicSettings | None = None
    sift: SiftSettings | None = None
    minutiae: MinutiaeSettings | None = None

    @property
    def has_classic(self) -> bool:
        return self.classic is not None and bool(self.classic.descriptors)

    @property
    def has_sift(self) -> bool:
        return self.sift is not None and self.sift.enabled

    @property
    def has_minutiae(self) -> bool:
        return self.minutiae is not None and self.minutiae.enabled


_worker_extractor: Extractor | None = None
_worker_extras = Extras()


def _init_worker(settings: FeatureSettings, weights: str | None, extras: Extras) -> None:
    global _worker_extractor, _worker_extras
    _exit_with(os.getppid())
    _worker_extractor = Extractor(settings, weights=weights, threads=1)
    _worker_extras = extras


def _exit_with(parent: int, every: float = 0.5) -> None:
    """End this worker when `parent`, the index run, ends: a run killed with SIGKILL cannot
    shut its pool down, and its workers would otherwise live on, each holding a network."""

    def watch() -> None:
        while os.getppid() == parent:
            time.sleep(every)
        os._exit(1)

    threading.Thread(target=watch, name="exit-with-parent", daemon=True).start()


def extract_file(
    extractor: Extractor, root: Path, rel: str, extras: Extras = Extras()
) -> Extracted:
    """Decode and describe `root / rel` (with the `extras` too); a bad file gives an `Extracted`
    with its error."""
    path = root / rel
    try:
        width, height = image_size(path)
        image = load_image(path, max_side=extractor.settings.decode_size)
        features = extractor.extract(image)
        described = sift = None
        if extras.has_classic:
            assert extras.classic is not None
            described = describe(image, extras.classic.descriptors, extras.classic)
        if extras.has_sift:
            assert extras.sift is not None
            sift = np.asarray(rootsift_file(path, extras.sift).desc, np.float16)  # own size
        minutiae = None
        if extras.has_minutiae:
            assert extras.minutiae is not None
            minutiae = minutiae_file(path, extras.minutiae)  # the print's own resolution
        factor = max(width, height) / max(image.shape[:2])
        local = features.local
        if factor != 1.0:
            local = type(local)(
                xy=local.xy * np.float32(factor),
                scale=local.scale,
                strength=local.strength,
                desc=local.desc,
            )
        return Extracted(
            rel,
            ImageFeatures(local, features.global_),
            width,
            height,
            content_hash(path),
            None,
            described,
            sift,
            minutiae,
        )
    except ImageError as exc:
        return Extracted(rel, None, 0, 0, None, exc.reason)
    except OSError as exc:
        return Extracted(rel, None, 0, 0, None, exc.strerror or str(exc))
    except Exception as exc:  # a bug must not stop a run over thousands of files
        logger.exception("unexpected failure on %s", path)
        return Extracted(rel, None, 0, 0, None, f"unexpected error: {exc!r}")


def _worker_extract(root: Path, rel: str) -> Extracted:
    assert _worker_extractor is not None
    return extract_file(_worker_extractor, root, rel, _worker_extras)


def iter_extract(
    root: Path,
    paths: Sequence[str],
    settings: FeatureSettings,
    *,
    weights: Path | None = None,
    workers: int = 0,
    extras: Extras = Extras(),
) -> Iterator[Extracted]:
    """Extract `paths` (relative to `root`) in order, in `workers` processes (0: automatic),
    with the `extras`."""
    if workers <= 0:
        workers = min(os.cpu_count() or 1, 4)
    workers = min(workers, max(1, len(paths) // 4))
    main_file = getattr(sys.modules.get("__main__"), "__file__", None)
    if main_file is not None and not os.path.isfile(main_file):
        workers = 1  # e.g. a script read from stdin: spawned workers could not re-import it
    if workers == 1:
        extractor = Extractor(settings, weights=weights)
        for rel in paths:
            yield extract_file(extractor, root, rel, extras)
        return
    ctx = multiprocessing.get_context("spawn")
    with ProcessPoolExecutor(
        workers,
        mp_context=ctx,
        initializer=_init_worker,
        initargs=(settings, str(weights) if weights else None, extras),
    ) as pool:
        # A bounded window keeps memory flat on huge collections.
        window = workers * 4
        pending = [pool.submit(_worker_extract, root, rel) for rel in paths[:window]]
        next_index = len(pending)
        while pending:
            result = pending.pop(0).result()
            if next_index < len(paths):
                pending.append(pool.submit(_worker_extract, root, paths[next_index]))
                next_index += 1
            yield result


class ExtractMany(Protocol):
    """How an index run describes its new files: `iter_extract` (local processes) or
    `scale.ray_index.iter_extract_ray` bound to a cluster, both with these arguments."""

    def __call__(
        self,
        root: Path,
        paths: Sequence[str],
        settings: FeatureSettings,
        *,
        weights: Path | None = None,
        extras: Extras = ...,
    ) -> Iterator[Extracted]: ...
