"""How well a threshold separates people on your own photos: genuine and impostor scores, error rates.

Every pair of photos of one person gives a *genuine* score, every pair of two
people an *impostor* score (cosine of their embeddings, the decision's scale).
At threshold ``t`` the false-accept rate is the share of impostor scores at or
above ``t`` (a stranger taken for someone), the false-reject rate the share of
genuine scores below it (a person not recognised): the rule of
:func:`streams.identity.decide`.
"""

from __future__ import annotations

from collections.abc import Sequence
from dataclasses import dataclass
from itertools import combinations

import numpy as np


@dataclass(frozen=True)
class PairScores:
    genuine: np.ndarray  # float64 [pairs of one person]
    impostor: np.ndarray  # float64 [pairs of two people]

    @classmethod
    def of(cls, people: Sequence[str], embeddings: np.ndarray) -> PairScores:
        """Scores of every pair of unit ``embeddings``, ``people[i]`` naming the person of row ``i``."""
        similarity = embeddings @ embeddings.T
        genuine, impostor = [], []
        for i, j in combinations(range(len(people)), 2):
            (genuine if people[i] == people[j] else impostor).append(float(similarity[i, j]))
        return cls(np.array(genuine), np.array(impostor))

    def false_accept(self, threshold: float) -> float:
        return float(np.mean(self.impostor >= threshold)) if len(self.impostor) else float("nan")

    def false_reject(self, threshold: float) -> float:
        return float(np.mean(self.genuine < threshold)) if len(self.genuine) else float("nan")

    def threshold_for(self, target_far: float) -> float:
        """The lowest threshold whose false-accept rate is at most ``target_far`` (ties count as accepted)."""
        if not len(self.impostor):
            return float("nan")
        ranked = np.sort(self.impostor)[::-1]
        allowed = int(np.floor(target_far * len(ranked) + 1e-9))  # impostor pairs that may be accepted
        if allowed >= len(ranked):
            return float(ranked[-1])
        return float(np.nextafter(ranked[allowed], np.inf))  # just above the first impostor that must be refused

    def curve(self) -> tuple[np.ndarray, np.ndarray, np.ndarray]:
        """(thresholds, false-accept rates, false-reject rates) at every score seen: the DET curve."""
        thresholds = np.unique(np.concatenate([self.genuine, self.impostor, [-1.0, 1.0 + 1e-6]]))
        far = np.array([self.false_accept(t) for t in thresholds])
        frr = np.array([self.false_reject(t) for t in thresholds])
        return thresholds, far, frr


def summary(scores: np.ndarray) -> dict[str, float]:
    """Count, mean, spread and quantiles of one score distribution."""
    if not len(scores):
        return {"count": 0}
    quantiles = np.quantile(scores, [0.0, 0.05, 0.5, 0.95, 1.0])
    return {
        "count": len(scores),
        "mean": float(scores.mean()),
        "std": float(scores.std()),
        **dict(zip(("min", "p5", "median", "p95", "max"), map(float, quantiles), strict=True)),
    }
