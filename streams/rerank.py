"""Ranking embeddings: cosine top-k, k-reciprocal re-ranking, alpha query expansion.

A thin layer over the compiled ``streams._rerank`` (C++17, see ``ext/``). It turns
whatever array-like it is given into float32 C-contiguous matrices (without a copy
when they already are), so the extension reads them in place with the GIL released,
and it answers every bad argument with a ``ValueError`` that says what is wrong.

Threads: ``threads=None`` means ``Settings.rerank_threads`` (``FACESTREAM_RERANK_THREADS``,
read once per process); 0 means one per core.
"""

from __future__ import annotations

import functools
import numbers
from typing import Any

import numpy as np

from streams import _rerank
from streams.config import Settings

__all__ = ["cosine_topk", "k_reciprocal", "query_expansion", "default_threads"]


@functools.cache
def default_threads() -> int:
    """The re-ranker's thread count from the settings, read once."""
    return Settings.from_env().rerank_threads


def cosine_topk(queries: Any, gallery: Any, k: int, *, threads: int | None = None) -> tuple[np.ndarray, np.ndarray]:
    """The ``k`` gallery rows most similar to each query.

    Returns ``(indices int64 (Q, k), scores float32 (Q, k))`` by descending cosine
    similarity, ties broken by the lower gallery index; ``k > G`` means ``G``.
    """
    q, g = _matrix(queries, "queries"), _matrix(gallery, "gallery")
    return _rerank.cosine_topk(q, g, _count(k, "k"), threads=_threads(threads))


def k_reciprocal(
    queries: Any,
    gallery: Any,
    k1: int = 20,
    k2: int = 6,
    lambda_value: float = 0.3,
    *,
    threads: int | None = None,
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
        q, g, _count(k1, "k1"), _count(k2, "k2"), _real(lambda_value, "lambda_value"), threads=_threads(threads)
    )


def query_expansion(
    queries: Any,
    gallery: Any,
    k: int,
    alpha: float = 3.0,
    *,
    neighbours: int = 10,
    threads: int | None = None,
) -> tuple[np.ndarray, np.ndarray]:
    """Alpha query expansion (Radenovic et al., TPAMI 2018), then :func:`cosine_topk`.

    Each query becomes the unit-length sum of itself and its ``neighbours`` most
    similar gallery rows (unit length), each weighted by ``similarity ** alpha``
    (rows with similarity <= 0 add nothing); the expanded queries are ranked by cosine.
    """
    q, g = _matrix(queries, "queries"), _matrix(gallery, "gallery")
    return _rerank.query_expansion(
        q, g, _count(k, "k"), _real(alpha, "alpha"), _count(neighbours, "neighbours"), threads=_threads(threads)
    )


def _matrix(value: Any, name: str) -> np.ndarray:
    """A float32 C-contiguous view of ``value``, copied only when it is not one already."""
    try:
        array = np.asarray(value)
    except (TypeError, ValueError) as exc:
        raise ValueError(f"{name} is not an array of numbers: {exc}") from None
    if array.dtype.kind not in "fiu":
        raise ValueError(f"{name} must hold real numbers, got dtype {array.dtype}")
    if array.ndim != 2:
        raise ValueError(f"{name} must be a 2-D array (rows x dimensions), got shape {array.shape}")
    with np.errstate(over="ignore"):  # values beyond float32 become inf, which the extension rejects
        return np.ascontiguousarray(array, dtype=np.float32)


def _count(value: Any, name: str) -> int:
    if isinstance(value, bool) or not isinstance(value, numbers.Integral):
        raise ValueError(f"{name} must be an integer, got {value!r}")
    if not 1 <= value <= np.iinfo(np.int64).max:
        raise ValueError(f"{name} must be at least 1, got {value}")
    return int(value)


def _real(value: Any, name: str) -> float:
    if isinstance(value, bool) or not isinstance(value, numbers.Real):
        raise ValueError(f"{name} must be a real number, got {value!r}")
    return float(value)


MAX_THREADS = 1024


def _threads(threads: int | None) -> int:
    if threads is None:
        threads = default_threads()
    if isinstance(threads, bool) or not isinstance(threads, numbers.Integral) or not 0 <= threads <= MAX_THREADS:
        raise ValueError(f"threads must be an integer in [0, {MAX_THREADS}] (0: one per core), got {threads!r}")
    return int(threads)
