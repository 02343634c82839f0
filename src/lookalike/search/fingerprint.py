"""The fingerprint stage (with `MinutiaeSettings.enabled`): the CNN's best images are compared
with the query by a conventional minutiae matcher (NIST Bozorth3), which re-ranks them.

The learned features find a short list fast, over any number of prints; a matcher comparing
every pair would take hours a query at a million. The short list is ranked by the matcher's
score above every other image, ties kept in the CNN's order; a score of at least
`match_score` makes a match.
"""

from __future__ import annotations

from collections.abc import Callable

import numpy as np

from lookalike.features.minutiae import Minutiae, match
from lookalike.search.query import top_rows
from lookalike.settings import MinutiaeSettings


def check_prints(
    query: Minutiae,
    final: np.ndarray,
    stored: Callable[[int], Minutiae | None],
    settings: MinutiaeSettings,
    leave_out: np.ndarray | None = None,
) -> dict[int, float]:
    """The matcher's score against `query` of the `settings.verify` best rows of `final: (n,)`
    (the first stage's scores), leaving out the `leave_out` rows. `stored(row)` gives a row's
    minutiae (None: none stored, and the row is not checked)."""
    scores = {}
    for row in top_rows(final, settings.verify, leave_out):
        minutiae = stored(int(row))
        if minutiae is not None:
            scores[int(row)] = match(query, minutiae, settings.matcher).score
    return scores


def ranked_by_prints(final: np.ndarray, checked: dict[int, float]) -> np.ndarray:
    """`final: (n,)` scores with the `checked` rows lifted above all others, in the order of
    their matcher scores, ties in their order in `final`. A checked row scores one more than
    the best other row plus its matcher score plus a fraction below one half from `final`."""
    if not checked or not len(final):
        return final
    out = final.astype(np.float64, copy=True)
    finite = final[np.isfinite(final)]
    low, high = (float(finite.min()), float(finite.max())) if len(finite) else (0.0, 0.0)
    span = high - low or 1.0
    for row, value in checked.items():
        within = (float(final[row]) - low) / span if np.isfinite(final[row]) else 0.0
        out[row] = high + 1.0 + value + 0.49 * within
    return out


def print_matches(checked: dict[int, float], settings: MinutiaeSettings) -> np.ndarray:
    """The rows whose matcher score makes them a match, `(m,)` int64."""
    return np.array(
        sorted(r for r, value in checked.items() if value >= settings.match_score), np.int64
    )
