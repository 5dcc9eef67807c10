"""A gallery's neighbour graph: k-reciprocal re-ranking of one query in O(G x d), not O(G^2 x d).

:func:`streams.rerank.k_reciprocal` ranks queries and gallery jointly from the
dense (Q + G)^2 distance matrix: 0.9 s at ten thousand rows, minutes at a
hundred thousand. Most of that matrix describes the gallery rows among
themselves, which no query changes, so a :class:`NeighbourGraph` keeps it, row
by row: each row's nearest rows (enough for ``k1 + 1`` and a margin), its
largest distance, and which rows keep it among their nearest. A query then
computes its distances to the gallery and works on the neighbourhoods it
touches only; its result is the row the dense call returns for that query alone
(``k_reciprocal(query[None], gallery)``), to float32 rounding.

The graph costs nothing until :meth:`build` (a gallery builds it on its first
k-reciprocal query, O(G^2 x d) on every core); from then on the gallery reports
each row it appends, overwrites or deletes, at O(G x d) each.
"""

from __future__ import annotations

import inspect
from typing import Any

import numpy as np

from streams import _rerank

from .rerank import _integer, _matrix, _real, k_reciprocal

_DEFAULTS = inspect.signature(k_reciprocal).parameters
DEFAULT_K1: int = _DEFAULTS["k1"].default
DEFAULT_K2: int = _DEFAULTS["k2"].default
DEFAULT_LAMBDA: float = _DEFAULTS["lambda_value"].default


def answers(k1_max: int, k1: int, k2: int) -> bool:
    """Whether a graph built for ``k1_max`` ranks a query with these parameters (else: the dense path)."""
    return 1 <= k1 <= k1_max and 1 <= k2 <= k1_max + 1


def margin(k1_max: int) -> int:
    """Neighbours kept beyond ``k1_max + 1``: a row refills (O(G x d)) only once deletes took them all."""
    return max(8, (k1_max + 1) // 2)


class NeighbourGraph:
    """The neighbour graph of one gallery's rows; unbuilt (and free) until a k-reciprocal query needs it."""

    def __init__(self) -> None:
        self._core: Any = None

    @property
    def built(self) -> bool:
        return self._core is not None

    @property
    def k1_max(self) -> int:
        """The largest k1 the graph answers (k2 up to ``k1_max + 1``); 0 while unbuilt."""
        return self._core.k1_max if self._core is not None else 0

    def build(self, matrix: Any, k1_max: int, *, threads: int = 0) -> None:
        """From scratch over the gallery's rows, for queries with ``k1`` up to ``k1_max``."""
        k1_max = _integer(k1_max, "k1_max")
        core = _rerank.NeighbourGraph(k1_max, margin(k1_max))
        core.build(_matrix(matrix, "gallery"), threads=_integer(threads, "threads"))
        self._core = core

    def upserted(self, row: int, matrix: np.ndarray) -> None:
        """Row ``row`` of ``matrix`` (the gallery after the change) was appended or overwritten."""
        self._maintain(self._core.upserted, row, matrix)

    def deleted(self, row: int, matrix: np.ndarray) -> None:
        """Row ``row`` was deleted and the gallery's last row moved into it; ``matrix`` is after the move."""
        self._maintain(self._core.deleted, row, matrix)

    def _maintain(self, change: Any, row: int, matrix: np.ndarray) -> None:
        if self._core is None:
            return
        try:
            change(_matrix(matrix, "gallery"), row)
        except ValueError:
            self._core = None  # a row it cannot take (NaN, say): the next query builds anew, and says so
            raise

    def k_reciprocal(
        self,
        query: Any,
        matrix: Any,
        k1: int = DEFAULT_K1,
        k2: int = DEFAULT_K2,
        lambda_value: float = DEFAULT_LAMBDA,
        *,
        threads: int = 0,
    ) -> np.ndarray:
        """The k-reciprocal distances, float32 (G,), of one query to the gallery ``matrix`` the graph describes."""
        if self._core is None:
            raise ValueError("the neighbour graph is not built")
        q = _matrix(query, "query")
        if q.ndim != 1:
            raise ValueError(f"query must be one vector (1-D), got shape {q.shape}")
        return self._core.k_reciprocal(
            q[None, :], _matrix(matrix, "gallery"), _integer(k1, "k1"), _integer(k2, "k2"),
            _real(lambda_value, "lambda_value"), threads=_integer(threads, "threads"),
        )[0]

    def nearest(self, row: int) -> list[tuple[int, float]]:
        """(row, squared distance) of the neighbours kept for ``row``, nearest first (itself first)."""
        return self._built().nearest(_integer(row, "row"))

    def farthest(self, row: int) -> list[tuple[int, float]]:
        """(row, squared distance) of the farthest rows kept for ``row``, farthest first."""
        return self._built().farthest(_integer(row, "row"))

    def holders(self, row: int) -> list[int]:
        """The rows that keep ``row`` among their nearest (the reverse lists a query walks), unordered."""
        return self._built().holders(_integer(row, "row"))

    def _built(self) -> Any:
        if self._core is None:
            raise ValueError("the neighbour graph is not built")
        return self._core
