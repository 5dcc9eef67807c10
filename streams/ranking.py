"""The ranking methods a ``RerankQuery`` may name: the parameters each takes, how it ranks, what it costs.

:data:`METHODS` is keyed by the symbols of the ``RerankMethod`` enum in
``schemas/RerankQuery.avsc``, the public list of methods (a test keeps the two
equal); the CLI and the tests take the names from here. Each method ranks one
query against one matrix of unit rows with :mod:`streams.rerank`, on the threads
the caller's settings give it.
"""

from __future__ import annotations

import asyncio
from collections.abc import Callable, Mapping
from dataclasses import dataclass
from functools import partial
from typing import Any

import numpy as np

from . import rerank

# About 0.1 ms of kernel time on one core: below it a hop to a thread and back costs more than the work.
INLINE_MAX_WORK = 1 << 20
Ranking = tuple[np.ndarray, np.ndarray]  # (row indices, scores), best first, one query


@dataclass(frozen=True)
class Method:
    """One ranking method: the parameters a query may set (name -> int or float), how it ranks, what it costs."""

    params: Mapping[str, type]
    rank: Callable[..., Ranking]  # (query, gallery, k, *, threads, **arguments)
    work: Callable[[int, int], int]  # (gallery rows, dimension) -> multiply-adds, roughly

    async def run(
        self, query: np.ndarray, gallery: np.ndarray, k: int, arguments: dict[str, Any], threads: int
    ) -> Ranking:
        """Rank; small work inline, since handing it to a thread would cost more than the work itself."""
        rank = partial(self.rank, query, gallery, k, threads=threads, **arguments)
        if self.work(*gallery.shape) <= INLINE_MAX_WORK:
            return rank()
        return await asyncio.get_running_loop().run_in_executor(None, rank)

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
