"""The neighbour graph: kept exact under a gallery's row changes, and per-query k-reciprocal equal to the dense one."""

from __future__ import annotations

import asyncio
import threading

import numpy as np
import pytest
from hypothesis import HealthCheck, given, settings
from hypothesis import strategies as st

from streams import _rerank, rerank
from streams.gallery import Gallery
from streams.neighbour_graph import NeighbourGraph
from streams.ranking import METHODS, Candidates, rank_subjects_off_loop
from tests.unit import rerank_reference as reference

D = 128


def clustered(rng: np.random.Generator, centres: np.ndarray, n: int, spread: float = 0.6) -> np.ndarray:
    """Unit rows around the given unit centres (30 of them make clusters of a few dozen rows)."""
    d = centres.shape[1]
    x = centres[rng.integers(0, len(centres), n)] + spread * rng.normal(size=(n, d)) / np.sqrt(d)
    return (x / np.linalg.norm(x, axis=1, keepdims=True)).astype(np.float32)


def centres(rng: np.random.Generator, k: int = 30, d: int = D) -> np.ndarray:
    c = rng.normal(size=(k, d))
    return c / np.linalg.norm(c, axis=1, keepdims=True)


def assert_matches_reference(graph: NeighbourGraph, query: np.ndarray, gallery: np.ndarray, k1, k2, lam):
    """Within 1e-5 of numpy, in its order up to float32 rounding; and ranked as the dense C++ path ranks it."""
    got = graph.k_reciprocal(query, gallery, k1, k2, lam, threads=1)
    want = reference.k_reciprocal(query[None, :], gallery, k1, k2, lam)[0]
    np.testing.assert_allclose(got, want, atol=1e-5)
    order = np.argsort(got, kind="stable")
    assert order[:50].tolist() == np.argsort(want, kind="stable")[:50].tolist()
    assert np.diff(want[order]).min(initial=0.0) > -1e-7  # only float32 ties (2^-24 of 1) may swap
    dense = rerank.k_reciprocal(query[None, :], gallery, k1, k2, lam, threads=1)[0]
    np.testing.assert_allclose(got, dense, atol=1e-6)
    assert order.tolist() == np.argsort(dense, kind="stable").tolist()


def assert_exact_lists(graph: NeighbourGraph, gallery: np.ndarray, k1_max: int):
    """Every row's kept neighbours are a prefix of its true ranking, long enough; its farthest is its maximum;
    its holders are the rows that keep it."""
    x = gallery.astype(np.float64)
    sq = (x * x).sum(axis=1)
    dist = np.maximum(sq[:, None] + sq[None, :] - 2.0 * x @ x.T, 0.0)
    np.fill_diagonal(dist, 0.0)
    for row in range(len(x)):
        kept = graph.nearest(row)
        assert len(kept) >= min(k1_max + 1, len(x))
        order = np.argsort(dist[row], kind="stable")[: len(kept)]
        assert [r for r, _ in kept] == order.tolist()
        np.testing.assert_allclose([s for _, s in kept], dist[row, order], atol=1e-9)
        assert graph.farthest(row)[0][1] == pytest.approx(dist[row].max(), abs=1e-9)
    kept_by = {row: {r for r, _ in graph.nearest(row)} for row in range(len(x))}
    for row in range(len(x)):  # the reverse lists are the kept lists turned round
        assert sorted(graph.holders(row)) == [h for h in range(len(x)) if row in kept_by[h]]


def built(gallery: np.ndarray, k1_max: int = 20) -> NeighbourGraph:
    graph = NeighbourGraph()
    graph.build(gallery, k1_max, threads=2)
    return graph


# --- parity with the dense reference -----------------------------------------------


@pytest.mark.parametrize(
    ("rows", "k1", "k2", "lam"), [(400, 20, 6, 0.3), (600, 10, 3, 0.5), (300, 5, 1, 0.0), (250, 7, 8, 1.0)]
)
def test_a_query_matches_the_dense_reference(rows, k1, k2, lam):
    rng = np.random.default_rng(rows)
    c = centres(rng)
    gallery = clustered(rng, c, rows)
    graph = built(gallery)
    assert_exact_lists(graph, gallery, 20)
    for query in clustered(rng, c, 3):
        assert_matches_reference(graph, query, gallery, k1, k2, lam)


def test_a_query_that_enters_the_rows_lists_matches_the_reference():
    """A query next to a gallery row is among the nearest of that row's neighbours: it displaces their last."""
    rng = np.random.default_rng(7)
    gallery = clustered(rng, centres(rng), 500)
    graph = built(gallery)
    for row in (0, 17, 499):
        query = gallery[row] + 0.02 * rng.normal(size=D).astype(np.float32) / np.sqrt(D)
        query /= np.linalg.norm(query)
        entered = sum(graph.nearest(j)[20][1] > ((gallery[j] - query) ** 2).sum() for j in range(len(gallery)))
        assert entered >= 10
        assert_matches_reference(graph, query, gallery, 20, 6, 0.3)


def test_a_query_far_from_the_gallery_raises_the_rows_maxima():
    rng = np.random.default_rng(8)
    c = centres(rng)
    gallery = clustered(rng, c[:1], 300, spread=0.8)  # one cluster: every row's maximum is well below 4
    query = (-c[0]).astype(np.float32)  # opposite: farther from every row than any other row
    graph = built(gallery)
    assert all(((gallery[j] - query) ** 2).sum() > graph.farthest(j)[0][1] for j in range(len(gallery)))
    assert_matches_reference(graph, query, gallery, 20, 6, 0.3)


def test_a_larger_gallery_matches_the_reference():
    rng = np.random.default_rng(2000)
    c = centres(rng)
    gallery = clustered(rng, c, 2000)
    graph = built(gallery)
    assert_matches_reference(graph, clustered(rng, c, 1)[0], gallery, 20, 6, 0.3)


@pytest.mark.parametrize("rows", [1, 2, 5, 20])
def test_galleries_smaller_than_k1(rows):
    rng = np.random.default_rng(rows)
    c = centres(rng, 3)
    gallery = clustered(rng, c, rows)
    graph = built(gallery)
    assert len(graph.nearest(0)) == rows  # every row, itself first
    assert graph.nearest(0)[0] == (0, 0.0)
    for query in clustered(rng, c, 2):
        assert_matches_reference(graph, query, gallery, 20, 6, 0.3)


# --- maintenance --------------------------------------------------------------------


def test_upserts_and_deletes_keep_the_graph_exact():
    """Through Gallery's row operations: new rows, overwrites, deletes (the query's neighbour, the last row)."""
    rng = np.random.default_rng(11)
    c = centres(rng)
    gallery = Gallery(D)
    for i, vector in enumerate(clustered(rng, c, 300)):
        gallery.upsert(f"s{i}", vector)
    query = clustered(rng, c, 1)[0]
    gallery.neighbour_graph.build(gallery.matrix, 20, threads=2)
    names = [f"s{i}" for i in range(300)]
    for step in range(120):
        action = rng.integers(0, 3)
        if action == 0:
            names.append(f"n{step}")
            gallery.upsert(names[-1], clustered(rng, c, 1)[0])
        elif action == 1:
            gallery.upsert(names[rng.integers(len(names))], clustered(rng, c, 1)[0])
        else:
            gallery.delete(names.pop(rng.integers(len(names))))
    nearest = int(np.argmin(((gallery.matrix - query) ** 2).sum(axis=1)))
    gallery.delete(gallery.ids[nearest])  # the query's nearest row: the last row moves into its place
    gallery.delete(gallery.ids[-1])  # the last row: nothing moves
    assert len(gallery) == len(names) - 2
    assert_exact_lists(gallery.neighbour_graph, gallery.matrix, 20)
    for k1, k2, lam in [(20, 6, 0.3), (9, 4, 0.7), (3, 1, 0.2)]:
        assert_matches_reference(gallery.neighbour_graph, query, gallery.matrix, k1, k2, lam)


@settings(max_examples=25, deadline=None, suppress_health_check=[HealthCheck.too_slow])
@given(st.integers(0, 2**32 - 1), st.lists(st.integers(0, 2), min_size=1, max_size=40))
def test_any_sequence_of_row_operations_keeps_the_lists_exact(seed, actions):
    """Small graphs (k1_max 3, margin 8) run out of neighbours often: refills are exercised too."""
    rng = np.random.default_rng(seed)
    c = centres(rng, 4, 8)
    gallery = Gallery(8)
    names = [f"s{i}" for i in range(int(rng.integers(1, 15)))]
    for name in names:
        gallery.upsert(name, clustered(rng, c, 1)[0])
    gallery.neighbour_graph.build(gallery.matrix, 3)
    for step, action in enumerate(actions):
        if action == 0 or len(names) == 1:
            names.append(f"n{step}")
            gallery.upsert(names[-1], clustered(rng, c, 1)[0])
        elif action == 1:
            gallery.upsert(names[rng.integers(len(names))], clustered(rng, c, 1)[0])
        else:
            gallery.delete(names.pop(rng.integers(len(names))))
    assert_exact_lists(gallery.neighbour_graph, gallery.matrix, 3)
    assert_matches_reference(gallery.neighbour_graph, clustered(rng, c, 1)[0], gallery.matrix, 3, 2, 0.3)


@settings(max_examples=25, deadline=None, suppress_health_check=[HealthCheck.too_slow])
@given(st.integers(0, 2**32 - 1), st.lists(st.integers(0, 3), min_size=1, max_size=40))
def test_without_a_margin_every_short_row_is_refilled(seed, actions):
    """Margin 0: a delete of any kept neighbour empties a row's margin, so refills happen all the time."""
    rng = np.random.default_rng(seed)
    c = centres(rng, 3, 6)
    matrix = clustered(rng, c, int(rng.integers(1, 12)))
    core = _rerank.NeighbourGraph(4, 0)
    core.build(matrix)
    for action in actions:
        row = int(rng.integers(len(matrix)))
        if action <= 1 or len(matrix) == 1:
            matrix = np.vstack([matrix, clustered(rng, c, 1)])
            core.upserted(matrix, len(matrix) - 1)
        elif action == 2:
            matrix[row] = clustered(rng, c, 1)[0]
            core.upserted(matrix, row)
        else:  # as Gallery deletes: the last row moves into the hole
            matrix[row] = matrix[-1]
            matrix = np.ascontiguousarray(matrix[:-1])
            core.deleted(matrix, row)
    assert_exact_lists(core, matrix, 4)
    query = clustered(rng, c, 1)
    got = core.k_reciprocal(query, matrix, 4, 3, 0.3)[0]
    np.testing.assert_allclose(got, reference.k_reciprocal(query, matrix, 4, 3, 0.3)[0], atol=1e-5)


def test_a_gallery_emptied_and_filled_again_keeps_its_graph():
    gallery = Gallery(3)
    for name, vector in zip("ab", np.eye(3), strict=False):
        gallery.upsert(name, vector)
    gallery.neighbour_graph.build(gallery.matrix, 20)
    gallery.delete("a")
    gallery.delete("b")
    for name, vector in zip("cde", np.eye(3)[::-1], strict=True):
        gallery.upsert(name, vector)
    assert gallery.neighbour_graph.built
    assert_exact_lists(gallery.neighbour_graph, gallery.matrix, 20)
    assert_matches_reference(gallery.neighbour_graph, np.array([0.6, 0.8, 0.0], np.float32), gallery.matrix, 20, 6, 0.3)


def test_an_unbuilt_graph_costs_nothing_and_ignores_row_changes():
    gallery = Gallery(4)
    gallery.upsert("a", np.array([1.0, 0.0, 0.0, 0.0]))
    gallery.delete("a")
    assert not gallery.neighbour_graph.built and gallery.neighbour_graph.k1_max == 0


def test_a_row_the_graph_cannot_take_drops_it_until_the_next_build():
    gallery = Gallery(2)
    gallery.upsert("a", np.array([1.0, 0.0]))
    gallery.upsert("b", np.array([0.0, 1.0]))
    gallery.neighbour_graph.build(gallery.matrix, 20)
    with pytest.raises(ValueError, match="the new gallery row row 0 contains NaN or inf"):
        gallery.upsert("c", np.array([np.nan, 1.0]))
    assert not gallery.neighbour_graph.built
    with pytest.raises(ValueError, match="gallery row 2 contains NaN"):
        gallery.neighbour_graph.build(gallery.matrix, 20)


# --- the background build ----------------------------------------------------------


def test_changes_made_while_the_graph_builds_are_replayed_onto_it(monkeypatch):
    """A gallery that keeps changing while its graph builds in the background: appends past the snapshot's
    size, overwrites, deletes (of the last row too) are journaled, and the installed graph is exact."""
    release, real_build = threading.Event(), NeighbourGraph._build
    monkeypatch.setattr(NeighbourGraph, "_build", lambda *a: release.wait(30) and real_build(*a))
    rng = np.random.default_rng(21)
    c = centres(rng)
    gallery = Gallery(D)
    for i, vector in enumerate(clustered(rng, c, 800)):
        gallery.upsert(f"s{i}", vector)
    building = gallery.neighbour_graph.start_build(gallery.matrix, 20, threads=1)
    assert gallery.neighbour_graph.start_build(gallery.matrix, 20) is building  # one build, not two
    fresh = iter(clustered(rng, c, 1500))
    for step in range(1200):  # appends grow the gallery past the snapshot's 800 rows (and its capacity)
        subject = f"s{rng.integers(0, 800 + step)}"
        if step % 4 == 3 and subject in gallery:
            gallery.delete(subject)
        else:
            gallery.upsert(subject if step % 2 else f"new{step}", next(fresh))
    gallery.delete(gallery.ids[-1])
    assert not building.done() and not gallery.neighbour_graph.built  # the changes above were journaled
    release.set()
    building.result(timeout=60)
    graph = gallery.neighbour_graph
    assert graph.built and graph.k1_max == 20 and len(gallery) > 800
    assert_matches_reference(graph, clustered(rng, c, 1)[0], gallery.matrix, 20, 6, 0.3)
    assert_exact_lists(graph, gallery.matrix, 20)
    gallery.upsert("after", next(fresh))  # installed: kept up to date at once
    assert_exact_lists(graph, gallery.matrix, 20)


def test_a_closed_or_failed_build_installs_nothing():
    gallery = Gallery(2)
    gallery.upsert("a", np.array([1.0, 0.0]))
    gallery.upsert("b", np.array([0.0, 1.0]))
    graph = gallery.neighbour_graph
    building = graph.start_build(gallery.matrix, 20)
    graph.close()
    building.result(timeout=30)
    assert not graph.built
    graph = NeighbourGraph()
    failed = graph.start_build(np.array([[1.0, 0.0], [np.nan, 1.0]]), 20)
    with pytest.raises(ValueError, match="gallery row 1 contains NaN"):
        failed.result(timeout=30)
    assert not graph.built and not graph.kept


def test_a_gallery_refilled_at_once_builds_the_graph_it_kept_anew():
    rng = np.random.default_rng(4)
    gallery = Gallery(D)
    gallery.upsert("a", clustered(rng, centres(rng), 1)[0])
    gallery.neighbour_graph.build(gallery.matrix, 7, threads=1)
    rows = clustered(rng, centres(rng), 300)
    gallery.extend([(f"s{i}", "") for i in range(300)], rows)
    graph = gallery.neighbour_graph
    assert graph.kept and graph.wanted == 7
    graph.start_build(gallery.matrix, 7).result(timeout=30)
    assert graph.k1_max == 7
    assert_exact_lists(graph, gallery.matrix, 7)
    unbuilt = Gallery(D)
    unbuilt.extend([("x", "")], rows[:1])
    assert not unbuilt.neighbour_graph.kept


# --- the ranking method -------------------------------------------------------------


def test_k_reciprocal_over_a_held_gallery_builds_its_graph_on_the_first_query():
    rng = np.random.default_rng(3)
    c = centres(rng)
    gallery = Gallery(D)
    for i, vector in enumerate(clustered(rng, c, 200)):
        gallery.upsert(f"s{i}", vector)
    method, query = METHODS["k_reciprocal"], clustered(rng, c, 1)[0]
    arguments = {"k1": 12, "k2": 4, "lambda_value": 0.3}
    assert method.cost(Candidates.held(gallery), arguments) == 2 * 200 * D  # O(G d), not the dense (G^2 d)
    assert method.builds_graph(Candidates.held(gallery), arguments)
    ranked = asyncio.run(rank_subjects_off_loop(method, query, Candidates.held(gallery), 5, arguments, 1))
    assert gallery.neighbour_graph.built and gallery.neighbour_graph.k1_max == 20
    inline = Candidates.inline(gallery.ids, gallery.matrix)
    dense = asyncio.run(rank_subjects_off_loop(method, query, inline, 5, arguments, 1))
    assert [m[0] for m in ranked.matches] == [m[0] for m in dense.matches]
    np.testing.assert_allclose([m[1] for m in ranked.matches], [m[1] for m in dense.matches], atol=1e-5)


def test_a_k1_beyond_the_graph_takes_the_dense_path_and_its_cost():
    gallery = Gallery(3)
    for i, vector in enumerate(np.eye(3)):
        gallery.upsert(str(i), vector)
    method, arguments = METHODS["k_reciprocal"], {"k1": 21}
    assert not method.on_graph(Candidates.held(gallery), arguments)
    assert method.cost(Candidates.held(gallery), arguments) == 3 * 3 * 3
    assert not method.on_graph(Candidates.inline(gallery.ids, gallery.matrix), {})  # inline: always dense
    query = np.eye(3, dtype=np.float32)[0]
    asyncio.run(rank_subjects_off_loop(method, query, Candidates.held(gallery), 2, arguments, 1))
    assert not gallery.neighbour_graph.built


# --- bad input ----------------------------------------------------------------------


@pytest.mark.parametrize(
    ("change", "message"),
    [
        ({"k1": 21}, r"k1 = 21 is more than the neighbour graph holds \(k1 up to 20\)"),
        ({"k2": 22}, r"k2 = 22 is more than the neighbour graph holds \(k2 up to 21\)"),
        ({"k1": 0}, "k1 must be at least 1"),
        ({"k2": -1}, "k2 must be at least 1"),
        ({"lambda_value": 1.5}, r"lambda_value must be within \[0, 1\]"),
        ({"query": np.full(4, np.nan)}, "queries row 0 contains NaN or inf"),
        ({"query": np.ones(3)}, "dimension mismatch: the query has 3 columns, the gallery 4"),
        ({"query": np.ones((2, 4))}, r"query must be one vector \(1-D\), got shape \(2, 4\)"),
        ({"matrix": np.eye(4)[:3]}, "gallery has 3 rows where the neighbour graph expects 4"),
        ({"k1": 2.5}, "k1 must be an integer"),
        ({"matrix": [["x"] * 4] * 4}, "gallery must hold real numbers"),
    ],
)
def test_bad_queries_are_value_errors_that_say_what_is_wrong(change, message):
    graph = built(np.eye(4, dtype=np.float32))
    arguments = {"query": np.ones(4), "matrix": np.eye(4), "k1": 20, "k2": 6, "lambda_value": 0.3, **change}
    with pytest.raises(ValueError, match=message):
        graph.k_reciprocal(**arguments)


def test_an_unbuilt_graph_and_bad_builds_are_value_errors():
    with pytest.raises(ValueError, match="the neighbour graph is not built"):
        NeighbourGraph().k_reciprocal(np.ones(2), np.eye(2))
    with pytest.raises(ValueError, match="k1_max must be at least 1"):
        NeighbourGraph().build(np.eye(2), 0)
    with pytest.raises(ValueError, match="all query and gallery rows are identical"):
        built(np.ones((3, 2), dtype=np.float32)).k_reciprocal(np.ones(2), np.ones((3, 2)))
    graph = built(np.eye(3, dtype=np.float32))
    with pytest.raises(ValueError, match="gallery has 3 rows where the neighbour graph expects 4"):
        graph.upserted(3, np.eye(3))  # an append must bring its row
    assert not graph.built  # a graph that missed a change is dropped, never left stale
    graph = built(np.eye(3, dtype=np.float32))
    with pytest.raises(ValueError, match="row 3 is beyond the graph's 3 rows"):
        graph.nearest(3)
