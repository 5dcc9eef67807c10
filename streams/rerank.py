"""Ranking embeddings: cosine top-k, k-reciprocal re-ranking, alpha query expansion.

A thin layer over the compiled ``streams._rerank`` (C++17, see ``ext/``), which
checks every value it is given (shapes, NaN and inf, counts, ranges, threads) and
raises ``ValueError`` saying what is wrong. What this layer adds is what only
Python sees: array-likes become float32 C-contiguous matrices (without a copy when
they already are), so the extension reads them in place with the GIL released, and
an argument that is not a number at all is a ``ValueError`` here rather than a
``TypeError`` from nanobind.

Threads: ``threads=0`` (the default) means one per core; the extension decides how
many of them a step uses. A worker passes its ``Settings.rerank_threads``.
"""

from __future__ import annotations

import numbers
from typing import Any

import numpy as np

from streams import _rerank

__all__ = ["cosine_topk", "k_reciprocal", "query_expansion"]

INT64 = np.iinfo(np.int64)


def cosine_topk(queries: Any, gallery: Any, k: int, *, threads: int = 0) -> tuple[np.ndarray, np.ndarray]:
    """The ``k`` gallery rows most similar to each query.

    Returns ``(indices int64 (Q, k), scores float32 (Q, k))`` by descending cosine
    similarity, ties broken by the lower gallery index; ``k > G`` means ``G``.
    """
    q, g = _matrix(queries, "queries"), _matrix(gallery, "gallery")
    return _rerank.cosine_topk(q, g, _integer(k, "k"), threads=_integer(threads, "threads"))


def k_reciprocal(
    queries: Any,
    gallery: Any,
    k1: int = 20,
    k2: int = 6,
    lambda_value: float = 0.3,
    *,
    threads: int = 0,
) -> np.ndarray:
    """k-reciprocal re-ranked distances (Zhong et al., CVPR 2017), float32 (Q, G); smaller is closer.

    Over all query and gallery rows: squared Euclidean distances, each row divided by
    its maximum; k-reciprocal sets over the ``k1`` nearest, expanded by the 2/3 rule
    with ``round(k1 / 2)``; weights ``exp(-d)`` normalised per row; local query
    expansion over the ``k2`` nearest; Jaccard distance; the result is
    ``(1 - lambda_value) * jaccard + lambda_value * distance``. ``k1 + 1`` or ``k2``
    beyond ``Q + G`` mean all rows. Cost grows as ``(Q + G)^2 * d``: meant for
    galleries of thousands, not millions.
    """
    q, g = _matrix(queries, "queries"), _matrix(gallery, "gallery")
    return _rerank.k_reciprocal(
        q, g, _integer(k1, "k1"), _integer(k2, "k2"), _real(lambda_value, "lambda_value"),
        threads=_integer(threads, "threads"),
    )


def query_expansion(
    queries: Any,
    gallery: Any,
    k: int,
    alpha: float = 3.0,
    *,
    neighbours: int = 10,
    threads: int = 0,
) -> tuple[np.ndarray, np.ndarray]:
    """Alpha query expansion (Radenovic et al., TPAMI 2018), then :func:`cosine_topk`.

    Each query becomes the unit-length sum of itself and its ``neighbours`` most
    similar gallery rows (unit length), each weighted by ``similarity ** alpha``
    (rows with similarity <= 0 add nothing); the expanded queries are ranked by cosine.
    """
    q, g = _matrix(queries, "queries"), _matrix(gallery, "gallery")
    return _rerank.query_expansion(
        q, g, _integer(k, "k"), _real(alpha, "alpha"), _integer(neighbours, "neighbours"),
        threads=_integer(threads, "threads"),
    )


def _matrix(value: Any, name: str) -> np.ndarray:
    """A float32 C-contiguous view of ``value``, copied only when it is not one already; the extension checks its shape."""
    try:
        array = np.asarray(value)
    except (TypeError, ValueError) as exc:
        raise ValueError(f"{name} is not an array of numbers: {exc}") from None
    if array.dtype.kind not in "fiu":
        raise ValueError(f"{name} must hold real numbers, got dtype {array.dtype}")
    with np.errstate(over="ignore"):  # values beyond float32 become inf, which the extension rejects
        return np.ascontiguousarray(array, dtype=np.float32)


def _integer(value: Any, name: str) -> int:
    """``value`` as the 64-bit integer the extension takes (it checks the range that makes sense)."""
    if isinstance(value, bool) or not isinstance(value, numbers.Integral) or not INT64.min <= value <= INT64.max:
        raise ValueError(f"{name} must be an integer (64-bit), got {value!r}")
    return int(value)


def _real(value: Any, name: str) -> float:
    if isinstance(value, bool) or not isinstance(value, numbers.Real):
        raise ValueError(f"{name} must be a real number, got {value!r}")
    return float(value)
