"""Overflow-safe L2 normalisation: huge finite values give a real unit vector, bad ones a clear error."""

from __future__ import annotations

import numpy as np
import pytest

from streams.vectors import unit_rows, unit_vector


def test_huge_finite_values_normalise_like_small_ones():
    signs = np.array([1.0, -1.0, 1.0, 1.0])
    huge = unit_vector(signs * 3e38)
    assert np.allclose(huge, signs / 2.0) and huge.dtype == np.float32
    assert np.allclose(unit_vector(signs * 1e-44), signs / 2.0)  # subnormal float32 values too


@pytest.mark.parametrize("values, reason", [
    ([], "empty"), ([0.0, 0.0], "all zeros"), ([1.0, np.nan], "NaN/inf"), ([np.inf, 1.0], "NaN/inf"),
])
def test_vectors_that_cannot_be_normalised_are_refused(values, reason):
    with pytest.raises(ValueError, match=reason):
        unit_vector(values, "the embedding")


def test_rows_are_normalised_one_by_one():
    rows = unit_rows(np.array([[3.0, 4.0], [1e30, 0.0]]))
    assert np.allclose(rows, [[0.6, 0.8], [1.0, 0.0]])
