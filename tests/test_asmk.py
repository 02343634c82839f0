"""The ASMK index (through the `asmk` package) against a brute-force ASMK from its definition.

Brute force, in float64 numpy, from Tolias et al. with idf off:

- each descriptor is assigned to its nearest centroid(s) by exhaustive L2 distance;
- residuals `desc - centroid` are summed per visual word and binarised by sign (`> 0` -> 1);
- two binary residuals on a common word have similarity `u = 1 - 2 * hamming / d_bits`, where
  `d_bits` is asmk's normaliser: `hamming.hamming_cdist_packed` (no `normalization` argument)
  divides by the number of bits in the packed array, i.e. `32 * ceil(d / 32)` — the padding
  bits are zero in both codes, so they never differ, but they do count in the denominator;
- the selectivity is `u ** alpha` if `u >= threshold` else 0;
- an image's score is the sum over common words divided by `sqrt(W_query * W_image)`.

Tolerance on scores: 1e-5 (asmk returns float32). The seeded set is checked to have no
near-ties (squared-distance gaps at the k-th neighbour > 1e-5, aggregated residual components
|r| > 1e-6), so that FAISS's float32 distances and asmk's float32 sums cannot disagree with the
float64 brute force.
"""

from __future__ import annotations

import math
from pathlib import Path

import numpy as np
import pytest

from lookalike.index.asmk_index import AsmkIndex, ImageCode, Vocabulary, aggregate

K_WORDS = 64
N_IMAGES = 30
N_GROUPS = 6
SCORE_TOL = 1e-5

BruteCode = dict[int, np.ndarray]


def l2n(x: np.ndarray) -> np.ndarray:
    return x / np.linalg.norm(x, axis=-1, keepdims=True)


def make_set(d: int, seed: int) -> tuple[np.ndarray, list[np.ndarray]]:
    """64 random unit centroids and 30 images of 20-80 noisy copies of centroids.

    Images come in 6 groups that share words and perturbations (so that same-group images have
    correlated residuals and cross-group ones do not), L2-normalised, float32.
    """
    rng = np.random.default_rng(seed)
    centroids = l2n(rng.standard_normal((K_WORDS, d))).astype(np.float32)
    group_words = [rng.choice(K_WORDS, 80) for _ in range(N_GROUPS)]
    group_shift = [0.4 / math.sqrt(d) * rng.standard_normal((80, d)) for _ in range(N_GROUPS)]
    images = []
    for i in range(N_IMAGES):
        g = i % N_GROUPS
        n = int(rng.integers(20, 81))
        pick = rng.choice(80, n, replace=False)
        desc = centroids[group_words[g][pick]] + group_shift[g][pick]
        desc = desc + 0.15 / math.sqrt(d) * rng.standard_normal((n, d))
        images.append(l2n(desc).astype(np.float32))
    return centroids, images


def brute_assign(desc: np.ndarray, centroids: np.ndarray, k: int) -> tuple[np.ndarray, np.ndarray]:
    """The `k` nearest centroids of each row (exhaustive), and all sorted squared distances."""
    d2 = ((desc[:, None, :].astype(np.float64) - centroids[None].astype(np.float64)) ** 2).sum(-1)
    order = np.argsort(d2, axis=1, kind="stable")
    return order[:, :k], np.take_along_axis(d2, order, axis=1)


def brute_code(desc: np.ndarray, centroids: np.ndarray, k: int) -> tuple[BruteCode, float]:
    """word -> binarised aggregated residual (bool, d); and the smallest |residual component|."""
    assign, _ = brute_assign(desc, centroids, k)
    code: BruteCode = {}
    margin = math.inf
    for w in np.unique(assign):
        members = (assign == w).any(axis=1)
        residual = (desc[members].astype(np.float64) - centroids[w].astype(np.float64)).sum(0)
        margin = min(margin, float(np.abs(residual).min()))
        code[int(w)] = residual > 0
    return code, margin


def d_bits(d: int) -> int:
    """asmk's Hamming normaliser: bits in the uint32-packed code, a multiple of 32."""
    return 32 * math.ceil(d / 32)


def brute_score(q: BruteCode, x: BruteCode, d: int, alpha: float, threshold: float) -> float:
    if not q or not x:
        return 0.0
    total = 0.0
    for w in q.keys() & x.keys():
        u = 1.0 - 2.0 * np.count_nonzero(q[w] != x[w]) / d_bits(d)
        if u >= threshold:
            total += u**alpha
    return total / math.sqrt(len(q) * len(x))


def unpack_bits(packed: np.ndarray, d: int) -> np.ndarray:
    """asmk packs dimension j into uint32 `j // 32`, most significant bit first."""
    j = np.arange(d)
    return ((packed[:, j // 32] >> (31 - j % 32).astype(np.uint32)) & 1).astype(bool)


class Fixture:
    def __init__(self, d: int, seed: int) -> None:
        self.d = d
        self.centroids, self.images = make_set(d, seed)
        self.vocabulary = Vocabulary(self.centroids)
        self._codes: dict[int, list[ImageCode]] = {}
        self.codes = self.codes_k(1)
        self.index = AsmkIndex.build(self.vocabulary, self.codes)
        self._brute: dict[int, list[tuple[BruteCode, float]]] = {}

    def codes_k(self, k: int) -> list[ImageCode]:
        """Package codes of every image with `k` assignments (cached: each encode is a FAISS
        search, which costs milliseconds on a busy machine)."""
        if k not in self._codes:
            self._codes[k] = [self.vocabulary.encode(desc, assignments=k) for desc in self.images]
        return self._codes[k]

    def brute(self, k: int) -> list[tuple[BruteCode, float]]:
        """Brute-force codes (and residual margins) of every image with `k` assignments."""
        if k not in self._brute:
            self._brute[k] = [brute_code(desc, self.centroids, k) for desc in self.images]
        return self._brute[k]


@pytest.fixture(scope="module", params=[32, 48], ids=["d32", "d48-padded"])
def fx(request: pytest.FixtureRequest) -> Fixture:
    return Fixture(request.param, seed=7)


@pytest.mark.parametrize("k", [1, 3])
def test_seeded_set_has_no_near_ties(fx: Fixture, k: int) -> None:
    """Precondition of the exact comparisons below."""
    for desc in fx.images:
        _, d2 = brute_assign(desc, fx.centroids, k)
        assert (d2[:, k] - d2[:, k - 1]).min() > 1e-5
    assert min(margin for _, margin in fx.brute(k)) > 1e-6


@pytest.mark.parametrize("k", [1, 3])
def test_assign_matches_brute_force(fx: Fixture, k: int) -> None:
    desc = np.concatenate(fx.images)
    got = fx.vocabulary.assign(desc, k)
    expected, _ = brute_assign(desc, fx.centroids, k)
    assert got.shape == (len(desc), k)
    np.testing.assert_array_equal(np.sort(got, axis=1), np.sort(expected, axis=1))


@pytest.mark.parametrize("k", [1, 3])
def test_encode_matches_brute_force(fx: Fixture, k: int) -> None:
    for code, (expected, _) in zip(fx.codes_k(k), fx.brute(k), strict=True):
        np.testing.assert_array_equal(code.words, sorted(expected))
        assert code.residuals.shape == (len(expected), math.ceil(fx.d / 32))
        bits = unpack_bits(code.residuals, fx.d)
        np.testing.assert_array_equal(bits, np.stack([expected[w] for w in sorted(expected)]))


@pytest.mark.parametrize(
    ("alpha", "threshold", "query_k"),
    [(3.0, 0.0, 1), (3.0, 0.0, 3), (1.0, 0.25, 1), (3.0, -1.0, 1)],
)
def test_scores_match_brute_force(
    fx: Fixture, alpha: float, threshold: float, query_k: int
) -> None:
    database = [code for code, _ in fx.brute(1)]
    for code, (q, _) in zip(fx.codes_k(query_k), fx.brute(query_k), strict=True):
        got = fx.index.scores(code, alpha=alpha, threshold=threshold)
        expected = [brute_score(q, x, fx.d, alpha, threshold) for x in database]
        assert got.shape == (N_IMAGES,)
        assert got.dtype == np.float32
        np.testing.assert_allclose(got, expected, rtol=0, atol=SCORE_TOL)


def test_scores_are_not_trivial(fx: Fixture) -> None:
    """The set exercises the kernel: same-group matches score high, the threshold cuts some."""
    scores = np.stack([fx.index.scores(c, alpha=3.0, threshold=0.0) for c in fx.codes])
    same_group = np.arange(N_IMAGES)[:, None] % N_GROUPS == np.arange(N_IMAGES) % N_GROUPS
    off_diagonal = ~np.eye(N_IMAGES, dtype=bool)
    assert scores[same_group & off_diagonal].min() > scores[~same_group].max()
    cut = np.stack([fx.index.scores(c, alpha=3.0, threshold=0.5) for c in fx.codes])
    assert (cut < scores - 1e-3).any()


def test_image_scores_itself_highest(fx: Fixture) -> None:
    for i, code in enumerate(fx.codes):
        scores = fx.index.scores(code, alpha=3.0, threshold=0.0)
        assert scores[i] == pytest.approx(1.0, abs=1e-6)
        assert np.delete(scores, i).max() < 1.0 - 1e-3


def test_save_load_round_trip(fx: Fixture, tmp_path: Path) -> None:
    folder = tmp_path / "asmk índex, v1" / "inverted file"
    fx.index.save(folder)
    loaded = AsmkIndex.load(folder, Vocabulary(fx.centroids))
    assert loaded.n_images == N_IMAGES
    for code in fx.codes:
        np.testing.assert_array_equal(
            loaded.scores(code, alpha=3.0, threshold=0.0),
            fx.index.scores(code, alpha=3.0, threshold=0.0),
        )
    multi = fx.codes_k(3)[0]
    np.testing.assert_array_equal(
        loaded.scores(multi, alpha=1.0, threshold=0.25),
        fx.index.scores(multi, alpha=1.0, threshold=0.25),
    )


def test_each_image_code_is_read_back_from_the_inverted_file(fx: Fixture) -> None:
    """`code(row)` gives back what was indexed, whether the entries came image by image or in
    any order (an image with no word included)."""
    width = fx.codes[0].residuals.shape[1]
    codes = [*fx.codes, ImageCode(np.zeros(0, np.int32), np.zeros((0, width), np.uint32))]
    built = AsmkIndex.build(fx.vocabulary, codes)
    words = np.concatenate([c.words for c in codes])
    residuals = np.concatenate([c.residuals for c in codes])
    rows = np.repeat(np.arange(len(codes)), [len(c.words) for c in codes])
    shuffled = np.random.default_rng(0).permutation(len(words))
    scrambled = AsmkIndex.from_entries(
        fx.vocabulary, words[shuffled], residuals[shuffled], rows[shuffled], len(codes)
    )
    for index in (built, scrambled):
        for row, code in enumerate(codes):
            held = index.code(row)
            np.testing.assert_array_equal(held.words, code.words)
            np.testing.assert_array_equal(held.residuals, code.residuals)
            assert held.words.dtype == np.int32
        np.testing.assert_array_equal(
            index.scores(codes[3], alpha=3.0, threshold=0.0),
            built.scores(codes[3], alpha=3.0, threshold=0.0),
        )
    with pytest.raises(IndexError):
        built.code(len(codes))


def test_empty_query_scores_zero(fx: Fixture) -> None:
    empty = fx.vocabulary.encode(np.zeros((0, fx.d), np.float32))
    assert len(empty.words) == 0
    scores = fx.index.scores(empty, alpha=3.0, threshold=0.0)
    np.testing.assert_array_equal(scores, np.zeros(N_IMAGES, np.float32))


def test_load_with_other_codebook_size_raises(fx: Fixture, tmp_path: Path) -> None:
    fx.index.save(tmp_path / "ivf")
    with pytest.raises(ValueError, match="words"):
        AsmkIndex.load(tmp_path / "ivf", Vocabulary(fx.centroids[:32]))


def test_vocabulary_rejects_non_matrix() -> None:
    with pytest.raises(ValueError, match=r"\(K, d\)"):
        Vocabulary(np.zeros(8, np.float32))


# --- edge cases: empty indexes and images without local features -----------------------------


def test_build_from_no_codes_gives_empty_index() -> None:
    centroids, images = make_set(32, seed=1)
    vocabulary = Vocabulary(centroids)
    index = AsmkIndex.build(vocabulary, [])
    assert index.n_images == 0
    assert index.scores(vocabulary.encode(images[0]), alpha=3.0, threshold=0.0).shape == (0,)


def test_image_without_local_features_is_indexed_with_zero_scores() -> None:
    centroids, images = make_set(32, seed=1)
    vocabulary = Vocabulary(centroids)
    codes = [vocabulary.encode(desc) for desc in images[:5]]
    empty = vocabulary.encode(np.zeros((0, 32), np.float32))
    assert isinstance(empty, ImageCode)
    index = AsmkIndex.build(vocabulary, [*codes[:2], empty, *codes[2:]])
    reference = AsmkIndex.build(vocabulary, codes)
    for code in codes:
        scores = index.scores(code, alpha=3.0, threshold=0.0)
        assert scores[2] == 0.0
        np.testing.assert_allclose(
            np.delete(scores, 2), reference.scores(code, alpha=3.0, threshold=0.0), atol=1e-6
        )


@pytest.mark.parametrize("assignments", [1, 3])
def test_vectorised_aggregation_equals_asmk_kernel(assignments: int) -> None:
    """`aggregate` (the fast path) gives exactly asmk's `ASMKKernel.aggregate_image`."""
    centroids, images = make_set(48, seed=3)
    vocabulary = Vocabulary(centroids)
    for desc in images[:8]:
        words = vocabulary.assign(desc, assignments)
        expected_res, expected_words = vocabulary.kernel.aggregate_image(desc, words)
        code = aggregate(desc, words, vocabulary.codebook.centroids)
        np.testing.assert_array_equal(code.words, expected_words)
        np.testing.assert_array_equal(code.residuals, expected_res)


def test_encode_many_equals_one_by_one() -> None:
    centroids, images = make_set(32, seed=4)
    vocabulary = Vocabulary(centroids)
    batch = vocabulary.encode_many(images[:6], assignments=2)
    for desc, code in zip(images[:6], batch, strict=True):
        single = vocabulary.encode(desc, assignments=2)
        np.testing.assert_array_equal(code.words, single.words)
        np.testing.assert_array_equal(code.residuals, single.residuals)
