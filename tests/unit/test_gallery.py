"""The gallery matrix: rows follow upserts and deletes in place, stay contiguous, and always match their ids."""

from __future__ import annotations

import numpy as np
import pytest

from streams.gallery import DimensionMismatch, Galleries, Gallery, ModelMismatch


def vec(value: float, dim: int = 4) -> np.ndarray:
    return np.full(dim, value, dtype=np.float32)


def rows_by_id(gallery: Gallery) -> dict[str, float]:
    """Each subject's first value, read through ids and matrix together: the pairing the re-ranker relies on."""
    return {subject: float(gallery.matrix[row, 0]) for row, subject in enumerate(gallery.ids)}


def test_upsert_appends_rows_in_order() -> None:
    gallery = Gallery(dim=4)
    for i, name in enumerate(["a", "b", "c"]):
        gallery.upsert(name, vec(i))
    assert list(gallery.ids) == ["a", "b", "c"]
    np.testing.assert_array_equal(gallery.matrix, np.stack([vec(0), vec(1), vec(2)]))
    assert len(gallery) == 3 and "b" in gallery and "z" not in gallery


def test_upsert_of_a_known_subject_overwrites_its_row() -> None:
    gallery = Gallery(dim=4)
    gallery.upsert("a", vec(1))
    gallery.upsert("b", vec(2))
    gallery.upsert("a", vec(9))
    assert list(gallery.ids) == ["a", "b"]
    assert rows_by_id(gallery) == {"a": 9.0, "b": 2.0}


def test_delete_moves_the_last_row_into_the_hole() -> None:
    gallery = Gallery(dim=4)
    for i, name in enumerate("abcd"):
        gallery.upsert(name, vec(i))
    assert gallery.delete("b")
    assert list(gallery.ids) == ["a", "d", "c"]
    assert rows_by_id(gallery) == {"a": 0.0, "d": 3.0, "c": 2.0}
    assert gallery.delete("c")  # the last row: nothing moves
    assert list(gallery.ids) == ["a", "d"]
    assert not gallery.delete("c")
    gallery.upsert("d", vec(7))  # the moved subject's row index was updated
    assert rows_by_id(gallery) == {"a": 0.0, "d": 7.0}


def test_matrix_is_a_contiguous_float32_view_without_copies() -> None:
    gallery = Gallery(dim=4, capacity=2)
    for i in range(5):
        gallery.upsert(str(i), vec(i))
    matrix = gallery.matrix
    assert matrix.dtype == np.float32 and matrix.flags.c_contiguous and matrix.shape == (5, 4)
    assert np.shares_memory(matrix, gallery.matrix)  # a query reads the live buffer, nothing rebuilt


def test_growth_is_amortised_and_keeps_earlier_views_intact() -> None:
    gallery = Gallery(dim=4, capacity=2)
    gallery.upsert("a", vec(1))
    gallery.upsert("b", vec(2))
    held = gallery.matrix  # a query in flight holds this view
    capacities = set()
    for i in range(100):
        gallery.upsert(f"s{i}", vec(i))
        capacities.add(gallery.capacity)
    assert capacities == {4, 8, 16, 32, 64, 128}  # doubling: log2(n) reallocations for n appends
    np.testing.assert_array_equal(held, np.stack([vec(1), vec(2)]))
    assert rows_by_id(gallery)["s99"] == 99.0


def test_random_operations_match_a_dict_model() -> None:
    rng = np.random.default_rng(7)
    gallery = Gallery(dim=8, capacity=1)
    model: dict[tuple[str, str], np.ndarray] = {}
    for _ in range(3000):
        subject, template = f"s{rng.integers(30)}", f"t{rng.integers(3)}"
        if rng.random() < 0.1:  # every template of the subject
            held = sorted(t for s, t in model if s == subject)
            assert gallery.delete(subject) == held
            model = {k: v for k, v in model.items() if k[0] != subject}
        elif rng.random() < 0.3:
            assert bool(gallery.delete(subject, template)) == (model.pop((subject, template), None) is not None)
        else:
            model[(subject, template)] = rng.normal(size=8).astype(np.float32)
            gallery.upsert(subject, model[(subject, template)], template)
        rows = [(s, gallery.template_of(row)) for row, s in enumerate(gallery.ids)]
        assert sorted(rows) == sorted(model)
        assert gallery.subjects == len({s for s, _ in model})
        codes = dict(zip(gallery.ids, gallery.codes.tolist()))  # one code per subject, distinct across subjects
        assert [codes[s] for s in gallery.ids] == gallery.codes.tolist() and len(set(codes.values())) == len(codes)
    for row, subject in enumerate(gallery.ids):
        np.testing.assert_array_equal(gallery.matrix[row], model[(subject, gallery.template_of(row))])


def test_the_first_named_model_is_the_gallerys_and_another_is_refused() -> None:
    sface = {"detector": "yunet-2023mar", "embedder": "sface-2021dec", "dim": 4, "version": "1"}
    gallery = Gallery(dim=4)
    gallery.upsert("old", vec(1))  # an entry of an older producer names no model
    gallery.upsert("a", vec(1), model=sface)
    gallery.upsert("b", vec(2), model={**sface, "detector": "scrfd"})  # another detector: still comparable
    with pytest.raises(ModelMismatch, match="sface-2021dec version 2"):
        gallery.upsert("c", vec(3), model={**sface, "version": "2"})
    assert sorted(gallery.ids) == ["a", "b", "old"] and gallery.model == sface


def test_the_newest_live_threshold_is_the_gallerys() -> None:
    gallery = Gallery(dim=4)
    gallery.upsert("a", vec(1))
    assert gallery.threshold is None
    gallery.upsert("b", vec(1), threshold=0.5, produced_at=20)
    gallery.upsert("c", vec(1), threshold=0.4, produced_at=10)  # applied later, but older
    assert gallery.threshold == 0.5
    gallery.delete("b")
    assert gallery.threshold == 0.4


def test_wrong_dimension_is_refused_and_changes_nothing() -> None:
    gallery = Gallery(dim=4)
    gallery.upsert("a", vec(1))
    with pytest.raises(DimensionMismatch, match="dimension 4"):
        gallery.upsert("b", vec(1, dim=5))
    with pytest.raises(DimensionMismatch):
        gallery.upsert("a", np.ones((2, 2), dtype=np.float32))
    assert list(gallery.ids) == ["a"] and rows_by_id(gallery) == {"a": 1.0}


def test_galleries_fix_the_dimension_on_first_entry_and_drop_empty_galleries() -> None:
    galleries = Galleries()
    assert galleries.get("g") is None
    galleries.upsert("g", "a", vec(1, dim=3))
    galleries.upsert("h", "x", vec(2, dim=5))  # another gallery, another dimension
    with pytest.raises(DimensionMismatch):
        galleries.upsert("g", "b", vec(1, dim=5))
    assert galleries.get("g").dim == 3 and len(galleries.get("g")) == 1
    assert galleries.delete("g", "missing") is galleries.get("g")
    assert galleries.delete("g", "a") is None
    assert galleries.get("g") is None and list(galleries) == ["h"]
    assert galleries.delete("nope", "a") is None
