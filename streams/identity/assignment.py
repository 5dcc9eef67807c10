"""One identity per face: within one photo a subject is given to at most one face.

Two faces of one photo are two people, so the same subject cannot be both.
Each face comes with its candidate subjects and their similarities; among the
pairs at or above the threshold, the assignment that maximises the summed
similarity is taken (Hungarian method, exact; a face may stay unassigned at no
cost). A face that loses its best subject to another face is decided again
over the subjects left to it: its next subject, or UNKNOWN. Faces per photo
are bounded (``FACESTREAM_MAX_FACES``) and candidates by ``top_k``, so the
O(n^3) solve stays small.
"""

from __future__ import annotations

from collections.abc import Sequence
from typing import Any

import numpy as np

from .decision import Verdict, decide


def assign_faces(
    candidates: Sequence[Sequence[tuple[str, float]]], threshold: float, margin: float
) -> list[Verdict]:
    """One verdict per face: ``candidates[f]`` lists face ``f``'s (subject, similarity), any order."""
    subjects = sorted({s for face in candidates for s, score in face if score >= threshold})
    column = {s: j for j, s in enumerate(subjects)}
    gain = np.zeros((len(candidates), len(subjects)))
    for f, face in enumerate(candidates):
        for s, score in face:
            if score >= threshold:
                gain[f, column[s]] = max(gain[f, column[s]], score)
    taken = {f: subjects[j] for f, j in _max_assignment(gain) if gain[f, j] > 0}
    verdicts = []
    for f, face in enumerate(candidates):
        others = {s for g, s in taken.items() if g != f}
        left = sorted(((s, score) for s, score in _best_per_subject(face).items() if s not in others),
                      key=lambda p: -p[1])
        verdicts.append(decide(left, threshold, margin))
    return verdicts


def one_identity_per_face(answers: list[dict[str, Any]], margin: float) -> list[dict[str, Any]]:
    """The RerankResults of one photo's faces (an ``error`` entry for a refused one), their decisions re-taken
    so that no subject is given to two faces."""
    ranked = [i for i, a in enumerate(answers) if "error" not in a]
    if len(ranked) < 2:
        return answers
    threshold = answers[ranked[0]]["match_threshold"]  # one gallery and one query threshold: the same for every face
    candidates = [[(m["id"], m["similarity"]) for m in answers[i]["matches"]] for i in ranked]
    verdicts = assign_faces(candidates, threshold, margin)
    assigned = list(answers)
    for i, verdict in zip(ranked, verdicts, strict=True):
        assigned[i] = {**answers[i], **verdict.record()}
    return assigned


def _best_per_subject(face: Sequence[tuple[str, float]]) -> dict[str, float]:
    best: dict[str, float] = {}
    for s, score in face:
        best[s] = max(score, best.get(s, -np.inf))
    return best


def _max_assignment(gain: np.ndarray) -> list[tuple[int, int]]:
    """(row, column) pairs of a maximum-gain matching of a non-negative matrix (a zero gain means no pair)."""
    rows, cols = gain.shape
    if rows == 0 or cols == 0:
        return []
    n = max(rows, cols)
    cost = np.zeros((n, n))
    cost[:rows, :cols] = -gain  # padded rows and columns cost nothing: faces or subjects left over
    # Hungarian method with potentials (Kuhn-Munkres, O(n^3)); 1-based arrays as in its textbook form.
    u, v = np.zeros(n + 1), np.zeros(n + 1)
    match = np.zeros(n + 1, dtype=int)  # match[column] = row
    for i in range(1, n + 1):
        match[0], j0 = i, 0
        spent = np.full(n + 1, np.inf)
        way = np.zeros(n + 1, dtype=int)
        used = np.zeros(n + 1, dtype=bool)
        while True:
            used[j0] = True
            i0 = match[j0]
            free = ~used[1:]
            reduced = cost[i0 - 1] - u[i0] - v[1:]
            better = free & (reduced < spent[1:])
            spent[1:][better] = reduced[better]
            way[1:][better] = j0
            candidates = np.where(free, spent[1:], np.inf)
            j1 = int(np.argmin(candidates)) + 1
            delta = candidates[j1 - 1]
            u[match[used]] += delta
            v[used] -= delta
            spent[1:][free] -= delta
            j0 = j1
            if match[j0] == 0:
                break
        while j0:
            j1 = way[j0]
            match[j0] = match[j1]
            j0 = j1
    return [(int(match[j]) - 1, j - 1) for j in range(1, n + 1) if match[j] - 1 < rows and j - 1 < cols]
