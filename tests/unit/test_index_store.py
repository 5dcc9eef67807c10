"""Saved gallery indexes: taken up again after a rebuild, brought to the rebuilt rows, refused when damaged."""

from __future__ import annotations

import numpy as np
import pytest

from perf.bench_rerank import clustered
from streams import index_store, metrics
from streams.ann_index import new_index
from streams.gallery import Galleries, Gallery

D = 32


def keys(names) -> list[tuple[str, str]]:
    return [(name, "") for name in names]


def saved(tmp_path, rows: np.ndarray) -> Galleries:
    """Galleries holding gallery ``g`` of ``rows`` (s0, s1, ...), its index built and saved, then cleared."""
    galleries = Galleries(index_min=100, index_dir=tmp_path)
    galleries.extend("g", keys(f"s{i}" for i in range(len(rows))), rows)
    gallery = galleries.get("g")
    assert gallery.index.wait(60) and gallery.save_index()
    galleries.clear()
    return galleries


def builds() -> float:
    return metrics.REGISTRY.get_sample_value("facestream_gallery_index_build_seconds_count") or 0.0


def assert_index_is_the_rows(gallery: Gallery) -> None:
    """Once its thread is idle the index holds every live template and each row, as a query, finds itself (or a
    row equal to it)."""
    assert gallery.index.wait(60) and len(gallery.index) == len(gallery)
    matrix = gallery.matrix
    best = [gallery.nearest(matrix[row], 1)[0][0] for row in range(len(gallery))]
    assert np.mean(np.all(matrix[best] == matrix, axis=1)) >= 0.97  # HNSW leaves the odd node unreachable


def test_a_saved_index_is_brought_to_the_rebuilt_rows(tmp_path):
    """Rows deleted, overwritten, added and reordered since the save: the restored graph's labels follow the
    rows, and what it lacks (the new rows and the changed one) is added to it: no build from scratch."""
    x = clustered(seed=3, n=3_000, d=D, clusters=50)
    galleries = saved(tmp_path, x[:2_500])
    names = [f"s{i}" for i in range(2_499, 99, -1)] + [f"new{i}" for i in range(300)]  # s0..s99 gone, reversed
    rows = np.concatenate([x[100:2_500][::-1], x[2_500:2_800]])
    rows[7] = x[2_900]  # s2492 overwritten
    path = next(tmp_path.glob("*.npz")).with_suffix("")
    lacking = index_store.restore(path, new_index(D, 64), np.arange(len(rows)), rows)
    assert lacking.tolist() == [7, *range(2_400, 2_700)]
    built = builds()
    gallery = galleries.extend("g", keys(names), rows)
    assert_index_is_the_rows(gallery)
    found, scores = gallery.nearest(x[2_900], 1)
    assert gallery.ids[found[0]] == "s2492" and scores[0] > 0.999
    assert gallery.nearest(x[0], 1)[1][0] < 0.999  # a deleted row is not found
    assert builds() == built


def test_equal_rows_pair_up_one_to_one(tmp_path):
    x = clustered(seed=4, n=400, d=D, clusters=20)
    rows = np.concatenate([x[:300], np.repeat(x[300:301], 5, axis=0)])  # five templates of one embedding
    galleries = saved(tmp_path, rows)
    path = next(tmp_path.glob("*.npz")).with_suffix("")
    assert len(index_store.restore(path, new_index(D, 64), np.arange(303), rows[2:])) == 0  # two of five gone
    gallery = galleries.extend("g", keys(f"t{i}" for i in range(303)), rows[2:])
    assert_index_is_the_rows(gallery)


@pytest.mark.parametrize("damage", ["truncated", "other file", "metadata gone", "other dimension"])
def test_a_damaged_or_foreign_save_is_refused_and_the_index_built_anew(tmp_path, damage):
    x = clustered(seed=5, n=500, d=D, clusters=20)
    galleries = saved(tmp_path, x)
    graph, meta = (next(tmp_path.glob(f"*.{suffix}")) for suffix in ("usearch", "npz"))
    if damage == "truncated":
        graph.write_bytes(graph.read_bytes()[: graph.stat().st_size // 2])
    elif damage == "other file":
        graph.write_bytes(bytes(graph.stat().st_size))
    elif damage == "metadata gone":
        meta.unlink()
    if damage == "other dimension":
        rows = clustered(seed=5, n=500, d=2 * D, clusters=20)
        assert index_store.restore(graph.with_suffix(""), new_index(2 * D, 64), np.arange(500), rows) is None
        return
    assert index_store.restore(graph.with_suffix(""), new_index(D, 64), np.arange(500), x) is None
    built = builds()
    gallery = galleries.extend("g", keys(f"s{i}" for i in range(500)), x)
    assert_index_is_the_rows(gallery)
    assert builds() == built + 1  # built from the rows instead


def test_the_save_goes_with_the_gallery_or_its_index(tmp_path):
    x = clustered(seed=6, n=300, d=D, clusters=20)
    galleries = saved(tmp_path, x[:200])
    galleries.extend("g", keys(f"s{i}" for i in range(200)), x[:200])
    for i in range(200):
        galleries.delete("g", f"s{i}")
    assert galleries.get("g") is None and not list(tmp_path.iterdir())  # the gallery is gone: so is its save
    galleries = saved(tmp_path, x[:200])
    gallery = galleries.extend("g", keys(f"s{i}" for i in range(200)), x[:200])
    for i in range(151):
        gallery.delete(f"s{i}")
    assert gallery.index is None and not list(tmp_path.iterdir())  # below half of index_min: dropped


def test_row_digests_tell_rows_apart_in_every_dtype():
    rng = np.random.default_rng(7)
    for rows in (rng.standard_normal((200, 128)).astype(np.float32), rng.integers(-127, 128, (200, 33), np.int8),
                 rng.standard_normal((200, 128)).astype(np.float16)):
        digests = index_store.row_digests(rows)
        assert len(np.unique(digests)) == len(rows)
        assert np.array_equal(digests, index_store.row_digests(rows.copy()))
        changed = rows.copy()
        changed.view(np.uint8)[:, 3] ^= 1  # one bit of each row
        assert not np.any(index_store.row_digests(changed) == digests)
