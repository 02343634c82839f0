"""One part of a shard set opened for searching: what a Ray actor holds (`ShardServer`)."""

from __future__ import annotations

from collections.abc import Sequence
from pathlib import Path

import numpy as np

from lookalike.features import LocalFeatures
from lookalike.index.asmk_index import AsmkIndex, ImageCode, Vocabulary
from lookalike.index.asmk_shortlist import (
    SHORTLIST,
    SHORTLIST_DIR,
    CodeBlock,
    ShortlistAsmk,
    as_shortlist,
)
from lookalike.index.codes import load_codes
from lookalike.index.generation import LoadedGeneration
from lookalike.index.global_index import GlobalIndex
from lookalike.index.store import open_shard
from lookalike.learn.model import Model
from lookalike.scale.split import MODEL_DIR, PART_FEATURES_DIR, PART_FEATURES_SHARD, ShardSet
from lookalike.search.rerank import verify_shortlist
from lookalike.search.verify import Verified
from lookalike.settings import RerankSettings


class _PartImages:
    """The second stage's view of a part's images, by row of the part; `block`: a shortlist
    part's codes (else they are read from `codes/`)."""

    def __init__(self, folder: Path, sides: np.ndarray, block: CodeBlock | None) -> None:
        self.features_dir = folder / PART_FEATURES_DIR
        self.codes_dir = folder / "codes"
        self.sides = sides
        self.block = block

    def local(self, row: int, limit: int) -> LocalFeatures:
        return open_shard(self.features_dir, PART_FEATURES_SHARD).local(row, limit)

    def side(self, row: int) -> float:
        return float(self.sides[row])

    def code(self, row: int) -> ImageCode:
        if self.block is not None:
            return self.block.code(row)
        return load_codes(self.codes_dir, [row])[0][0]


class ShardServer:
    """One part of a shard set opened for searching (what a Ray actor holds). Rows are the
    part's own, 0..m-1; the coordinator maps them to the generation's. Its ASMK index is the
    inverted file of its rows, or for a shortlist generation their codes (memory-mapped), of
    which it scores the candidate rows it is given."""

    def __init__(self, folder: str) -> None:
        part = Path(folder)
        model = Model.load(part.parent / MODEL_DIR)
        shard_set = ShardSet.load(part.parent)
        vocabulary = Vocabulary(model.codebook)
        ids = np.load(part / "ids.npy")
        asmk: AsmkIndex | ShortlistAsmk
        block = None
        if shard_set.asmk_kind == SHORTLIST:
            block = CodeBlock.open(part / SHORTLIST_DIR)
            assert shard_set.candidates is not None  # recorded with the shortlist kind
            asmk = ShortlistAsmk(block, vocabulary, shard_set.candidates)
        else:
            asmk = AsmkIndex.load(part / "asmk", vocabulary)
        self.loaded = LoadedGeneration(
            generation=shard_set.generation,
            ids=ids,
            asmk=asmk,
            # the coordinator scores the global index; this one (exact, of the part's rows)
            # only completes the `LoadedGeneration` that verification is given
            global_=GlobalIndex.build(np.load(part / "codes" / "global.npy")),
            model=model,
        )
        self.images = _PartImages(part, np.load(part / "sides.npy"), block)

    def ids(self) -> np.ndarray:
        """`(m,)` int64 catalog ids of the part's rows."""
        return np.asarray(self.loaded.ids)

    def asmk_scores(
        self, code: ImageCode, alpha: float, threshold: float, rows: np.ndarray | None = None
    ) -> np.ndarray:
        """`(m,)` float32 ASMK similarities of the query `code` to the part's rows; with
        `rows: (k,)` (the part's own, of a shortlist generation) only theirs -> `(k,)`, in
        their order (`ShortlistAsmk.scores`)."""
        # arrays that come through Ray are read-only; asmk's kernel wants writable buffers
        code = ImageCode(np.array(code.words), np.array(code.residuals))
        if rows is None:
            return self.loaded.asmk.scores(code, alpha=alpha, threshold=threshold)
        shortlist = as_shortlist(self.loaded.asmk)
        if shortlist is None:
            raise ValueError("the part holds an inverted file, which scores every row")
        return shortlist.scores(code, alpha=alpha, threshold=threshold, candidates=np.array(rows))

    def codes(self, rows: Sequence[int]) -> list[ImageCode]:
        """The ASMK codes of the part's `rows`."""
        return [self.images.code(int(r)) for r in rows]

    def local(self, rows: Sequence[int], limit: int) -> list[LocalFeatures]:
        """The `limit` strongest local features of each of the part's `rows`, as stored."""
        return [self.images.local(int(r), limit) for r in rows]

    def sides(self) -> np.ndarray:
        """`(m,)` float32 longer sides in pixels of the part's images."""
        return np.asarray(self.images.sides)

    def verify(
        self, query: LocalFeatures, rows: np.ndarray, settings: RerankSettings
    ) -> dict[int, Verified]:
        """Spatial verification of the part's `rows: (k,)` against the query's local features
        (positions in query pixels) -> outcome by part row."""
        query = LocalFeatures(
            xy=np.array(query.xy),
            scale=np.array(query.scale),
            strength=np.array(query.strength),
            desc=np.array(query.desc),
        )
        return verify_shortlist(self.loaded, query, np.array(rows), self.images, settings)
