"""Galleries held by a worker, each as one contiguous float32 matrix the re-ranker reads without copying.

A query must not pay for rebuilding its gallery, so the matrix is kept up to
date one entry at a time: an upsert of a known subject overwrites its row, a
new subject is appended (capacity doubles when full, so appends are amortised
O(d)), and a delete moves the last row into the hole. Row order is therefore
not enrolment order; ``ids[i]`` always names row ``i``.

The matrix is only the fast copy: durability is the rerank agent's changelog
table, from which :class:`Galleries` is rebuilt after a restart or rebalance.
"""

from __future__ import annotations

from collections.abc import Iterator, Sequence

import numpy as np

INITIAL_CAPACITY = 16


class DimensionMismatch(ValueError):
    """An embedding does not have the dimension of the gallery it is meant for."""


class Gallery:
    """The subjects of one gallery: ``matrix[i]`` is the embedding of ``ids[i]``."""

    def __init__(self, dim: int, capacity: int = INITIAL_CAPACITY) -> None:
        if dim < 1:
            raise ValueError(f"dimension must be positive, got {dim}")
        self._rows = np.empty((max(capacity, 1), dim), dtype=np.float32)
        self._ids: list[str] = []
        self._row_of: dict[str, int] = {}

    @property
    def dim(self) -> int:
        return self._rows.shape[1]

    @property
    def capacity(self) -> int:
        return self._rows.shape[0]

    @property
    def matrix(self) -> np.ndarray:
        """(len, dim) float32, C-contiguous: a view of the live rows, valid until the next change."""
        return self._rows[: len(self._ids)]

    @property
    def ids(self) -> Sequence[str]:
        """Subject id of each row: the live list itself (no copy per query), not to be modified."""
        return self._ids

    def __len__(self) -> int:
        return len(self._ids)

    def __contains__(self, subject: str) -> bool:
        return subject in self._row_of

    def upsert(self, subject: str, embedding: Sequence[float] | np.ndarray) -> None:
        """Add ``subject`` or replace its embedding."""
        vector = np.asarray(embedding, dtype=np.float32)
        if vector.shape != (self.dim,):
            raise DimensionMismatch(f"embedding of shape {vector.shape} in a gallery of dimension {self.dim}")
        row = self._row_of.get(subject)
        if row is None:
            row = len(self._ids)
            if row == self.capacity:
                self._grow()
            self._ids.append(subject)
            self._row_of[subject] = row
        self._rows[row] = vector

    def delete(self, subject: str) -> bool:
        """Remove ``subject``; False when it was not there."""
        row = self._row_of.pop(subject, None)
        if row is None:
            return False
        last = len(self._ids) - 1
        moved = self._ids.pop()
        if row != last:
            self._rows[row] = self._rows[last]
            self._ids[row] = moved
            self._row_of[moved] = row
        return True

    def _grow(self) -> None:
        # A new buffer: views handed out earlier keep the old one alive and unchanged.
        grown = np.empty((2 * self.capacity, self.dim), dtype=np.float32)
        grown[: len(self._ids)] = self._rows[: len(self._ids)]
        self._rows = grown


class Galleries:
    """Every gallery a worker holds, by gallery id; a gallery exists while it has at least one subject."""

    def __init__(self) -> None:
        self._by_id: dict[str, Gallery] = {}

    def get(self, gallery_id: str) -> Gallery | None:
        return self._by_id.get(gallery_id)

    def __iter__(self) -> Iterator[str]:
        return iter(self._by_id)

    def __len__(self) -> int:
        return len(self._by_id)

    def upsert(self, gallery_id: str, subject: str, embedding: Sequence[float] | np.ndarray) -> Gallery:
        """Add or replace a subject; the first subject of a gallery fixes its dimension."""
        gallery = self._by_id.get(gallery_id)
        if gallery is None:
            gallery = Gallery(len(embedding))
            gallery.upsert(subject, embedding)  # validates before the gallery becomes visible
            self._by_id[gallery_id] = gallery
        else:
            gallery.upsert(subject, embedding)
        return gallery

    def delete(self, gallery_id: str, subject: str) -> Gallery | None:
        """Remove a subject; the gallery is dropped with its last subject. Returns what is left, if anything."""
        gallery = self._by_id.get(gallery_id)
        if gallery is None:
            return None
        gallery.delete(subject)
        if not gallery:
            del self._by_id[gallery_id]
            return None
        return gallery

    def clear(self) -> None:
        self._by_id.clear()
