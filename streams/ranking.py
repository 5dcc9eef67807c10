"""The ranking methods a ``RerankQuery`` may name: the parameters each takes, how it ranks, what it costs.

:data:`METHODS` is keyed by the symbols of the ``RerankMethod`` enum in
``schemas/RerankQuery.avsc``, the public list of methods (a test keeps the two
equal); the CLI and the tests take the names from here. Each method ranks one
query against one matrix of unit rows with :mod:`streams.rerank`, on the threads
the caller's settings give it; :func:`rank_subjects` turns ranked rows into
ranked subjects (a subject with several templates is one candidate).
"""

from __future__ import annotations

import asyncio
from collections.abc import Callable, Mapping, Sequence
from dataclasses import dataclass
from functools import partial
from typing import Any

import numpy as np

from . import rerank
from .identity.subjects import SubjectScores, codes_of

# About 0.1 ms of kernel time on one core: below it a hop to a thread and back costs more than the work.
INLINE_MAX_WORK = 1 << 20
Ranking = tuple[np.ndarray, np.ndarray]  # (row indices, scores), best first, one query


@dataclass(frozen=True)
class Method:
    """One ranking method: the parameters a query may set (name -> int or float), how it ranks, what it costs."""

    params: Mapping[str, type]
    rank: Callable[..., Ranking]  # (query, gallery, k, *, threads, **arguments)
    work: Callable[[int, int], int]  # (gallery rows, dimension) -> multiply-adds, roughly

    def arguments(self, given: Mapping[str, float]) -> dict[str, Any]:
        """The query's params as keyword arguments; unknown names and non-integral counts are bad queries."""
        unknown = sorted(set(given) - set(self.params))
        if unknown:
            raise ValueError(f"unknown parameter(s) {unknown}; this method takes {sorted(self.params)}")
        arguments: dict[str, Any] = {}
        for name, value in given.items():
            if self.params[name] is int and not float(value).is_integer():
                raise ValueError(f"parameter {name} must be an integer, got {value}")
            arguments[name] = self.params[name](value)
        return arguments


def _cosine(query: np.ndarray, gallery: np.ndarray, k: int, **arguments: Any) -> Ranking:
    indices, scores = rerank.cosine_topk(query[None, :], gallery, k, **arguments)
    return indices[0], scores[0]


def _query_expansion(query: np.ndarray, gallery: np.ndarray, k: int, **arguments: Any) -> Ranking:
    indices, scores = rerank.query_expansion(query[None, :], gallery, k, **arguments)
    return indices[0], scores[0]


def _k_reciprocal(query: np.ndarray, gallery: np.ndarray, k: int, **arguments: Any) -> Ranking:
    distances = rerank.k_reciprocal(query[None, :], gallery, **arguments)[0]
    order = np.argsort(distances, kind="stable")[:k]  # ties keep the lower row first, as cosine_topk does
    return order, 1.0 - distances[order]


METHODS: dict[str, Method] = {
    "cosine": Method({}, _cosine, lambda rows, dim: rows * dim),
    "k_reciprocal": Method(
        {"k1": int, "k2": int, "lambda_value": float}, _k_reciprocal, lambda rows, dim: rows * rows * dim
    ),
    "query_expansion": Method({"alpha": float, "neighbours": int}, _query_expansion, lambda rows, dim: 2 * rows * dim),
}


@dataclass(frozen=True)
class Candidates:
    """What a query is ranked against: rows, the subject of each row (id and code), and how many rows a subject has."""

    ids: Sequence[str]
    matrix: np.ndarray  # (rows, dim) float32 unit rows
    codes: np.ndarray  # int64 [rows]: equal for the templates of one subject
    code_count: int  # every code is below this
    most_templates: int  # the most rows one subject has

    @classmethod
    def inline(cls, ids: Sequence[str], matrix: np.ndarray) -> Candidates:
        """Inline candidates: a repeated id is several templates of one subject."""
        codes, count = codes_of(ids)
        return cls(ids, matrix, codes, count, int(np.bincount(codes).max()) if len(codes) else 0)


@dataclass(frozen=True)
class SubjectRanking:
    """Subjects ranked by a method, each once, and the two best by similarity (what the decision reads)."""

    matches: list[tuple[str, float, float]]  # (subject, the method's score, similarity), the method's best first
    leaders: list[tuple[str, float]]  # (subject, similarity), best first, at most two


def rank_subjects(
    method: Method, query: np.ndarray, candidates: Candidates, top_k: int, arguments: dict[str, Any], threads: int
) -> SubjectRanking:
    """Rank ``top_k`` subjects: the method ranks rows, a subject takes the place of its best-ranked template.

    Asking the method for ``top_k`` x (most templates per subject) rows finds ``top_k`` distinct subjects
    whatever their templates. Similarities are each subject's best cosine (:mod:`streams.identity.subjects`).
    """
    rows = len(candidates.ids)
    ranked_rows, scores = method.rank(
        query, candidates.matrix, min(rows, top_k * max(candidates.most_templates, 1)), threads=threads, **arguments
    )
    similarity = SubjectScores.of(
        candidates.matrix @ query, candidates.codes, candidates.code_count, one_each=candidates.most_templates == 1
    )
    matches: list[tuple[str, float, float]] = []
    seen: set[int] = set()
    for row, score in zip(ranked_rows.tolist(), scores.tolist(), strict=True):
        code = int(candidates.codes[row])
        if code not in seen and len(matches) < top_k:
            seen.add(code)
            matches.append((candidates.ids[row], float(score), float(similarity.best[code])))
    leaders = [(candidates.ids[int(similarity.row[c])], float(similarity.best[c])) for c in similarity.top(2)]
    return SubjectRanking(matches, leaders)


async def rank_subjects_off_loop(
    method: Method, query: np.ndarray, candidates: Candidates, top_k: int, arguments: dict[str, Any], threads: int
) -> SubjectRanking:
    """:func:`rank_subjects`, in a thread unless the work is too small to be worth the hop."""
    rank = partial(rank_subjects, method, query, candidates, top_k, arguments, threads)
    if method.work(*candidates.matrix.shape) <= INLINE_MAX_WORK:
        return rank()
    return await asyncio.get_running_loop().run_in_executor(None, rank)
