"""The ranking methods a ``RerankQuery`` may name: the parameters each takes, how it ranks, what it costs.

:data:`METHODS` is keyed by the symbols of the ``RerankMethod`` enum in
``schemas/RerankQuery.avsc``, the public list of methods (a test keeps the two
equal); the CLI and the tests take the names from here. Each method ranks one
query against one matrix of unit rows with :mod:`streams.rerank`, on the threads
the caller's settings give it; :func:`rank_subjects` turns ranked rows into
ranked subjects (a subject with several templates is one candidate).
k-reciprocal re-ranking of a held gallery goes through the gallery's neighbour
graph (:mod:`streams.neighbour_graph`) when the query's k1 fits it: O(G x d)
per query instead of O(G^2 x d). Cosine ranking of a held gallery whose
approximate index is ready (:mod:`streams.ann_index`) takes the index's
candidates, re-scored exactly, instead of scanning every row: the ranking and
the decision's similarities both come from those candidates.
"""

from __future__ import annotations

import asyncio
from collections.abc import Callable, Mapping, Sequence
from dataclasses import dataclass
from functools import partial
from typing import TYPE_CHECKING, Any

import numpy as np

from . import ann_index, neighbour_graph, rerank
from .identity.subjects import SubjectScores, codes_of
from .rows import Rows

if TYPE_CHECKING:
    from .gallery import Gallery

# About 0.1 ms of kernel time on one core: below it a hop to a thread and back costs more than the work.
INLINE_MAX_WORK = 1 << 20
Ranking = tuple[np.ndarray, np.ndarray]  # (row indices, scores), best first, one query


@dataclass(frozen=True)
class Method:
    """One ranking method: the parameters a query may set (name -> int or float), how it ranks, what it costs."""

    params: Mapping[str, type]
    rank: Callable[..., Ranking]  # (query, gallery rows, k, *, threads, **arguments); rows read densely by np.asarray
    work: Callable[[int, int], int]  # (gallery rows, dimension) -> multiply-adds, roughly
    # Over a held gallery's neighbour graph instead, when the method has such a path and the query fits the graph:
    graph: Callable[..., Ranking] | None = None  # (query, gallery, k, *, threads, graph_k1, **arguments)
    graph_work: Callable[[int, int], int] | None = None
    # Through a held gallery's approximate index instead, once it is ready: every candidate, exactly scored.
    index: Callable[..., Ranking] | None = None  # (query, gallery, k)
    index_work: Callable[[int, int], int] | None = None

    def on_index(self, candidates: Candidates) -> bool:
        """Whether this query is ranked through its gallery's approximate index (else over every row)."""
        return self.index is not None and candidates.gallery is not None and candidates.gallery.index_ready

    def on_graph(self, candidates: Candidates, arguments: Mapping[str, Any]) -> bool:
        """Whether this query is ranked over its gallery's neighbour graph (else over the rows, densely)."""
        if self.graph is None or candidates.gallery is None:
            return False
        k1 = arguments.get("k1", neighbour_graph.DEFAULT_K1)
        return neighbour_graph.answers(candidates.graph_k1, k1, arguments.get("k2", neighbour_graph.DEFAULT_K2))

    def cost(self, candidates: Candidates, arguments: Mapping[str, Any]) -> int:
        """Multiply-adds of this query, roughly; a graph's one-off build belongs to its gallery, not to a query."""
        if self.index_work is not None and self.on_index(candidates):
            work = self.index_work
        elif self.graph_work is not None and self.on_graph(candidates, arguments):
            work = self.graph_work
        else:
            work = self.work
        return work(*candidates.rows.shape)

    def builds_graph(self, candidates: Candidates, arguments: Mapping[str, Any]) -> bool:
        """Whether ranking this query first builds its gallery's neighbour graph (O(G^2 d))."""
        gallery = candidates.gallery
        return self.on_graph(candidates, arguments) and gallery.neighbour_graph.k1_max != candidates.graph_k1

    def ranked(
        self, query: np.ndarray, candidates: Candidates, k: int, *, threads: int, indexed: bool = False,
        **arguments: Any,
    ) -> Ranking:
        """The best ``k`` rows, over the gallery's neighbour graph where :meth:`on_graph`; ``indexed`` (what
        :meth:`on_index` said): every candidate of the gallery's index instead, at least ``k``."""
        if indexed:
            return self.index(query, candidates.gallery, k)
        if self.graph is not None and self.on_graph(candidates, arguments):
            graph_k1 = candidates.graph_k1
            return self.graph(query, candidates.gallery, k, threads=threads, graph_k1=graph_k1, **arguments)
        return self.rank(query, candidates.rows, k, threads=threads, **arguments)

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


def _cosine(query: np.ndarray, gallery: Rows, k: int, **arguments: Any) -> Ranking:
    indices, scores = gallery.topk(query[None, :], k, **arguments)  # in the rows' own dtype
    return indices[0], scores[0]


def _cosine_index(query: np.ndarray, gallery: Gallery, k: int) -> Ranking:
    return gallery.nearest(query, k)


def _query_expansion(query: np.ndarray, gallery: np.ndarray, k: int, **arguments: Any) -> Ranking:
    indices, scores = rerank.query_expansion(query[None, :], gallery, k, **arguments)
    return indices[0], scores[0]


def _k_reciprocal(query: np.ndarray, gallery: np.ndarray, k: int, **arguments: Any) -> Ranking:
    return _nearest(rerank.k_reciprocal(query[None, :], gallery, **arguments)[0], k)


def _k_reciprocal_graph(
    query: np.ndarray, gallery: Gallery, k: int, *, threads: int, graph_k1: int, **arguments: Any
) -> Ranking:
    """Over the gallery's neighbour graph, built (O(G^2 d), on every thread given) by the first query to need it."""
    graph, matrix = gallery.neighbour_graph, gallery.matrix
    if graph.k1_max != graph_k1:
        graph.build(matrix, graph_k1, threads=threads)
    return _nearest(graph.k_reciprocal(query, matrix, threads=threads, **arguments), k)


def _nearest(distances: np.ndarray, k: int) -> Ranking:
    order = np.argsort(distances, kind="stable")[:k]  # ties keep the lower row first, as cosine_topk does
    return order, 1.0 - distances[order]


METHODS: dict[str, Method] = {
    "cosine": Method(
        {}, _cosine, lambda rows, dim: rows * dim,
        index=_cosine_index, index_work=lambda rows, dim: ann_index.SEARCH_VISITS * dim,
    ),
    "k_reciprocal": Method(
        {"k1": int, "k2": int, "lambda_value": float}, _k_reciprocal, lambda rows, dim: rows * rows * dim,
        graph=_k_reciprocal_graph, graph_work=lambda rows, dim: 2 * rows * dim,  # distances, then each row's lists
    ),
    "query_expansion": Method({"alpha": float, "neighbours": int}, _query_expansion, lambda rows, dim: 2 * rows * dim),
}


@dataclass(frozen=True)
class Candidates:
    """What a query is ranked against: rows, the subject of each row (id and code), and how many rows a subject has."""

    ids: Sequence[str]
    rows: Rows  # (rows, dim) unit rows, float32 or compact
    codes: np.ndarray  # int64 [rows]: equal for the templates of one subject
    code_count: int  # every code is below this
    most_templates: int  # the most rows one subject has
    gallery: Gallery | None = None  # the held gallery the rows are (None for inline candidates)
    graph_k1: int = neighbour_graph.DEFAULT_K1  # the k1 its neighbour graph is built for

    @classmethod
    def held(cls, gallery: Gallery, graph_k1: int = neighbour_graph.DEFAULT_K1) -> Candidates:
        """A held gallery's rows, read in place (nothing copied)."""
        return cls(gallery.ids, gallery.rows, gallery.codes, gallery.code_count, gallery.most_templates,
                   gallery=gallery, graph_k1=graph_k1)

    @classmethod
    def inline(cls, ids: Sequence[str], matrix: np.ndarray) -> Candidates:
        """Inline candidates: a repeated id is several templates of one subject."""
        codes, count = codes_of(ids)
        return cls(ids, Rows.wrap(matrix), codes, count, int(np.bincount(codes).max()) if len(codes) else 0)


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
    whatever their templates. Similarities are each subject's best cosine (:mod:`streams.identity.subjects`):
    over every row, or over the candidates of the gallery's approximate index when the query goes through it.
    """
    rows = len(candidates.ids)
    indexed = method.on_index(candidates)  # once: a background build may install the index meanwhile
    ranked_rows, scores = method.ranked(
        query, candidates, min(rows, top_k * max(candidates.most_templates, 1)), threads=threads, indexed=indexed,
        **arguments,
    )
    if indexed:
        return _by_first_rows(ranked_rows, scores, candidates, top_k)
    similarity = SubjectScores.of(
        candidates.rows.scores(query, threads=threads), candidates.codes, candidates.code_count, one_each=candidates.most_templates == 1
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


def _by_first_rows(ranked_rows: np.ndarray, cosines: np.ndarray, candidates: Candidates, top_k: int) -> SubjectRanking:
    """Subjects of rows ranked by their exact cosine, best first: a subject's first row is its best template, so
    its place, score and similarity are that row's (the index's few hundred candidates: no per-code arrays)."""
    best: list[tuple[str, float]] = []
    seen: set[int] = set()
    for row, cosine in zip(ranked_rows.tolist(), cosines.tolist(), strict=True):
        code = int(candidates.codes[row])
        if code not in seen:
            seen.add(code)
            best.append((candidates.ids[row], float(cosine)))
            if len(best) == max(top_k, 2):
                break
    return SubjectRanking([(subject, cosine, cosine) for subject, cosine in best[:top_k]], best[:2])


async def rank_subjects_off_loop(
    method: Method, query: np.ndarray, candidates: Candidates, top_k: int, arguments: dict[str, Any], threads: int
) -> SubjectRanking:
    """:func:`rank_subjects`, in a thread unless the work (a graph build included) is too small to be worth a hop."""
    rank = partial(rank_subjects, method, query, candidates, top_k, arguments, threads)
    if method.cost(candidates, arguments) <= INLINE_MAX_WORK and not method.builds_graph(candidates, arguments):
        return rank()
    return await asyncio.get_running_loop().run_in_executor(None, rank)
