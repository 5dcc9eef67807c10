"""Saved galleries: rows paired with changelog values by origin, each value standing for one row."""

from __future__ import annotations

import numpy as np

from streams import gallery_store
from streams.gallery import Galleries


def _galleries(values: list[bytes]) -> Galleries:
    galleries, rng = Galleries(), np.random.default_rng(1)
    for i, value in enumerate(values):
        row = rng.standard_normal(4).astype(np.float32)
        galleries.upsert("g", f"s{i}", row / np.linalg.norm(row), origin=gallery_store.origin_of(value))
    return galleries


def test_origins_follow_their_rows_and_rows_of_no_origin_are_not_saved():
    values = [b"a", b"b", b"c", b"d"]
    galleries = _galleries(values)
    galleries.delete("g", "s0")  # s3's row moves into its place
    galleries.upsert("g", "x", np.array([1.0, 0, 0, 0], np.float32))  # built from nothing named
    (part,) = gallery_store.held(galleries)
    assert part.keys == [("s3", ""), ("s1", ""), ("s2", "")]
    assert part.origins.tolist() == [gallery_store.origin_of(v) for v in (b"d", b"b", b"c")]
    np.testing.assert_array_equal(part.rows, galleries.get("g").rows.stored[:3])


def test_a_value_stands_for_one_row_and_rows_whose_value_is_gone_are_left_out():
    (part,) = gallery_store.held(_galleries([b"a", b"b", b"c"]))
    origins = [gallery_store.origin_of(value) for value in (b"c", b"new", b"a", b"a")]
    kept, left = gallery_store.paired([part], origins)
    assert left == [1, 3]  # the second "a" has no row of its own: decoded
    (taken,) = kept
    assert taken.keys == [("s0", ""), ("s2", "")]
    np.testing.assert_array_equal(taken.rows, part.rows[[0, 2]])
    assert gallery_store.paired([part], [gallery_store.origin_of(b"z")]) == ([], [0])
