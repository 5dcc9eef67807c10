"""Plain numpy versions of the re-ranker's methods, the yardstick of its tests and benchmark.

Written from the definitions, for clarity over speed, in float64 throughout:
- cosine top-k: descending cosine similarity, ties by the lower gallery index;
- k-reciprocal re-ranking as in Zhong et al. (CVPR 2017) and their Python code that
  takes the q-g, q-q and g-g distance matrices: squared Euclidean distances over
  all query and gallery points, each row divided by its maximum, k-reciprocal sets
  over k1 + 1 neighbours expanded with round(k1 / 2) sets by the 2/3 rule, exp(-d)
  weights normalised per row, local query expansion over the k2 nearest, Jaccard
  distance, final = (1 - lambda) * jaccard + lambda * distance;
- alpha query expansion: the query plus its nearest gallery rows weighted by
  similarity ** alpha (positive similarities only), then cosine ranking.
"""

from __future__ import annotations

import numpy as np


def unit_rows(x: np.ndarray) -> np.ndarray:
    x = np.asarray(x, dtype=np.float64)
    return x / np.linalg.norm(x, axis=1, keepdims=True)


def cosine_scores(queries: np.ndarray, gallery: np.ndarray) -> np.ndarray:
    """(Q, G) float64 similarities; an elementwise sum per pair, so equal rows score exactly equal."""
    q, g = unit_rows(queries), unit_rows(gallery)
    return np.stack([(g * row).sum(axis=1) for row in q])


def cosine_topk(queries: np.ndarray, gallery: np.ndarray, k: int) -> tuple[np.ndarray, np.ndarray]:
    scores = cosine_scores(queries, gallery)
    order = np.argsort(-scores, axis=1, kind="stable")[:, :k]
    return order, np.take_along_axis(scores, order, axis=1)


def query_expansion(
    queries: np.ndarray, gallery: np.ndarray, k: int, alpha: float = 3.0, neighbours: int = 10
) -> tuple[np.ndarray, np.ndarray]:
    near, sim = cosine_topk(queries, gallery, neighbours)
    weights = np.where(sim > 0, np.maximum(sim, 0) ** alpha, 0.0)
    expanded = unit_rows(queries) + np.einsum("qn,qnd->qd", weights, unit_rows(gallery)[near])
    return cosine_topk(expanded, gallery, k)


def _reciprocal(rank: np.ndarray, i: int, k: int) -> np.ndarray:
    """Those of the k + 1 nearest of i that have i among their own k + 1 nearest."""
    forward = rank[i, : k + 1]
    backward = rank[forward, : k + 1]
    return forward[(backward == i).any(axis=1)]


def k_reciprocal(
    queries: np.ndarray, gallery: np.ndarray, k1: int = 20, k2: int = 6, lambda_value: float = 0.3
) -> np.ndarray:
    x = np.concatenate([queries, gallery]).astype(np.float64)
    nq, n = len(queries), len(x)
    sq = (x * x).sum(axis=1)
    dist = np.maximum(sq[:, None] + sq[None, :] - 2.0 * (x @ x.T), 0.0)
    np.fill_diagonal(dist, 0.0)
    dist /= dist.max(axis=1, keepdims=True)
    rank = np.argsort(dist, axis=1, kind="stable")
    half = int(np.around(k1 / 2.0))

    v = np.zeros((n, n))
    for i in range(n):
        base = _reciprocal(rank, i, k1)
        expansion = base
        for candidate in base:
            own = _reciprocal(rank, candidate, half)
            if len(np.intersect1d(own, base)) > 2.0 / 3 * len(own):
                expansion = np.append(expansion, own)
        expansion = np.unique(expansion)
        weight = np.exp(-dist[i, expansion])
        v[i, expansion] = weight / weight.sum()
    if k2 != 1:
        v = np.stack([v[rank[i, :k2]].mean(axis=0) for i in range(n)])

    overlap = np.stack([np.minimum(v[i], v[nq:]).sum(axis=1) for i in range(nq)])
    jaccard = 1.0 - overlap / (2.0 - overlap)
    return (1.0 - lambda_value) * jaccard + lambda_value * dist[:nq, nq:]
