"""The ranking methods a RerankQuery names: their parameters, their cost, their rankings, where they run."""

from __future__ import annotations

import threading

import numpy as np
import pytest

from streams import rerank, schemas
from streams.ranking import INLINE_MAX_WORK, METHODS, Candidates, Method, rank_subjects, rank_subjects_off_loop
from tests.unit import rerank_reference as reference

# Four unit rows of a 3-d space and a query nearest row 2, then rows 3, 0, 1: every method finds row 2 first.
GALLERY = np.array([[1.0, 0.0, 0.0], [0.0, 1.0, 0.0], [0.8, 0.0, 0.6], [0.0, 0.0, 1.0]], dtype=np.float32)
QUERY = np.array([0.6, 0.0, 0.8], dtype=np.float32)


def test_the_methods_are_the_schema_enum():
    method = next(f for f in schemas.load_json("RerankQuery")["fields"] if f["name"] == "method")
    assert method["type"]["symbols"] == list(METHODS)


# --- parameters ---------------------------------------------------------------------


def test_params_become_keyword_arguments_of_their_types():
    arguments = METHODS["k_reciprocal"].arguments({"k1": 12.0, "lambda_value": 0.5})
    assert arguments == {"k1": 12, "lambda_value": 0.5}
    assert type(arguments["k1"]) is int and type(arguments["lambda_value"]) is float
    assert METHODS["query_expansion"].arguments({"alpha": 2.0, "neighbours": 3.0}) == {"alpha": 2.0, "neighbours": 3}
    assert METHODS["cosine"].arguments({}) == {}


@pytest.mark.parametrize(
    ("method", "params", "message"),
    [
        ("cosine", {"k1": 20.0}, r"unknown parameter\(s\) \['k1'\]; this method takes \[\]"),
        ("k_reciprocal", {"k3": 1.0, "alpha": 2.0}, r"\['alpha', 'k3'\]; this method takes \['k1', 'k2', 'lambda_v"),
        ("k_reciprocal", {"k1": 2.5}, "parameter k1 must be an integer, got 2.5"),
        ("query_expansion", {"neighbours": 1e-3}, "parameter neighbours must be an integer"),
    ],
)
def test_unknown_names_and_non_integral_counts_are_refused(method, params, message):
    with pytest.raises(ValueError, match=message):
        METHODS[method].arguments(params)


# --- work estimates -----------------------------------------------------------------


def test_work_is_the_multiply_adds_of_each_method():
    assert METHODS["cosine"].work(1000, 128) == 1000 * 128
    assert METHODS["query_expansion"].work(1000, 128) == 2 * 1000 * 128  # neighbours, then the expanded query
    assert METHODS["k_reciprocal"].work(1000, 128) == 1000 * 1000 * 128  # every row against every row


# --- rankings -----------------------------------------------------------------------


async def rank(name: str, query, gallery, k: int, arguments: dict, threads: int):
    """Rows and scores of one method over distinct subjects (one template each): the rows as the method ranks them."""
    candidates = Candidates.inline([str(i) for i in range(len(gallery))], gallery)
    ranked = await rank_subjects_off_loop(METHODS[name], query, candidates, k, arguments, threads)
    return np.array([int(s) for s, _, _ in ranked.matches]), np.array([score for _, score, _ in ranked.matches])


async def test_cosine_ranks_by_similarity():
    rows, scores = await rank("cosine", QUERY, GALLERY, 3, {}, threads=1)
    assert rows.tolist() == [2, 3, 0]
    np.testing.assert_allclose(scores, [0.96, 0.8, 0.6], atol=1e-6)


async def test_query_expansion_ranks_the_expanded_query():
    rows, scores = await rank("query_expansion", QUERY, GALLERY, 4, {"alpha": 3.0, "neighbours": 2}, threads=1)
    want_rows, want_scores = reference.query_expansion(QUERY[None, :], GALLERY, 4, 3.0, 2)
    assert rows.tolist() == want_rows[0].tolist() and rows[0] == 2
    np.testing.assert_allclose(scores, want_scores[0], atol=1e-6)


async def test_k_reciprocal_ranks_by_distance_with_scores_one_minus_it():
    arguments = {"k1": 2, "k2": 1, "lambda_value": 0.3}
    rows, scores = await rank("k_reciprocal", QUERY, GALLERY, 4, arguments, threads=1)
    distances = reference.k_reciprocal(QUERY[None, :], GALLERY, 2, 1, 0.3)[0]
    assert rows.tolist() == np.argsort(distances, kind="stable").tolist() and rows[0] == 2
    np.testing.assert_allclose(scores, 1.0 - distances[rows], atol=1e-5)


async def test_k_reciprocal_keeps_the_lower_row_first_on_ties():
    twins = np.array([[0.0, 1.0], [1.0, 0.0], [1.0, 0.0], [0.0, 1.0]], dtype=np.float32)
    rows, _ = await rank("k_reciprocal", np.array([1.0, 0.0], dtype=np.float32), twins, 2, {}, threads=1)
    assert rows.tolist() == [1, 2]


# --- where the work runs ------------------------------------------------------------


def recording(threads_seen: list[tuple[str, int]]):
    def rank(query, gallery, k, *, threads):
        threads_seen.append((threading.current_thread().name, threads))
        return np.arange(k), np.ones(k, dtype=np.float32)

    return rank


@pytest.mark.parametrize("work", [INLINE_MAX_WORK, INLINE_MAX_WORK + 1])
async def test_small_work_runs_inline_and_large_work_in_a_thread(work):
    seen: list[tuple[str, int]] = []
    method = Method({}, recording(seen), lambda rows, dim: work)
    await rank_subjects_off_loop(method, QUERY, Candidates.inline(list("abcd"), GALLERY), 2, {}, threads=3)
    (thread, threads), = seen
    assert (thread == threading.current_thread().name) == (work <= INLINE_MAX_WORK)
    assert threads == 3


@pytest.mark.parametrize("name", list(METHODS))
async def test_every_method_passes_the_callers_threads_to_the_re_ranker(name, monkeypatch):
    seen = []
    for function in ("cosine_topk", "query_expansion", "k_reciprocal"):
        real = getattr(rerank, function)
        spy = lambda *a, _real=real, **kw: seen.append(kw["threads"]) or _real(*a, **kw)  # noqa: E731
        monkeypatch.setattr(rerank, function, spy)
    await rank(name, QUERY, GALLERY, 2, {}, threads=2)
    assert seen == [2]


# --- subjects -----------------------------------------------------------------------


@pytest.mark.parametrize("name", list(METHODS))
def test_a_subject_with_several_templates_is_one_candidate_scored_by_its_best(name):
    # Subject "x" holds rows 0 and 2, "y" rows 1 and 3: two subjects, whatever the method ranks first.
    ranked = rank_subjects(METHODS[name], QUERY, Candidates.inline(["x", "y", "x", "y"], GALLERY), 5, {}, threads=1)
    assert sorted(s for s, _, _ in ranked.matches) == ["x", "y"]
    similarity = {s: sim for s, _, sim in ranked.matches}
    assert similarity == pytest.approx({"x": 0.96, "y": 0.8})  # rows 2 and 3: each subject's best cosine
    assert ranked.leaders == [("x", pytest.approx(0.96)), ("y", pytest.approx(0.8))]


def test_top_k_counts_subjects_not_templates():
    # Five templates of "a" nearest the query, then "b": top_k=2 still finds b.
    rows = np.array([[1.0, 0.0]] * 5 + [[0.6, 0.8]], dtype=np.float32)
    ranked = rank_subjects(METHODS["cosine"], np.array([1.0, 0.0], dtype=np.float32),
                           Candidates.inline(["a"] * 5 + ["b"], rows), 2, {}, threads=1)
    assert [s for s, _, _ in ranked.matches] == ["a", "b"]
