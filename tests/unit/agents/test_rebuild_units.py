"""A rebuild normalises stored embeddings in blocks, with exactly the results and refusals of one at a time."""

from __future__ import annotations

import numpy as np

from streams.agents import rerank
from streams.vectors import unit_vector


def test_blocks_give_what_one_at_a_time_gives_and_none_where_it_refuses():
    rng = np.random.default_rng(2)
    good = [list(map(float, rng.standard_normal(8))) for _ in range(9)]
    embeddings = [*good[:5], [0.0] * 8, good[5], [float("nan")] * 8, [1.0, 2.0], *good[6:]]
    units = [u for first in range(0, len(embeddings), 4) for u in rerank.unit_embeddings(embeddings[first : first + 4])]
    assert len(units) == len(embeddings)
    assert all(u is not None for u in rerank.unit_embeddings(good))
    assert [i for i, u in enumerate(units) if u is None] == [5, 7]
    for embedding, unit in zip(embeddings, units, strict=True):
        if unit is not None:
            np.testing.assert_array_equal(unit, unit_vector(embedding))
