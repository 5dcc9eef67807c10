"""One score per subject from the scores of its templates: a subject enrolled with five photos is one candidate.

A subject's similarity is that of its **best** template (the maximum over its
rows): the photo most like the query speaks for the subject, so adding a poor
or old photo never lowers a subject's score, and a subject with one template
scores exactly as before templates existed. Similarities are cosines of unit
vectors, the scale of the embedder family's same-person threshold.
"""

from __future__ import annotations

from collections.abc import Sequence
from dataclasses import dataclass

import numpy as np


@dataclass(frozen=True)
class SubjectScores:
    """``best[code]``: the best similarity of each subject code; ``row[code]``: the row that scored it."""

    best: np.ndarray  # float32 [codes], -inf for codes no row holds
    row: np.ndarray  # int64 [codes], -1 for codes no row holds

    @classmethod
    def of(
        cls, similarities: np.ndarray, codes: np.ndarray, code_count: int, *, one_each: bool = False
    ) -> SubjectScores:
        """Per-subject maxima of row ``similarities`` (rows of subject ``codes[i]``), in O(rows).

        ``one_each``: every subject has one row, so there is no maximum to take (a plain scatter, ten times faster).
        """
        best = np.full(code_count, -np.inf, dtype=np.float32)
        row = np.full(code_count, -1, dtype=np.int64)
        if len(codes) == 0:
            return cls(best, row)
        if one_each:
            best[codes] = similarities
            row[codes] = np.arange(len(codes))
            return cls(best, row)
        np.maximum.at(best, codes, similarities)
        winners = np.flatnonzero(similarities >= best[codes])  # each subject's best row(s); on a tie the last stays
        row[codes[winners]] = winners
        return cls(best, row)

    def top(self, n: int) -> list[int]:
        """Codes of the ``n`` best subjects, best first (ties: the lower code first)."""
        held = np.flatnonzero(self.row >= 0)
        if len(held) == 0:
            return []
        n = min(n, len(held))
        part = held[np.argpartition(-self.best[held], n - 1)[:n]] if n < len(held) else held
        return sorted(part.tolist(), key=lambda c: (-float(self.best[c]), c))


def codes_of(ids: Sequence[str]) -> tuple[np.ndarray, int]:
    """Subject codes of a list of row ids (inline candidates: a repeated id is one subject's templates)."""
    code_of: dict[str, int] = {}
    codes = np.fromiter((code_of.setdefault(i, len(code_of)) for i in ids), dtype=np.int64, count=len(ids))
    return codes, len(code_of)
