"""The open-set answer to "is this anyone?": MATCH, UNKNOWN or AMBIGUOUS, on the per-subject similarity scale.

A ranked list always has a first entry, even for a stranger; the decision is
what a user acts on. With ``best`` the best subject's similarity and
``second`` that of the best *other* subject:

* UNKNOWN when ``best < threshold``;
* AMBIGUOUS when ``second >= threshold`` too and ``best - second < margin``;
* MATCH otherwise.

The decision is always taken on cosine similarity (each subject's best
template, :mod:`.subjects`), whatever method ordered the list: k-reciprocal
distances and expanded-query scores are not on the scale of the family's
same-person threshold, the query's own cosine to a subject is.

The threshold is the query's ``match_threshold``, else its gallery's, else
the same-person threshold of the embedder family that made the embeddings
(:func:`match_threshold`).
"""

from __future__ import annotations

import enum
from collections.abc import Mapping
from dataclasses import dataclass
from typing import Any

from ..models.families import SFACE, Family

#: Embedder families by the name records carry (``ModelIdentity.embedder``).
EMBEDDERS: dict[str, Family] = {SFACE.identity: SFACE}


class Decision(str, enum.Enum):
    MATCH = "MATCH"
    UNKNOWN = "UNKNOWN"
    AMBIGUOUS = "AMBIGUOUS"


@dataclass(frozen=True)
class Verdict:
    """A decision, the subject it is about, its similarity and the margin to the best other subject."""

    decision: Decision
    subject: str | None
    score: float | None
    margin: float | None
    threshold: float

    def record(self) -> dict[str, Any]:
        """The decision fields of a ``RerankResult``."""
        return {
            "decision": self.decision.value,
            "subject_id": self.subject,
            "best_score": self.score,
            "margin": self.margin,
            "match_threshold": self.threshold,
        }


def decide(ranked: list[tuple[str, float]], threshold: float, margin: float) -> Verdict:
    """The verdict on subjects ranked by similarity, best first (only the first two matter)."""
    if not ranked:
        return Verdict(Decision.UNKNOWN, None, None, None, threshold)
    subject, best = ranked[0]
    second = ranked[1][1] if len(ranked) > 1 else None
    gap = None if second is None else best - second
    if best < threshold:
        decision = Decision.UNKNOWN
    elif second is not None and second >= threshold and gap < margin:
        decision = Decision.AMBIGUOUS
    else:
        decision = Decision.MATCH
    return Verdict(decision, subject, best, gap, threshold)


def match_threshold(query: float | None, gallery: float | None, model: Mapping[str, Any] | None) -> float:
    """The threshold that applies: the query's, else the gallery's, else the embedder family's (SFace when unnamed)."""
    if query is not None:
        return query
    if gallery is not None:
        return gallery
    family = EMBEDDERS.get(model["embedder"]) if model is not None else None
    return (family or SFACE).same_person
