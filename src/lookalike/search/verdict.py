"""A hit's verdict and similarity on a fixed scale: pure functions of its evidence (inliers
and global cosine with the query), so the same pair reads the same however the query is given
(a file, an upload, an indexed image's id) and whatever else the search found."""

from __future__ import annotations

import numpy as np

from lookalike.settings import VERDICT, VERDICTS, VerdictSettings, check_verdict

MATCH_FLOOR = 0.5
"""The least similarity of a 'match'."""
SIMILAR_FLOOR = 0.25
"""The least similarity of a 'similar' hit."""


def similarity(
    inliers: int | None, cosine: float | None, settings: VerdictSettings = VERDICT
) -> float | None:
    """The similarity in [0, 1) of a hit with `inliers` (None: not verified) and global
    `cosine` (None: no global descriptor), as `VerdictSettings` defines it; None when there
    is no evidence of either kind (a search by a classic descriptor alone)."""
    if inliers is None and cosine is None:
        return None
    count = 0.0 if inliers is None else float(inliers)
    alike = 0.0 if cosine is None else max(float(cosine), 0.0)
    strength = max(
        min(count / settings.match_inliers, alike / settings.match_global),
        count / settings.sure_inliers,
    )
    if strength >= 1.0:
        return 1.0 - 1.0 / (2.0 * strength)
    evidence = max(alike / settings.similar_global, count / settings.similar_inliers)
    # below a match by construction, however strong the weaker evidence is
    return min(evidence / (2.0 * (1.0 + evidence)), float(np.nextafter(MATCH_FLOOR, 0.0)))


def print_similarity(score: float, match_score: float) -> float:
    """The similarity in [0, 1) of two fingerprints from their minutiae matcher's `score`: a
    match (0.5 and up) from `match_score` on, as `similarity` reads inliers."""
    strength = max(score, 0.0) / match_score
    if strength >= 1.0:
        return 1.0 - 1.0 / (2.0 * strength)
    return strength / 2.0


def below_match(value: float | None) -> float | None:
    """`value` capped just below a match: the similarity of a hit whose kind of evidence
    cannot make it one (a print the minutiae matcher did not compare)."""
    if value is None:
        return None
    return min(value, float(np.nextafter(MATCH_FLOOR, 0.0)))


def verdict(value: float | None) -> str:
    """'match', 'similar' or 'none' for a `similarity` value; 'similar' for None (a hit of a
    classic descriptor's ranking: alike in colour, texture or shape, with no other evidence)."""
    if value is None:
        return "similar"
    if value >= MATCH_FLOOR:
        return "match"
    return "similar" if value >= SIMILAR_FLOOR else "none"


def at_least(found: str, wanted: str) -> bool:
    """Whether verdict `found` is `wanted` or stronger."""
    return VERDICTS.index(found) >= VERDICTS.index(check_verdict(wanted))


def matches_first(final: np.ndarray, match_rows: np.ndarray) -> np.ndarray:
    """`final: (n,)` scores with the rows `match_rows: (m,)` int lifted above every other row
    (their order among themselves, and the others', kept): a ranking where every 'match'
    comes before the rest."""
    if not len(match_rows) or not len(final):
        return final
    finite = final[np.isfinite(final)]
    lift = float(finite.max() - finite.min()) + 1.0 if len(finite) else 1.0
    out = final.astype(np.float64, copy=True)
    out[match_rows] += lift
    return out
