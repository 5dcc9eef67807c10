"""Compact gallery storage: float16 and int8 rows rank as float32 does, on real and clustered embeddings."""

from __future__ import annotations

import asyncio

import cv2
import numpy as np
import pytest

from streams import _rerank
from streams.agents.rerank import QueryRanker
from streams.config import Settings
from streams.context import WorkerContext
from streams.gallery import Galleries, Gallery
from streams.inference.onnx import OnnxBackend
from streams.pipeline import FacePipeline
from streams.rows import Rows
from tests.unit.agents.test_rerank import query_event
from tests.unit.serving_models import serving_settings

COMPACT = ("float16", "int8")
# Largest difference from the float32 cosine that storing a unit row may make (measured: 4e-5 and 1.1e-3).
TOLERANCE = {"float32": 1e-6, "float16": 2e-4, "int8": 4e-3}
PHOTOS = ("obama.jpg", "obama2.jpg", "obama3.jpg", "biden.jpg", "astronaut.png", "obama_partial_face.jpg", "32bit.png")


def gallery_of(matrix: np.ndarray, dtype: str) -> Gallery:
    gallery = Gallery(matrix.shape[1], dtype=dtype)
    for i, row in enumerate(matrix):
        gallery.upsert(f"s{i}", row)
    return gallery


def unit(x: np.ndarray) -> np.ndarray:
    return (x / np.linalg.norm(x, axis=-1, keepdims=True)).astype(np.float32)


def clustered(rng: np.random.Generator, clusters: int, dim: int) -> tuple[np.ndarray, np.ndarray]:
    """(gallery, queries): ten rows round each of ``clusters`` centres, the j-th at cosine about
    1 / sqrt(1 + (0.1 j)^2) from it (0.995 ... 0.707, at least 0.014 apart), and a query near each centre."""
    centres = unit(rng.standard_normal((clusters, dim)))
    radii = 0.1 * np.arange(1, 11)
    noise = rng.standard_normal((clusters, 10, dim))
    noise -= (noise * centres[:, None, :]).sum(axis=2, keepdims=True) * centres[:, None, :]
    gallery = unit(centres[:, None, :] + radii[None, :, None] * unit(noise)).reshape(-1, dim)
    queries = unit(centres + 0.002 * rng.standard_normal(centres.shape))
    return rng.permutation(gallery), queries


@pytest.fixture(scope="module")
def real_embeddings(photo_bytes) -> np.ndarray:
    """Faces of real photographs, each also turned by +-8 degrees: close neighbours, as enrolments are."""
    return asyncio.run(embed(photo_bytes))


async def embed(photo_bytes: dict[str, bytes]) -> np.ndarray:
    pipeline = FacePipeline(OnnxBackend(serving_settings()), serving_settings())
    await pipeline.start()
    images = []
    for name in PHOTOS:
        image = pipeline.decode(photo_bytes[name])
        h, w = image.shape[:2]
        for angle in (-8, 0, 8):
            turn = cv2.getRotationMatrix2D((w / 2, h / 2), angle, 1.0)
            images.append(cv2.warpAffine(image, turn, (w, h), borderMode=cv2.BORDER_REFLECT))
    found = await pipeline.process(images)
    await pipeline.close()
    return np.array([face.embedding for image in found for face in image.faces], dtype=np.float32)


@pytest.mark.parametrize("dtype", COMPACT)
def test_real_photo_scores_stay_within_the_storage_error_and_top10_is_float32s(real_embeddings, dtype):
    exact = real_embeddings @ real_embeddings.T
    rows = gallery_of(real_embeddings, dtype).rows
    indices, scores = rows.topk(real_embeddings, 10)
    full = np.stack([rows.scores(q) for q in real_embeddings])
    error = np.abs(full - exact).max()
    assert error < TOLERANCE[dtype]
    np.testing.assert_allclose(scores, np.take_along_axis(full, indices, axis=1), atol=1e-6)
    # Ranks further apart than twice the storage error cannot swap: there the top is float32's, and that is most.
    reference, _ = _rerank.cosine_topk(real_embeddings, real_embeddings, 11)
    ranked = np.take_along_axis(exact, reference, axis=1)
    apart = np.diff(-ranked, axis=1) > 2 * error  # apart[q, j]: float32's ranks j and j + 1 cannot swap
    assert apart.mean() > 0.5
    for q, j in zip(*np.nonzero(apart), strict=True):
        assert set(indices[q, : j + 1]) == set(reference[q, : j + 1])


@pytest.mark.parametrize("dtype", COMPACT)
def test_clustered_100k_top10_is_float32s(dtype):
    matrix, queries = clustered(np.random.default_rng(7), 10_000, 128)
    queries = queries[:64]
    rows = Rows(128, dtype, capacity=len(matrix))
    for i, row in enumerate(matrix):
        rows.set(i, row)
    assert rows.nbytes == len(matrix) * {"float16": 260, "int8": 132}[dtype]
    indices, scores = rows.topk(queries, 10)
    reference, reference_scores = _rerank.cosine_topk(queries, matrix, 11)
    assert np.diff(-reference_scores, axis=1).min() > 2 * TOLERANCE[dtype]  # no near-ties, as meant
    np.testing.assert_array_equal(indices, reference[:, :10])
    assert np.abs(scores - reference_scores[:, :10]).max() < TOLERANCE[dtype]


@pytest.mark.parametrize("isa", _rerank.available_compact_kernels())
@pytest.mark.parametrize("dtype", COMPACT)
def test_every_kernel_variant_scores_the_stored_values(isa, dtype):
    rng = np.random.default_rng(3)
    matrix = unit(rng.standard_normal((301, 67)))  # odd counts: tails of rows, queries and dimensions
    queries = unit(rng.standard_normal((6, 67)))
    stored = gallery_of(matrix, dtype).rows.stored
    row_scale = (1 / np.linalg.norm(stored.astype(np.float64), axis=1)).astype(np.float32)
    reference = queries @ (stored.astype(np.float64) * row_scale[:, None]).T
    name = "f16" if dtype == "float16" else "i8"
    compact = stored.view(np.uint16) if dtype == "float16" else stored
    got = getattr(_rerank, f"compact_scores_{name}")(queries, compact, row_scale, isa=isa)
    np.testing.assert_allclose(got, reference, atol=2e-6)
    indices, _ = getattr(_rerank, f"compact_topk_{name}")(queries, compact, row_scale, 5, isa=isa)
    np.testing.assert_array_equal(indices, np.argsort(-got, axis=1, kind="stable")[:, :5])


@pytest.mark.parametrize("dtype", ("float32", *COMPACT))
def test_upsert_overwrite_and_delete_keep_rows_and_ids_together(dtype):
    rng = np.random.default_rng(5)
    vectors = {f"s{i}": unit(rng.standard_normal(32)) for i in range(40)}
    gallery = Gallery(32, dtype=dtype)
    for subject, vector in vectors.items():
        gallery.upsert(subject, vector)
    vectors["s3"] = unit(rng.standard_normal(32))
    gallery.upsert("s3", vectors["s3"])  # overwrite in place
    for subject in ("s0", "s17", "s39"):
        gallery.delete(subject)  # the last row moves into each hole
        del vectors[subject]
    assert len(gallery) == len(vectors) == len(gallery.rows)
    dense = gallery.matrix
    for row, subject in enumerate(gallery.ids):
        assert float(dense[row] @ vectors[subject]) > 1 - TOLERANCE[dtype]
    for subject, vector in vectors.items():
        indices, scores = gallery.rows.topk(vector[None, :], 1)
        assert gallery.ids[int(indices[0, 0])] == subject
        assert scores[0, 0] == pytest.approx(1.0, abs=TOLERANCE[dtype])


def test_memory_per_row_falls_two_and_four_times():
    sizes = {dtype: Rows(128, dtype).bytes_per_row for dtype in ("float32", *COMPACT)}
    assert sizes == {"float32": 512, "float16": 260, "int8": 132}


def test_bad_storage_and_bad_kernel_input_are_value_errors():
    with pytest.raises(ValueError, match="float32, float16, int8"):
        Rows(8, "bfloat16")
    rows = np.zeros((3, 8), dtype=np.int8)
    with pytest.raises(ValueError, match="scale has 2 values for 3"):
        _rerank.compact_topk_i8(np.ones((1, 8), np.float32), rows, np.ones(2, np.float32), 1)
    with pytest.raises(ValueError, match="finite and positive"):
        _rerank.compact_topk_i8(np.ones((1, 8), np.float32), rows, np.zeros(3, np.float32), 1)
    with pytest.raises(ValueError, match="dimension mismatch"):
        _rerank.compact_scores_i8(np.ones((1, 4), np.float32), rows, np.ones(3, np.float32))
    with pytest.raises(ValueError, match="all zeros"):
        _rerank.compact_scores_i8(np.zeros((1, 8), np.float32), rows, np.ones(3, np.float32))


@pytest.mark.parametrize("dtype", COMPACT)
@pytest.mark.parametrize("method", ["cosine", "k_reciprocal", "query_expansion"])
async def test_a_worker_ranks_a_compact_gallery_with_every_method(dtype, method, tmp_path):
    ctx = WorkerContext.from_settings(Settings(gallery_dtype=dtype, data_dir=str(tmp_path)))
    galleries = Galleries(ctx.settings.gallery_dtype)
    for subject, row in {"a": [1.0, 0.0, 0.0], "b": [0.8, 0.0, 0.6], "c": [0.0, 0.0, 1.0]}.items():
        galleries.upsert("g", subject, np.array(row, dtype=np.float32))
    assert galleries.get("g").rows.dtype == dtype
    result = await QueryRanker(ctx, galleries, asyncio.Lock()).answer(query_event(ctx, method))
    assert [m["id"] for m in result["matches"]] == ["b", "c"]
    assert result["matches"][0]["similarity"] == pytest.approx(0.6 * 0.8 + 0.8 * 0.6, abs=TOLERANCE[dtype])
