"""Unit rows stored as float32, float16 or int8, and the cosine scores and top-k over them.

A gallery scan reads every row once per query, so its cost is the bytes it
reads: float16 halves them, int8 quarters them (512, 260 and 132 bytes a
128-d row, scale included). Each stored row keeps one float32 ``scale``,
``1 / |stored row|``, so that ``(query . row) * scale`` is the exact cosine of
the vector actually stored. The C++ kernels (``ext/src/compact_*``) widen each
value to float32 in a register and compute exactly that, in float32: a score
needs no second, exact pass, and it differs from the float32 gallery's only
by what storing the row changed (float16: a relative 2^-11 per value, scores
within about 1e-4; int8: scores within about 2e-3). The top-k is the float32
top-k wherever neighbouring scores are further apart than that; the float32
rows themselves are not kept (they are in the changelog).

int8 is symmetric and per row: ``q = round(127 * x / max|x|)``. Unit
embeddings have components spread around zero, so an offset would buy
nothing; a scale per row gives every row the full [-127, 127] range whatever
its largest component; and since a cosine does not depend on a row's length,
the quantisation step itself cancels and only ``1 / |q|`` is kept.
"""

from __future__ import annotations

from typing import Any

import numpy as np

from streams import _rerank

from . import rerank

DTYPES = ("float32", "float16", "int8")


class Rows:
    """A growable (rows, dim) store of unit vectors in one of :data:`DTYPES`; rows are set by index."""

    def __init__(self, dim: int, dtype: str = "float32", capacity: int = 16) -> None:
        if dtype not in DTYPES:
            raise ValueError(f"row storage must be one of {', '.join(DTYPES)}, got {dtype!r}")
        self.dtype = dtype
        self.count = 0
        self._values = np.empty((max(capacity, 1), dim), dtype=np.dtype(dtype))
        self._scale = np.ones(max(capacity, 1), dtype=np.float32)

    @classmethod
    def wrap(cls, matrix: np.ndarray) -> Rows:
        """Float32 unit rows already at hand (inline candidates), used in place."""
        rows = cls.__new__(cls)
        rows.dtype, rows.count = "float32", len(matrix)
        rows._values = np.ascontiguousarray(matrix, dtype=np.float32)
        rows._scale = np.ones(len(matrix), dtype=np.float32)
        return rows

    @property
    def shape(self) -> tuple[int, int]:
        return (self.count, self._values.shape[1])

    @property
    def capacity(self) -> int:
        return self._values.shape[0]

    @property
    def stored(self) -> np.ndarray:
        """The live rows as stored (any dtype): a view, valid until the next change."""
        return self._values[: self.count]

    @property
    def nbytes(self) -> int:
        """Bytes the live rows take, their scales included when compact."""
        return self.count * self.bytes_per_row

    @property
    def bytes_per_row(self) -> int:
        return self._values.shape[1] * self._values.itemsize + (0 if self.dtype == "float32" else 4)

    def __len__(self) -> int:
        return self.count

    def set(self, row: int, vector: np.ndarray) -> None:
        """Store float32 unit ``vector`` at ``row`` (``row == count`` appends, growing when full)."""
        if row == self.count:
            if row == self.capacity:
                self._grow(row + 1)
            self.count += 1
        self._store(row, vector[None, :])

    @property
    def scales(self) -> np.ndarray:
        """Each live row's ``1 / |stored row|`` (ones when float32): a view like :attr:`stored`."""
        return self._scale[: self.count]

    def extend(self, block: np.ndarray, scales: np.ndarray | None = None) -> None:
        """Append float32 unit rows ``block`` (n, dim) at once, stored as :meth:`set` stores each (a rebuild); or,
        given their ``scales``, rows already in the storage dtype, as :attr:`stored` and :attr:`scales` gave them."""
        if scales is not None and (block.dtype != self._values.dtype or scales.shape != (len(block),)):
            raise ValueError(
                f"{block.dtype} rows with {scales.shape} scales are not {len(block)} stored {self.dtype} rows"
            )
        start = self.count
        if start + len(block) > self.capacity:
            self._grow(start + len(block))
        self.count += len(block)
        if scales is None:
            self._store(start, block)
        else:
            self._values[start : self.count], self._scale[start : self.count] = block, scales

    def _store(self, start: int, block: np.ndarray) -> None:
        """Rows ``start ..`` in the storage dtype, with their scales: one vectorised pass, whatever the count."""
        end = start + len(block)
        if self.dtype == "float32":
            self._values[start:end] = block
            return
        if self.dtype == "float16":
            stored = block.astype(np.float16)
        else:
            stored = np.rint(block * (127.0 / np.abs(block).max(axis=1, keepdims=True))).astype(np.int8)
        self._values[start:end] = stored
        wide = stored.astype(np.float64)
        self._scale[start:end] = 1.0 / np.sqrt(np.einsum("ij,ij->i", wide, wide))

    def move_last(self, row: int) -> None:
        """Drop ``row``, moving the last row into its place (the caller moves what it keeps beside the rows)."""
        last = self.count - 1
        if row != last:
            self._values[row] = self._values[last]
            self._scale[row] = self._scale[last]
        self.count = last

    def dense(self) -> np.ndarray:
        """(count, dim) float32 unit rows: the live view when stored as float32, else a dequantised copy."""
        if self.dtype == "float32":
            return self.stored
        return self.stored.astype(np.float32) * self._scale[: self.count, None]

    def __array__(self, dtype: Any = None, copy: Any = None) -> np.ndarray:
        """What the dense re-ranking methods read (k-reciprocal, query expansion: small galleries)."""
        dense = self.dense()
        return dense if dtype is None else dense.astype(dtype)

    def scores(self, query: np.ndarray, *, threads: int = 0) -> np.ndarray:
        """The cosine of float32 unit ``query`` (dim,) with every row, float32 (count,)."""
        if self.dtype == "float32":
            return self.stored @ query
        name = "compact_scores_f16" if self.dtype == "float16" else "compact_scores_i8"
        return getattr(_rerank, name)(query[None, :], self._compact(), self._scale[: self.count], threads=threads)[0]

    def scores_at(self, rows: np.ndarray, query: np.ndarray) -> np.ndarray:
        """The cosines of :meth:`scores` for ``rows`` only (an index's few hundred candidates), float32."""
        return (self._values[rows].astype(np.float32) @ query) * self._scale[rows]

    def topk(self, queries: np.ndarray, k: int, *, threads: int = 0) -> tuple[np.ndarray, np.ndarray]:
        """``(indices int64 (Q, k), cosines float32 (Q, k))`` of the best rows for each query, ties by lower index."""
        if self.dtype == "float32":
            return rerank.cosine_topk(queries, self.stored, k, threads=threads)
        name = "compact_topk_f16" if self.dtype == "float16" else "compact_topk_i8"
        q = np.ascontiguousarray(queries, dtype=np.float32)
        return getattr(_rerank, name)(q, self._compact(), self._scale[: self.count], k, threads=threads)

    def _compact(self) -> np.ndarray:
        return self.stored.view(np.uint16) if self.dtype == "float16" else self.stored

    def _grow(self, rows: int) -> None:
        """Room for at least ``rows``, doubling: appends are amortised O(dim)."""
        # A new buffer: views handed out earlier keep the old one alive and unchanged.
        capacity = max(2 * self.capacity, rows)
        values = np.empty((capacity, self._values.shape[1]), dtype=self._values.dtype)
        values[: self.count] = self._values[: self.count]
        scale = np.ones(capacity, dtype=np.float32)
        scale[: self.count] = self._scale[: self.count]
        self._values, self._scale = values, scale
