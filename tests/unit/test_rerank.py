"""The C++ re-ranker against the numpy reference in ``rerank_reference.py``."""

from __future__ import annotations

import threading
import time
import tracemalloc

import numpy as np
import pytest
from hypothesis import HealthCheck, assume, given, settings
from hypothesis import strategies as st
from hypothesis.extra import numpy as hnp

from streams import _rerank, rerank
from tests.unit import rerank_reference as reference


def clustered(seed: int, n: int, d: int, clusters: int, noise: float = 0.35) -> np.ndarray:
    """Unit-length float32 rows around a few random centres: the shape of real face embeddings."""
    rng = np.random.default_rng(seed)
    centres = rng.standard_normal((clusters, d))
    x = centres[rng.integers(0, clusters, n)] + noise * rng.standard_normal((n, d))
    return (x / np.linalg.norm(x, axis=1, keepdims=True)).astype(np.float32)


def stable_ranks(distances: np.ndarray) -> np.ndarray:
    return np.argsort(distances, axis=1, kind="stable")


# --- cosine top-k -------------------------------------------------------------------


@pytest.mark.parametrize(
    ("q", "g", "d", "k"),
    [(1, 1, 1, 1), (3, 50, 7, 5), (5, 1000, 128, 10), (17, 2500, 512, 25), (2, 300, 33, 300), (150, 40, 16, 5)],
)
def test_cosine_topk_matches_numpy(q, g, d, k):
    x = clustered(seed=q * 1000 + g, n=q + g, d=d, clusters=max(2, g // 40))
    queries, gallery = x[:q], x[q:]
    indices, scores = rerank.cosine_topk(queries, gallery, k, threads=2)
    want_indices, want_scores = reference.cosine_topk(queries, gallery, k)
    assert indices.dtype == np.int64 and scores.dtype == np.float32
    np.testing.assert_array_equal(indices, want_indices)
    np.testing.assert_allclose(scores, want_scores, atol=1e-5)


def test_cosine_ties_go_to_the_lower_index():
    rng = np.random.default_rng(7)
    gallery = rng.standard_normal((700, 64)).astype(np.float32)
    # Copies of row 5 scattered over the gallery, the last ones in the final partial tile,
    # and one scaled copy (same direction, so the same cosine up to rounding).
    copies = [5, 91, 92, 333, 698, 699]
    gallery[copies] = gallery[5]
    queries = gallery[[5]] + 0.01 * rng.standard_normal((1, 64)).astype(np.float32)
    for threads in (1, 2, 3):
        indices, scores = rerank.cosine_topk(queries, gallery, 8, threads=threads)
        assert indices[0, : len(copies)].tolist() == copies
        assert len(set(scores[0, : len(copies)].tolist())) == 1
        np.testing.assert_array_equal(indices, reference.cosine_topk(queries, gallery, 8)[0])


def test_cosine_k_beyond_the_gallery_returns_the_whole_gallery_ranked():
    x = clustered(seed=3, n=12, d=16, clusters=3)
    indices, scores = rerank.cosine_topk(x[:2], x[2:], 1000)
    assert indices.shape == scores.shape == (2, 10)
    assert sorted(indices[0].tolist()) == list(range(10))
    assert np.all(np.diff(scores, axis=1) <= 0)


def test_cosine_results_do_not_depend_on_threads_or_input_layout():
    x = clustered(seed=11, n=6000, d=96, clusters=60)
    queries, gallery = x[:9], x[9:]
    want = rerank.cosine_topk(queries, gallery, 20, threads=1)
    for threads in (2, 4, 0):
        got = rerank.cosine_topk(queries, gallery, 20, threads=threads)
        np.testing.assert_array_equal(got[0], want[0])
        np.testing.assert_array_equal(got[1], want[1])
    # float64, Fortran-ordered and strided inputs are converted, with the same results.
    as_f64 = rerank.cosine_topk(queries.astype(np.float64), np.asfortranarray(gallery), 20, threads=1)
    np.testing.assert_array_equal(as_f64[0], want[0])
    wide = np.repeat(gallery, 2, axis=1)[:, ::2]
    np.testing.assert_array_equal(rerank.cosine_topk(queries, wide, 20, threads=1)[0], want[0])


def test_float32_input_is_used_in_place_and_read_only_buffers_are_accepted():
    """Embeddings decoded from Avro bytes arrive as read-only float32 views: no copy is made."""
    gallery = clustered(seed=9, n=20_000, d=128, clusters=50)
    queries = np.frombuffer(gallery[:4].tobytes(), dtype=np.float32).reshape(4, 128)
    assert not queries.flags.writeable
    tracemalloc.start()
    try:
        indices, _ = rerank.cosine_topk(queries, gallery, 5)
        _, peak = tracemalloc.get_traced_memory()
    finally:
        tracemalloc.stop()
    assert peak < gallery.nbytes // 10  # a copy of the gallery would show as ~10 MB
    np.testing.assert_array_equal(indices[:, 0], np.arange(4))
    as_f64 = gallery.astype(np.float64)
    tracemalloc.start()
    try:
        rerank.cosine_topk(queries, as_f64, 5)
        _, peak = tracemalloc.get_traced_memory()
    finally:
        tracemalloc.stop()
    assert peak >= gallery.nbytes  # float64 is converted to a float32 copy, which the check above would see


@pytest.mark.parametrize("isa", _rerank.available_kernels())
def test_every_kernel_variant_this_cpu_runs_agrees_with_numpy(isa):
    x = clustered(seed=5, n=1310, d=130, clusters=30)
    queries, gallery = x[:10], x[10:]
    indices, scores = _rerank.cosine_topk(queries, gallery, 15, threads=2, isa=isa)
    want_indices, want_scores = reference.cosine_topk(queries, gallery, 15)
    np.testing.assert_array_equal(indices, want_indices)
    np.testing.assert_allclose(scores, want_scores, atol=1e-5)
    small = x[:310]
    got = _rerank.k_reciprocal(small[:10], small[10:], 20, 6, 0.3, threads=2, isa=isa)
    np.testing.assert_allclose(got, reference.k_reciprocal(small[:10], small[10:]), atol=1e-5)


def test_unknown_kernel_variant_is_refused():
    x = clustered(seed=1, n=4, d=4, clusters=2)
    with pytest.raises(ValueError, match="unknown"):
        _rerank.cosine_topk(x[:1], x[1:], 1, isa="pentium-mmx")


# --- k-reciprocal --------------------------------------------------------------------


@pytest.mark.parametrize(
    ("q", "g", "d", "k1", "k2", "lam"),
    [
        (1, 100, 128, 20, 6, 0.3),
        (16, 400, 128, 20, 6, 0.3),
        (4, 250, 32, 7, 3, 0.5),  # odd k1: round(3.5) = 4
        (5, 180, 64, 5, 1, 0.1),  # round(2.5) = 2 (half to even); k2 = 1: no query expansion
        (3, 300, 16, 12, 12, 0.0),  # pure Jaccard
        (2, 120, 24, 30, 4, 1.0),  # pure distance
        (3, 9, 8, 20, 20, 0.3),  # k1 + 1 and k2 beyond Q + G
    ],
)
def test_k_reciprocal_matches_numpy(q, g, d, k1, k2, lam):
    x = clustered(seed=q * 7 + g, n=q + g, d=d, clusters=max(2, (q + g) // 25))
    queries, gallery = x[:q], x[q:]
    got = rerank.k_reciprocal(queries, gallery, k1=k1, k2=k2, lambda_value=lam, threads=2)
    want = reference.k_reciprocal(queries, gallery, k1=k1, k2=k2, lambda_value=lam)
    assert got.shape == (q, g) and got.dtype == np.float32
    np.testing.assert_allclose(got, want, atol=1e-5, rtol=0)
    np.testing.assert_array_equal(stable_ranks(got), stable_ranks(want.astype(np.float32)))


def test_k_reciprocal_does_not_depend_on_threads():
    x = clustered(seed=21, n=520, d=48, clusters=12)
    want = rerank.k_reciprocal(x[:20], x[20:], threads=1)
    for threads in (2, 3, 0):
        np.testing.assert_array_equal(rerank.k_reciprocal(x[:20], x[20:], threads=threads), want)


def test_k_reciprocal_is_scale_invariant_even_where_float32_squares_overflow():
    """Rows are scaled by their maximum, so only the geometry counts; at 1e17 the
    squares overflow float32 and every distance is computed in double instead."""
    x = clustered(seed=4, n=230, d=40, clusters=6)
    want = rerank.k_reciprocal(x[:5], x[5:])
    for scale in (1e-3, 1e17):
        scaled = x.astype(np.float64) * scale
        np.testing.assert_allclose(rerank.k_reciprocal(scaled[:5], scaled[5:]), want, atol=1e-5)


# --- query expansion -----------------------------------------------------------------


@pytest.mark.parametrize(("q", "g", "d", "k", "alpha", "n"), [(4, 500, 64, 10, 3.0, 10), (2, 60, 8, 60, 0.0, 5)])
def test_query_expansion_matches_numpy(q, g, d, k, alpha, n):
    x = clustered(seed=q + g, n=q + g, d=d, clusters=10)
    queries, gallery = x[:q], x[q:]
    indices, scores = rerank.query_expansion(queries, gallery, k, alpha, neighbours=n)
    want_indices, want_scores = reference.query_expansion(queries, gallery, k, alpha, n)
    np.testing.assert_array_equal(indices, want_indices)
    np.testing.assert_allclose(scores, want_scores, atol=1e-5)


# --- properties ----------------------------------------------------------------------

# Multiples of 1/8 in [-1, 1]: dot products are exact, so ties are common and real.
coordinates = st.integers(-8, 8).map(lambda v: v / 8.0)


@st.composite
def query_and_gallery(draw, max_rows=30, max_dim=12):
    d = draw(st.integers(1, max_dim))
    q = draw(hnp.arrays(np.float32, (draw(st.integers(1, 5)), d), elements=coordinates))
    g = draw(hnp.arrays(np.float32, (draw(st.integers(1, max_rows)), d), elements=coordinates))
    return q, g


@settings(max_examples=150, deadline=None, suppress_health_check=[HealthCheck.too_slow])
@given(data=query_and_gallery(), k=st.integers(1, 40), threads=st.integers(1, 3))
def test_cosine_topk_properties(data, k, threads):
    queries, gallery = data
    assume(np.all(np.any(queries != 0, axis=1)) and np.all(np.any(gallery != 0, axis=1)))
    indices, scores = rerank.cosine_topk(queries, gallery, k, threads=threads)
    kk = min(k, len(gallery))
    assert indices.shape == scores.shape == (len(queries), kk)
    truth = reference.cosine_scores(queries, gallery)
    for row, idx, got in zip(truth, indices, scores):
        assert np.all((0 <= idx) & (idx < len(gallery))) and len(set(idx.tolist())) == kk
        assert np.all(np.diff(got) <= 0)
        for a, b, sa, sb in zip(idx, idx[1:], got, got[1:]):
            assert sa > sb or a < b  # equal scores: lower index first
        np.testing.assert_allclose(got, row[idx], atol=1e-5)
        assert np.all(np.abs(got) <= 1 + 1e-5)
        left_out = np.setdiff1d(np.arange(len(gallery)), idx)
        assert np.all(row[left_out] <= row[idx].min() + 1e-5)


@settings(max_examples=80, deadline=None, suppress_health_check=[HealthCheck.too_slow])
@given(data=query_and_gallery(max_rows=25), k1=st.integers(1, 30), k2=st.integers(1, 30), lam=st.floats(0, 1))
def test_k_reciprocal_properties(data, k1, k2, lam):
    queries, gallery = data
    points = np.concatenate([queries, gallery])
    if np.all(points == points[0]):
        with pytest.raises(ValueError, match="identical"):
            rerank.k_reciprocal(queries, gallery, k1, k2, lam)
        return
    got = rerank.k_reciprocal(queries, gallery, k1, k2, lam, threads=2)
    assert got.shape == (len(queries), len(gallery))
    assert np.all(np.isfinite(got)) and np.all(got >= -1e-6) and np.all(got <= 1 + 1e-6)
    np.testing.assert_allclose(got, reference.k_reciprocal(queries, gallery, k1, k2, lam), atol=1e-5)


@settings(max_examples=60, deadline=None)
@given(data=query_and_gallery(), k=st.integers(1, 40), n=st.integers(1, 40), alpha=st.floats(0, 8))
def test_query_expansion_properties(data, k, n, alpha):
    queries, gallery = data
    assume(np.all(np.any(queries != 0, axis=1)) and np.all(np.any(gallery != 0, axis=1)))
    indices, scores = rerank.query_expansion(queries, gallery, k, alpha, neighbours=n)
    kk = min(k, len(gallery))
    assert indices.shape == scores.shape == (len(queries), kk)
    assert all(len(set(row.tolist())) == kk for row in indices)
    assert np.all(np.diff(scores, axis=1) <= 0) and np.all(np.abs(scores) <= 1 + 1e-5)


# --- bad input -----------------------------------------------------------------------

Q = np.eye(2, 4, dtype=np.float32)
G = np.eye(3, 4, dtype=np.float32) + 0.5


def _with(array: np.ndarray, row: int, value: float) -> np.ndarray:
    out = array.copy()
    out[row, 1] = value
    return out


BAD_CALLS = {
    "dimension mismatch": lambda: rerank.cosine_topk(Q, G[:, :3], 1),
    "empty queries": lambda: rerank.cosine_topk(Q[:0], G, 1),
    "empty gallery": lambda: rerank.k_reciprocal(Q, G[:0]),
    "zero dimensions": lambda: rerank.cosine_topk(Q[:, :0], G[:, :0], 1),
    "1-D queries": lambda: rerank.cosine_topk(Q[0], G, 1),
    "3-D gallery": lambda: rerank.query_expansion(Q, G[None], 1),
    "NaN in queries": lambda: rerank.cosine_topk(_with(Q, 1, np.nan), G, 1),
    "inf in gallery": lambda: rerank.cosine_topk(Q, _with(G, 2, np.inf), 1),
    "NaN in gallery, k-reciprocal": lambda: rerank.k_reciprocal(Q, _with(G, 0, np.nan)),
    "-inf in queries, query expansion": lambda: rerank.query_expansion(_with(Q, 0, -np.inf), G, 1),
    "beyond float32": lambda: rerank.k_reciprocal(Q.astype(np.float64) * 1e300, G),
    "all-zero query": lambda: rerank.cosine_topk(np.zeros((1, 4)), G, 1),
    "all-zero gallery row": lambda: rerank.query_expansion(Q, _with(G * 0, 0, 0.0), 1),
    "k = 0": lambda: rerank.cosine_topk(Q, G, 0),
    "k < 0": lambda: rerank.query_expansion(Q, G, -3),
    "k not an integer": lambda: rerank.cosine_topk(Q, G, 1.5),
    "k1 = 0": lambda: rerank.k_reciprocal(Q, G, k1=0),
    "k2 = 0": lambda: rerank.k_reciprocal(Q, G, k2=0),
    "k1 huge": lambda: rerank.k_reciprocal(Q, G, k1=2**70),
    "lambda > 1": lambda: rerank.k_reciprocal(Q, G, lambda_value=1.5),
    "lambda NaN": lambda: rerank.k_reciprocal(Q, G, lambda_value=float("nan")),
    "alpha < 0": lambda: rerank.query_expansion(Q, G, 1, alpha=-1.0),
    "alpha inf": lambda: rerank.query_expansion(Q, G, 1, alpha=float("inf")),
    "neighbours = 0": lambda: rerank.query_expansion(Q, G, 1, neighbours=0),
    "strings": lambda: rerank.cosine_topk([["a", "b"]], G, 1),
    "objects": lambda: rerank.cosine_topk(np.array([[None, {}]], dtype=object), G, 1),
    "complex": lambda: rerank.cosine_topk(Q.astype(np.complex64), G, 1),
    "ragged": lambda: rerank.cosine_topk([[1.0, 2.0], [3.0]], G, 1),
    "negative threads": lambda: rerank.cosine_topk(Q, G, 1, threads=-1),
    "threads not an integer": lambda: rerank.k_reciprocal(Q, G, threads=2.5),
    "all rows identical": lambda: rerank.k_reciprocal(np.ones((2, 4)), np.ones((3, 4))),
}


@pytest.mark.parametrize("call", BAD_CALLS.values(), ids=BAD_CALLS.keys())
def test_bad_input_raises_value_error(call):
    with pytest.raises(ValueError):
        call()


def test_threads_are_the_callers_and_never_read_from_the_environment(monkeypatch):
    """FACESTREAM_RERANK_THREADS reaches the re-ranker through Settings (the agents pass it), not from here."""
    monkeypatch.setenv("FACESTREAM_RERANK_THREADS", "-2")
    want = rerank.cosine_topk(Q, G, 1, threads=1)
    np.testing.assert_array_equal(rerank.cosine_topk(Q, G, 1)[0], want[0])  # the default, 0: one per core
    with pytest.raises(ValueError, match="threads"):
        rerank.cosine_topk(Q, G, 1, threads=-2)


def test_more_threads_than_the_extension_runs_are_capped():
    """One place decides the thread count: the extension, which never starts more than 1024."""
    x = clustered(seed=8, n=40, d=8, clusters=3)
    want = rerank.k_reciprocal(x[:2], x[2:], threads=1)
    np.testing.assert_array_equal(rerank.k_reciprocal(x[:2], x[2:], threads=100_000), want)


def test_the_extension_itself_raises_value_error_for_bad_values():
    """Callers that skip streams.rerank still get ValueError, not a crash."""
    with pytest.raises(ValueError, match="dimension mismatch"):
        _rerank.cosine_topk(Q, G[:, :3], 1)
    with pytest.raises(ValueError, match="2-D"):
        _rerank.k_reciprocal(Q[0], G, 20, 6, 0.3)
    with pytest.raises(ValueError, match="NaN or inf"):
        _rerank.k_reciprocal(Q, _with(G, 1, np.nan), 20, 6, 0.3)
    with pytest.raises(ValueError, match="k1"):
        _rerank.k_reciprocal(Q, G, 0, 6, 0.3)


def test_the_gil_is_released_while_ranking():
    """The main thread runs Python while another thread is inside a long k-reciprocal call."""
    x = clustered(seed=2, n=2500, d=128, clusters=40)
    window: list[float] = []
    finished = threading.Event()

    def rank() -> None:
        window.append(time.perf_counter())
        rerank.k_reciprocal(x[:16], x[16:], threads=1)
        window.append(time.perf_counter())
        finished.set()

    worker = threading.Thread(target=rank)
    stamps: list[float] = []
    worker.start()
    while not finished.is_set():
        stamps.append(time.perf_counter())
        time.sleep(0.0005)
    worker.join()
    # Holding the GIL, the call would leave no gap for the main thread between the two stamps.
    assert sum(window[0] < t < window[1] for t in stamps) >= 3
