"""ASMK for millions of images: the shortlist kind (every image's code in image order, memory-
mapped, scored on candidate rows only) against the inverted file on a seeded synthetic set, its
files, the choice by size in `IndexSettings`, and a collection forced to the shortlist kind."""

from __future__ import annotations

import json
import shutil
from dataclasses import replace
from pathlib import Path

import numpy as np
import pytest

from lookalike.collection import Collection
from lookalike.demo import DemoCollection
from lookalike.index import asmk_postings
from lookalike.index.asmk_index import INVERTED, AsmkIndex, ImageCode, Vocabulary
from lookalike.index.asmk_postings import fine_words, write_postings
from lookalike.index.asmk_shortlist import (
    SHORTLIST,
    SHORTLIST_DIR,
    CodeBlock,
    ShortlistAsmk,
    block_of,
    build_asmk,
    file_bytes,
    inverted_of,
    load_asmk,
    save_asmk,
    write_shortlist,
)
from lookalike.index.generation import LoadedGeneration, Manifest
from lookalike.search.query import below_candidates, score, top_rows
from lookalike.search.rerank import _expanded_scores, rerank
from lookalike.settings import IndexSettings, RerankSettings, SearchSettings, Settings
from test_asmk import make_set

D = 48  # 2 packed words a residual, 16 padding bits
TOL = 1e-6


class Fixture:
    """30 images over 64 words (`test_asmk.make_set`), one without local features (row 7),
    their inverted file and shortlist index, and the images' codes with 1 and 3 assignments."""

    def __init__(self) -> None:
        centroids, images = make_set(D, seed=11)
        images[7] = np.zeros((0, D), np.float32)
        self.vocabulary = Vocabulary(centroids)
        self.codes = [self.vocabulary.encode(x) for x in images]
        self.multi = [self.vocabulary.encode(x, assignments=3) for x in images if len(x)]
        self.inverted = AsmkIndex.build(self.vocabulary, self.codes)
        self.shortlist = ShortlistAsmk.build(self.vocabulary, self.codes, candidates=10)


@pytest.fixture(scope="module")
def fx() -> Fixture:
    return Fixture()


@pytest.mark.parametrize(
    ("alpha", "threshold", "multi"), [(3.0, 0.0, False), (3.0, 0.0, True), (1.0, 0.25, True)]
)
def test_shortlist_scores_are_the_inverted_files_on_candidates(
    fx: Fixture, alpha: float, threshold: float, multi: bool
) -> None:
    """Any candidates, in any order, repeated or not: the inverted file's scores on them."""
    rng = np.random.default_rng(0)
    for code in fx.multi if multi else fx.codes:
        full = fx.inverted.scores(code, alpha=alpha, threshold=threshold)
        for size in (1, 7, 30):
            rows = rng.choice(30, size, replace=False)
            got = fx.shortlist.scores(code, alpha=alpha, threshold=threshold, candidates=rows)
            assert got.shape == (size,) and got.dtype == np.float32
            np.testing.assert_allclose(got, full[rows], rtol=0, atol=TOL)
        repeated = np.array([3, 7, 3, 29])
        got = fx.shortlist.scores(code, alpha=alpha, threshold=threshold, candidates=repeated)
        np.testing.assert_allclose(got, full[repeated], rtol=0, atol=TOL)
        every = fx.shortlist.scores(code, alpha=alpha, threshold=threshold)
        np.testing.assert_allclose(every, full, rtol=0, atol=TOL)
    assert fx.shortlist.scores(fx.codes[0], alpha=3.0, threshold=0.0)[7] == 0.0  # no features


def test_query_words_need_not_be_unique(fx: Fixture) -> None:
    """`encode` gives unique words, but a code with a word twice (two residuals on it) is
    scored as the inverted file scores it: once per query entry."""
    a, b = fx.codes[0], fx.codes[6]
    words = np.concatenate([a.words, b.words])
    order = np.argsort(words, kind="stable")
    doubled = ImageCode(words[order], np.concatenate([a.residuals, b.residuals])[order])
    assert len(np.unique(doubled.words)) < len(doubled.words)
    np.testing.assert_allclose(
        fx.shortlist.scores(doubled, alpha=3.0, threshold=0.0, candidates=np.arange(30)),
        fx.inverted.scores(doubled, alpha=3.0, threshold=0.0),
        rtol=0,
        atol=TOL,
    )


def test_empty_query_and_no_candidates(fx: Fixture) -> None:
    empty = fx.vocabulary.encode(np.zeros((0, D), np.float32))
    assert not fx.shortlist.scores(empty, alpha=3.0, threshold=0.0, candidates=np.arange(5)).any()
    none = fx.shortlist.scores(fx.codes[0], alpha=3.0, threshold=0.0, candidates=np.array([]))
    assert none.shape == (0,)
    with pytest.raises(ValueError, match=r"\[0, 30\)"):
        fx.shortlist.scores(fx.codes[0], alpha=3.0, threshold=0.0, candidates=np.array([30]))


def test_blocks_and_inverted_files_convert_both_ways(fx: Fixture) -> None:
    block = block_of(fx.inverted)
    assert block.n_images == 30 and block.words.dtype == np.uint16
    for i, code in enumerate(fx.codes):
        np.testing.assert_array_equal(block.code(i).words, code.words)
        np.testing.assert_array_equal(block.code(i).residuals, code.residuals)
    head = block.head(5)
    assert head.n_images == 5 and len(head.words) == int(block.offsets[5])
    np.testing.assert_array_equal(head.code(4).residuals, fx.codes[4].residuals)
    again = inverted_of(block, fx.vocabulary)
    for code in fx.multi[:5]:
        np.testing.assert_array_equal(
            again.scores(code, alpha=3.0, threshold=0.0),
            fx.inverted.scores(code, alpha=3.0, threshold=0.0),
        )


def test_written_from_parts_in_any_order_and_memory_mapped(fx: Fixture, tmp_path: Path) -> None:
    """`write_shortlist` from three blocks that give the images in scrambled order (one block
    from disk, as an encoded shard's codes are) -> the same index, its codes memory-mapped."""
    block = block_of(fx.inverted)
    order = np.random.default_rng(3).permutation(30)
    first, second, third = order[:11], order[11:25], order[25:]
    own = CodeBlock.of([fx.codes[i] for i in second], 2, np.dtype(np.uint16))
    shard = tmp_path / "shard, ünï"
    CodeBlock.of([fx.codes[i] for i in third], 2, np.dtype(np.uint16)).save(shard)
    generation = tmp_path / "gén 2"
    parts = [
        (first, first, lambda: block),
        (second, np.arange(len(second)), lambda: own),
        (third, np.arange(len(third)), lambda: CodeBlock.open(shard)),
    ]
    written = write_shortlist(generation, fx.vocabulary, 30, parts, candidates=10)
    assert isinstance(written.block.words, np.memmap) and written.block.words.mode == "r"
    assert isinstance(written.block.residuals, np.memmap)
    np.testing.assert_array_equal(written.block.offsets, block.offsets)
    np.testing.assert_array_equal(written.block.words, block.words)
    np.testing.assert_array_equal(written.block.residuals, block.residuals)
    loaded = load_asmk(generation, json.loads(json.dumps(written.params())), fx.vocabulary)
    assert isinstance(loaded, ShortlistAsmk) and loaded.candidates == 10
    rows = np.array([29, 0, 7, 13])
    np.testing.assert_array_equal(
        loaded.scores(fx.multi[2], alpha=3.0, threshold=0.0, candidates=rows),
        fx.shortlist.scores(fx.multi[2], alpha=3.0, threshold=0.0, candidates=rows),
    )
    sizes = file_bytes(generation)
    entries = int(block.offsets[-1])
    assert sizes["asmk_codes"] >= entries * (2 + 2 * 4)  # uint16 word + 2 x uint32 residual
    assert 31 * 8 <= sizes["asmk_index"] < 31 * 8 + 256  # the offsets (and an .npy header)
    assert loaded.ram_bytes() == 31 * 8
    with pytest.raises(ValueError, match="exactly once"):
        write_shortlist(tmp_path / "bad", fx.vocabulary, 30, [*parts, parts[0]], candidates=1)
    with pytest.raises(ValueError, match="no code"):
        write_shortlist(tmp_path / "bad", fx.vocabulary, 30, parts[:2], candidates=1)


def test_chosen_by_size_saved_and_loaded_by_kind(fx: Fixture, tmp_path: Path) -> None:
    small = IndexSettings(exact_below=31)
    assert isinstance(build_asmk(fx.vocabulary, fx.codes, small), AsmkIndex)
    big = build_asmk(fx.vocabulary, fx.codes, IndexSettings(exact_below=30, candidates=4))
    assert isinstance(big, ShortlistAsmk) and big.candidates == 4
    forced = IndexSettings(asmk="inverted", exact_below=1)
    assert isinstance(build_asmk(fx.vocabulary, fx.codes, forced), AsmkIndex)
    for index, folder in ((big, tmp_path / "a"), (fx.inverted, tmp_path / "b")):
        recorded = save_asmk(index, folder)
        assert recorded["asmk_index"]["kind"] == index.kind
        loaded = load_asmk(folder, recorded["asmk_index"], fx.vocabulary)
        assert type(loaded) is type(index)
    # parameters without a kind are the inverted file's
    assert isinstance(load_asmk(tmp_path / "b", {}, fx.vocabulary), AsmkIndex)
    assert file_bytes(tmp_path / "b")["asmk_codes"] == 0
    assert file_bytes(tmp_path / "b")["asmk_index"] > 0


def test_index_settings_check_and_key_the_asmk_choice() -> None:
    with pytest.raises(ValueError, match="allowed: auto, inverted, shortlist"):
        IndexSettings(asmk="ivf")
    with pytest.raises(ValueError, match="candidates"):
        IndexSettings(candidates=0)
    default = IndexSettings()
    assert default.key == "auto-e100000-l0-b32-p0-r1000-t64-s0"  # as generations record it
    assert IndexSettings(candidates=500).key == f"{default.key}-aauto-c500"
    assert IndexSettings(asmk="shortlist").key.endswith(f"-ashortlist-c{default.candidates}")
    assert IndexSettings(word_candidates=500, word_bits=10).key == f"{default.key}-w500b10"
    with pytest.raises(ValueError, match="word_bits"):
        IndexSettings(word_bits=0)
    assert not default.asmk_shortlist(99_999) and default.asmk_shortlist(100_000)
    assert IndexSettings(asmk="shortlist").asmk_shortlist(1)
    assert not IndexSettings(asmk="inverted").asmk_shortlist(10**7)
    settings = Settings(index=IndexSettings(asmk="shortlist", candidates=7))
    assert Settings.from_dict(json.loads(json.dumps(settings.as_dict()))) == settings


def test_below_candidates_caps_the_others() -> None:
    final = np.array([0.9, 0.0, 0.5, 0.7, 0.0], np.float32)
    capped = below_candidates(final, np.array([1, 2]))
    assert capped[[1, 2]].tolist() == [0.0, 0.5]
    assert capped[0] < 0.0 and capped[3] < 0.0 and capped[4] < 0.0
    assert top_rows(capped, 2).tolist() == [2, 1]
    np.testing.assert_array_equal(below_candidates(final, np.arange(5)), final)


@pytest.fixture(scope="module")
def shortlisted(
    demo: DemoCollection, demo_collection: Collection, tmp_path_factory: pytest.TempPathFactory
) -> Collection:
    """A copy of the demo index forced to the shortlist kind, 12 candidates of 72 images."""
    index_dir = tmp_path_factory.mktemp("shortlist") / "idx, copie"
    shutil.copytree(demo_collection.index_dir, index_dir)
    # the global index's candidates alone (the word candidates have tests of their own)
    forced = IndexSettings(asmk="shortlist", candidates=12, word_candidates=0)
    collection = Collection.create(demo.root, index=index_dir, settings=Settings(index=forced))
    report = collection.index(workers=1)
    assert not report.added and not report.updated
    return collection


def test_a_collection_forced_to_the_shortlist_kind_finds_the_same(
    demo: DemoCollection, demo_collection: Collection, shortlisted: Collection
) -> None:
    loaded = shortlisted.snapshot().loaded
    assert isinstance(loaded.asmk, ShortlistAsmk) and loaded.asmk.candidates == 12
    assert isinstance(loaded.asmk.block.residuals, np.memmap)
    folder = shortlisted.index_dir / f"gen-{loaded.generation:06d}"
    assert (folder / SHORTLIST_DIR).is_dir() and not (folder / "asmk").exists()
    manifest = Manifest.read(folder)
    assert manifest is not None and manifest.asmk_index["kind"] == SHORTLIST
    assert manifest.global_settings == shortlisted.settings.index.key
    for copy in [c for c in demo.originals if c.startswith("copies/")][::4]:
        image_id = shortlisted.id_of(copy)
        for mode in ("fused", "asmk"):
            hits = shortlisted.search(image_id, k=4, mode=mode, verify=0)
            reference = demo_collection.search(image_id, k=4, mode=mode, verify=0)
            assert [h.path for h in hits] == [h.path for h in reference], (copy, mode)
        verified = shortlisted.search(image_id, k=3)
        assert [h.path for h in verified] == [h.path for h in demo_collection.search(image_id, k=3)]


def test_no_row_outside_the_candidates_outranks_one_inside(
    demo: DemoCollection, shortlisted: Collection
) -> None:
    loaded = shortlisted.snapshot().loaded
    image_id = shortlisted.id_of(demo.query)
    features = shortlisted.stored_features(image_id)
    query = loaded.model.global_whitening.apply(features.global_[None].astype(np.float32))[0]
    candidates = set(loaded.global_.search(query, 12)[0].tolist())
    for mode in ("fused", "asmk"):
        scores = score(loaded, features, SearchSettings(mode=mode))
        ranked = top_rows(scores.final, loaded.n_images)
        assert set(ranked[:12].tolist()) == candidates
        assert scores.asmk is not None
        outside = np.setdiff1d(np.arange(loaded.n_images), list(candidates))
        assert not scores.asmk[outside].any()


def test_info_reports_the_asmk_bytes(demo_collection: Collection, shortlisted: Collection) -> None:
    info = shortlisted.info()
    n = info["images"]
    assert info["asmk_index"]["kind"] == SHORTLIST and info["asmk_index"]["candidates"] == 12
    assert (n + 1) * 8 <= info["bytes"]["asmk_index"] < (n + 1) * 8 + 256
    assert info["bytes"]["asmk_codes"] > 100 * n  # words and residuals, memory-mapped
    assert info["bytes_per_image"]["asmk_codes"] == pytest.approx(info["bytes"]["asmk_codes"] / n)
    assert info["bytes"]["asmk_index"] + info["bytes"]["asmk_codes"] <= info["bytes"]["indexes"]
    default = demo_collection.info()
    assert default["asmk_index"]["kind"] == "inverted"
    assert default["bytes"]["asmk_codes"] == 0 and default["bytes"]["asmk_index"] > 0


class _MaskedInverted:
    """The slow reference for scores on candidate rows: an inverted file's scores of every row,
    kept on `rows` and 0 elsewhere (an index of the inverted kind to the query pipeline)."""

    kind = INVERTED

    def __init__(self, index: AsmkIndex, rows: np.ndarray) -> None:
        self.index, self.rows = index, rows
        self.vocabulary = index.vocabulary

    @property
    def n_images(self) -> int:
        return self.index.n_images

    def scores(self, code: ImageCode, *, alpha: float, threshold: float) -> np.ndarray:
        out = np.zeros(self.n_images, np.float32)
        out[self.rows] = self.index.scores(code, alpha=alpha, threshold=threshold)[self.rows]
        return out


def test_expansion_on_a_shortlist_index_scores_the_first_stages_candidates(
    demo: DemoCollection, shortlisted: Collection
) -> None:
    """Each expanding image's code is scored on the first stage's candidates only (the inverted
    file's scores there, 0 elsewhere), and every other row is capped below them again."""
    snapshot = shortlisted.snapshot()
    loaded, stored = snapshot.loaded, snapshot.stored
    assert isinstance(loaded, LoadedGeneration) and isinstance(loaded.asmk, ShortlistAsmk)
    inverted = inverted_of(loaded.asmk.block, loaded.asmk.vocabulary)
    image_id = shortlisted.id_of(demo.query)
    assert image_id is not None
    features = shortlisted.stored_features(image_id)
    second = RerankSettings(expand=True)
    for mode in ("fused", "asmk"):
        search = SearchSettings(mode=mode)
        first = score(loaded, features, search)
        candidates = first.candidates
        assert candidates is not None and len(candidates) == 12
        reranked = rerank(loaded, features, first, stored, search, second)
        rows = reranked.expanded_from
        assert rows, mode
        got = _expanded_scores(loaded, features, first, stored, search, second, rows, None)
        every_row = replace(first, candidates=None)  # as the inverted file's first stage
        masked, full = (
            _expanded_scores(
                replace(loaded, asmk=asmk), features, every_row, stored, search, second, rows, None
            )
            for asmk in (_MaskedInverted(inverted, candidates), inverted)
        )
        np.testing.assert_allclose(got, below_candidates(masked, candidates), rtol=0, atol=TOL)
        assert set(top_rows(got, 12).tolist()) == set(candidates.tolist())
        # a full pass over the codes would have scored the other rows too
        outside = np.setdiff1d(np.arange(loaded.n_images), candidates)
        assert np.abs(full[outside] - masked[outside]).max() > 1e-3


def test_postings_list_every_entry_in_its_fine_word_in_row_order(
    fx: Fixture, tmp_path: Path, monkeypatch: pytest.MonkeyPatch
) -> None:
    block = block_of(fx.inverted)
    bits = 3
    postings = write_postings(
        tmp_path / "a", block.offsets, block.words, block.residuals, fx.vocabulary.size, bits
    )
    assert isinstance(postings.rows, np.memmap)
    assert len(postings.offsets) == (fx.vocabulary.size << bits) + 1
    cells = fine_words(block.words, block.residuals, bits)
    # dimension 0 is the top bit of the first packed word: the cell's lowest bit is dim 2
    assert ((cells >> bits) == block.words).all()
    image = np.repeat(np.arange(30), block.counts())
    for cell in np.unique(cells):
        listed = postings.rows[postings.offsets[cell] : postings.offsets[cell + 1]]
        np.testing.assert_array_equal(listed, np.sort(image[cells == cell]))
    # written a few entries at a time: the same files
    monkeypatch.setattr(asmk_postings, "WRITE_ENTRIES", 7)
    again = write_postings(
        tmp_path / "b", block.offsets, block.words, block.residuals, fx.vocabulary.size, bits
    )
    np.testing.assert_array_equal(again.offsets, postings.offsets)
    np.testing.assert_array_equal(again.rows, postings.rows)
    with pytest.raises(ValueError, match="bits"):
        fine_words(block.words, block.residuals, 17)


def test_word_candidates_put_an_images_own_code_first_among_noise(tmp_path: Path) -> None:
    """Among 3000 images of random codes, each query (an image's code with a fifth of its
    residual bits flipped, as another photograph of it gives) finds its image among its 5
    word candidates; a read budget too small for the query's cells finds nothing."""
    rng = np.random.default_rng(5)
    words_per_image, vocabulary = 60, 256
    codes = []
    for _ in range(3000):
        words = np.sort(rng.choice(vocabulary, words_per_image, replace=False)).astype(np.int32)
        codes.append(ImageCode(words, rng.integers(0, 2**32, (words_per_image, 2), np.uint32)))
    block = CodeBlock.of(codes, 2, np.dtype(np.uint16))
    postings = write_postings(
        tmp_path, block.offsets, block.words, block.residuals, vocabulary, bits=8
    )
    found = 0
    for i in rng.choice(3000, 20, replace=False):
        code = codes[i]
        flips = rng.random((words_per_image, 64)) < 0.2
        packed = np.packbits(flips, axis=1, bitorder="big").view(">u4").astype(np.uint32)
        noisy = ImageCode(code.words, code.residuals ^ packed)
        rows = postings.candidates(noisy, block.offsets, 5)
        assert len(rows) == 5 and (np.diff(rows) > 0).all()
        found += int(i in rows)
    assert found >= 18, found
    assert len(postings.candidates(codes[0], block.offsets, 5, scan=1)) <= 5
    empty = ImageCode(np.zeros(0, np.int32), np.zeros((0, 2), np.uint32))
    assert len(postings.candidates(empty, block.offsets, 5)) == 0


@pytest.fixture(scope="module")
def worded(
    demo: DemoCollection, demo_collection: Collection, tmp_path_factory: pytest.TempPathFactory
) -> Collection:
    """A copy of the demo index of the shortlist kind whose global index gives one candidate
    (an indexed query's own image: every other image is missed, as at scale where thousands
    of distractors crowd the global list) and its fine words 6 more."""
    index_dir = tmp_path_factory.mktemp("worded") / "idx"
    shutil.copytree(demo_collection.index_dir, index_dir)
    forced = IndexSettings(asmk="shortlist", candidates=1, word_candidates=6, word_bits=4)
    collection = Collection.create(demo.root, index=index_dir, settings=Settings(index=forced))
    report = collection.index(workers=1)
    assert not report.added and not report.updated
    return collection


def test_word_candidates_find_the_copies_the_global_candidates_miss(
    demo: DemoCollection, worded: Collection
) -> None:
    """Each rotated, cropped, blurred... copy of the demo searched by its features: the
    global index's one candidate is the copy itself, and the word candidates bring in its
    original nearly every time; the index records and reloads them."""
    loaded = worded.snapshot().loaded
    assert isinstance(loaded.asmk, ShortlistAsmk) and loaded.asmk.postings is not None
    params = loaded.asmk.params()
    assert params["word_candidates"] == 6 and params["word_bits"] == 4
    folder = worded.index_dir / f"gen-{loaded.generation:06d}" / SHORTLIST_DIR
    assert (folder / "cell_offsets.npy").is_file() and (folder / "cell_rows.npy").is_file()
    rows = {path: row for row, (_, path) in enumerate(worded.snapshot().images())}
    by_global = by_words = 0
    copies = [c for c in demo.originals if c.startswith("copies/")]
    for copy in copies:
        features = worded.stored_features(worded.id_of(copy))
        query = loaded.model.global_whitening.apply(features.global_[None].astype(np.float32))
        original = rows[demo.originals[copy]]
        by_global += original in loaded.global_.search(query[0], 1)[0]
        candidates = score(loaded, features, SearchSettings(mode="asmk")).candidates
        assert candidates is not None and 1 <= len(candidates) <= 7
        by_words += original in candidates
    assert by_global == 0
    assert by_words >= 0.9 * len(copies), (by_words, len(copies))
