"""L2 normalisation that cannot overflow: every embedding facestream stores or compares goes through here.

A float32 norm of huge finite values overflows to inf (and the row turns to
zeros), so rows are scaled by their largest magnitude before the norm is taken,
in float64. A row that is empty, all zeros or not finite is refused with a
``ValueError`` naming it, and the result is checked finite again.
"""

from __future__ import annotations

from collections.abc import Sequence

import numpy as np


def unit_rows(rows: np.ndarray, what: str = "an embedding") -> np.ndarray:
    """``rows`` (n, d) as float32 rows of unit L2 norm; ``ValueError`` if any row cannot be normalised."""
    values = np.asarray(rows, dtype=np.float64)
    if values.ndim != 2 or values.shape[1] == 0:
        raise ValueError(f"{what} is empty")
    if not np.isfinite(values).all():
        raise ValueError(f"{what} holds NaN/inf")
    scale = np.abs(values).max(axis=1, keepdims=True)
    if (scale == 0.0).any():
        raise ValueError(f"{what} is all zeros")
    scaled = values / scale
    unit = (scaled / np.linalg.norm(scaled, axis=1, keepdims=True)).astype(np.float32)
    if not np.isfinite(unit).all() or (np.abs(unit).max(axis=1) == 0.0).any():
        raise ValueError(f"{what} cannot be normalised in float32")
    return unit


def unit_vector(values: Sequence[float] | np.ndarray, what: str = "an embedding") -> np.ndarray:
    """One vector as a float32 unit vector, so a dot product is the cosine; ``ValueError`` as :func:`unit_rows`."""
    vector = np.asarray(values, dtype=np.float64)
    if vector.ndim != 1:
        raise ValueError(f"{what} is not a vector")
    return unit_rows(vector[None, :], what)[0]
