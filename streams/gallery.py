"""Galleries held by a worker, each as one contiguous matrix the re-ranker reads without copying.

A subject may hold several templates (one per enrolled photo, say): each
template is a row, and ``ids[i]`` names the subject of row ``i``, ``codes[i]``
the same subject as a small integer, so that per-subject scores are one
vectorised pass (:mod:`streams.identity.subjects`). A template nobody named is
the subject's default template, ``""``.

A query must not pay for rebuilding its gallery, so the matrix is kept up to
date one entry at a time: an upsert of a known template overwrites its row, a
new one is appended (capacity doubles when full, so appends are amortised
O(d)), and a delete moves the last row into the hole. Row order is therefore
not enrolment order.

A gallery keeps one model: the first entry that names its model fixes it, and
embeddings of any other model are refused (:class:`ModelMismatch`); entries
that name none (older producers) are taken as they come.

Rows are stored as float32, float16 or int8 (:mod:`streams.rows`, the
``FACESTREAM_GALLERY_DTYPE`` setting): compact rows take half or a quarter of
the memory and of the bytes a query scan reads, and are scored exactly as stored.

From ``index_min`` rows on, a gallery also keeps an approximate (HNSW) index
of its rows (:mod:`streams.ann_index`), built in the background; once it is
ready, cosine queries take their candidates from it (:meth:`Gallery.nearest`)
and re-score them exactly from the rows, instead of scanning every row. The
index is keyed by a label per template that, unlike its row, never moves.
Given a directory, :class:`Galleries` saves each index there before a rebuild
and when the worker stops, and a bulk load takes the saved one up again
(:mod:`streams.index_store`): seconds, where building one takes minutes.

The matrix is only the fast copy: durability is the rerank agent's changelog
table, from which :class:`Galleries` is rebuilt after a restart or rebalance.
Each row keeps its origin, what it was built from, so that a rebuild can take
the rows held or saved (:mod:`streams.gallery_store`) for the values they came
from instead of decoding these again.
"""

from __future__ import annotations

import hashlib
from collections.abc import Callable, Iterator, Mapping, Sequence
from pathlib import Path
from typing import Any

import numpy as np

from . import index_store
from .ann_index import DEFAULT_EF, AnnIndex
from .neighbour_graph import NeighbourGraph
from .rows import Rows

INITIAL_CAPACITY = 16
DEFAULT_TEMPLATE = ""
#: What a row was built from, as 16 opaque bytes the caller gives (the rerank agent: a digest of the changelog
#: value); all zeros when not given. A saved gallery pairs rows with values by it (:mod:`streams.gallery_store`).
ORIGIN = np.dtype("V16")


class DimensionMismatch(ValueError):
    """An embedding does not have the dimension of the gallery it is meant for."""


class ModelMismatch(ValueError):
    """An embedding was made by another model than the gallery's: the two are not comparable."""


def model_key(model: Mapping[str, Any] | None) -> tuple[str, str, int] | None:
    """What makes two embeddings comparable: the same embedder, version and dimension (the detector may differ)."""
    if model is None:
        return None
    return (model["embedder"], model["version"], model["dim"])


class Gallery:
    """The templates of one gallery: ``rows`` row ``i`` is a template of subject ``ids[i]``."""

    def __init__(
        self, dim: int, capacity: int = INITIAL_CAPACITY, dtype: str = "float32", *, index_min: int = 0,
        index_ef: int = DEFAULT_EF, index_path: Path | None = None,
    ) -> None:
        if dim < 1:
            raise ValueError(f"dimension must be positive, got {dim}")
        self._rows = Rows(dim, dtype, capacity)
        self._dim = dim
        self._codes = np.empty(max(capacity, 1), dtype=np.int64)
        self._origins = np.zeros(max(capacity, 1), dtype=ORIGIN)
        self._ids: list[str] = []
        self._templates: list[str] = []
        self._row_of: dict[tuple[str, str], int] = {}
        self._templates_of: dict[str, set[str]] = {}
        self._code_of: dict[str, int] = {}
        self._next_code = 0
        self._thresholds: dict[tuple[str, str], tuple[int, float]] = {}
        self._threshold: tuple[int, float] | None = None  # the newest of _thresholds, None when to be found again
        self.model: dict[str, Any] | None = None
        self._graph = NeighbourGraph()  # unbuilt until a k-reciprocal query asks for it
        # Each row's label, which stays with its template when rows move: what the approximate index is keyed by.
        self._labels = np.empty(max(capacity, 1), dtype=np.int64)
        self._row_of_label = np.empty(max(capacity, 1), dtype=np.int64)
        self._free_labels: list[int] = []  # of deleted templates, given to new ones: labels stay below the peak size
        self._next_label = 0
        self._index_min, self._index_ef = index_min, index_ef
        self._index: AnnIndex | None = None  # from index_min rows on (0: never)
        self._index_path = index_path  # where it is saved (index_store), if anywhere

    @property
    def dim(self) -> int:
        return self._dim

    @property
    def capacity(self) -> int:
        return self._rows.capacity

    @property
    def rows(self) -> Rows:
        """The live rows in their storage dtype, with their scores and top-k: what a query reads."""
        return self._rows

    @property
    def neighbour_graph(self) -> NeighbourGraph:
        """The rows' neighbour graph (:mod:`streams.neighbour_graph`), kept up to date once built."""
        return self._graph

    @property
    def index(self) -> AnnIndex | None:
        """The rows' approximate index (:mod:`streams.ann_index`), once the gallery has ``index_min`` rows."""
        return self._index

    @property
    def index_ready(self) -> bool:
        """Whether cosine queries go through the approximate index (:meth:`nearest`) rather than the exact scan."""
        return self._index is not None and self._index.ready

    @property
    def matrix(self) -> np.ndarray:
        """(len, dim) float32 unit rows: a view of the live rows (valid until the next change) when stored as
        float32, else a dequantised copy."""
        return self._rows.dense()

    @property
    def nbytes(self) -> int:
        """Bytes the stored rows, their scales and subject codes take (ids and maps are beside)."""
        return self._rows.nbytes + len(self._ids) * self._codes.itemsize

    @property
    def ids(self) -> Sequence[str]:
        """Subject id of each row: the live list itself (no copy per query), not to be modified."""
        return self._ids

    @property
    def codes(self) -> np.ndarray:
        """Subject of each row as an integer, equal for the templates of one subject: a view like :attr:`matrix`."""
        return self._codes[: len(self._ids)]

    @property
    def code_count(self) -> int:
        """Every value in :attr:`codes` is below this (and it stays within about twice the subjects)."""
        return self._next_code

    @property
    def keys(self) -> list[tuple[str, str]]:
        """(subject, template) of each row, as a new list."""
        return list(zip(self._ids, self._templates, strict=True))

    @property
    def thresholds(self) -> dict[tuple[str, str], tuple[int, float]]:
        """The (entry time, match threshold) set by each template whose entry set one, as a new dict."""
        return dict(self._thresholds)

    @property
    def origins(self) -> np.ndarray:
        """What each row was built from (:data:`ORIGIN`): a view like :attr:`matrix`."""
        return self._origins[: len(self._ids)]

    @property
    def subjects(self) -> int:
        """How many subjects (not templates) the gallery holds."""
        return len(self._templates_of)

    @property
    def most_templates(self) -> int:
        """The most templates any one subject has."""
        return max(map(len, self._templates_of.values()), default=0)

    @property
    def threshold(self) -> float | None:
        """The match threshold of the newest live entry that set one; None when none did."""
        if self._threshold is None:
            self._threshold = max(self._thresholds.values(), default=(0, None))
        return self._threshold[1]

    def template_of(self, row: int) -> str:
        return self._templates[row]

    def templates(self, subject: str) -> set[str]:
        """The template ids of ``subject`` (empty when unknown)."""
        return set(self._templates_of.get(subject, ()))

    def __len__(self) -> int:
        return len(self._ids)

    def __contains__(self, subject: str) -> bool:
        return subject in self._templates_of

    def check_model(self, model: Mapping[str, Any] | None) -> None:
        """Refuse an embedding of another model than the gallery's; a model not named is not checked."""
        _check_model(self.model, model)

    def upsert(
        self,
        subject: str,
        embedding: Sequence[float] | np.ndarray,
        template: str = DEFAULT_TEMPLATE,
        *,
        model: Mapping[str, Any] | None = None,
        threshold: float | None = None,
        produced_at: int = 0,
        origin: bytes = bytes(ORIGIN.itemsize),
    ) -> None:
        """Add a template of ``subject`` or replace it; ``threshold`` (with its entry's time) may set the gallery's,
        ``origin`` names what the row was built from."""
        vector = np.asarray(embedding, dtype=np.float32)
        if vector.shape != (self.dim,):
            raise DimensionMismatch(f"embedding of shape {vector.shape} in a gallery of dimension {self.dim}")
        self.upsert_many([(subject, template)], vector[None, :], origins=np.array([origin], dtype=ORIGIN), model=model,
                         thresholds=[None if threshold is None else (produced_at, threshold)])

    def upsert_many(
        self,
        keys: Sequence[tuple[str, str]],
        matrix: np.ndarray,
        *,
        origins: np.ndarray | None = None,
        model: Mapping[str, Any] | None = None,
        thresholds: Sequence[tuple[int, float] | None] | None = None,
    ) -> None:
        """Add or replace the templates ``keys`` = (subject, template) with the float32 unit rows ``matrix``, as
        :meth:`upsert` of each in turn would (a later row of a template wins), in one pass: a batch of entries.

        ``origins`` are the rows' :data:`ORIGIN` values, ``model`` is theirs (all of one: :class:`Admission`), and
        ``thresholds`` gives for each key the (entry time, threshold) it sets, or None where it clears its own.
        """
        if matrix.shape != (len(keys), self.dim):
            raise DimensionMismatch(f"rows of shape {matrix.shape} for {len(keys)} templates of dimension {self.dim}")
        self.check_model(model)
        origins = np.zeros(len(keys), dtype=ORIGIN) if origins is None else origins
        thresholds = [None] * len(keys) if thresholds is None else thresholds
        last = dict(zip(keys, range(len(keys))))
        if len(last) < len(keys):  # a template twice: its later row only
            taken = list(last.values())
            keys, matrix, origins, thresholds = list(last), matrix[taken], origins[taken], [thresholds[i] for i in taken]
        rows = np.array([self._row_of.get(key, -1) for key in keys], dtype=np.int64)
        new = rows < 0
        if new.any():
            first = len(self)
            self._new_rows([key for key, is_new in zip(keys, new.tolist(), strict=True) if is_new])
            rows[new] = np.arange(first, len(self))
            self._rows.extend(matrix[new])
        for row, vector in zip(rows[~new].tolist(), matrix[~new], strict=True):
            self._rows.set(row, vector)
        self._origins[rows] = origins
        if self._graph.kept:
            for row in rows.tolist():
                self._graph.upserted(row, self.matrix)
        if self._index is not None:
            self._index.upserted(self._labels[rows], self._rows.stored[rows])
        if self.model is None and model is not None:
            self.model = dict(model)
        for key, threshold in zip(keys, thresholds, strict=True):
            if threshold is None:
                self._thresholds.pop(key, None)
            else:
                self._thresholds[key] = (threshold[0], float(threshold[1]))
        self._threshold = None
        self._keep_index()

    def extend(
        self,
        keys: Sequence[tuple[str, str]],
        matrix: np.ndarray,
        *,
        scales: np.ndarray | None = None,
        origins: np.ndarray | None = None,
        model: Mapping[str, Any] | None = None,
        thresholds: Mapping[tuple[str, str], tuple[int, float]] | None = None,
    ) -> None:
        """Add many new templates at once: (subject, template) ``keys``, their float32 unit rows ``matrix`` (or,
        with their ``scales``, rows already stored: :attr:`Rows.stored` of a gallery saved earlier).

        What :meth:`upsert` of each would do, in one vectorised pass over the rows: a rebuild's million entries.
        ``origins`` are the rows' :data:`ORIGIN` values, ``model`` is theirs (all of one, checked by the caller) and
        ``thresholds`` maps a key to the (entry time, threshold) it set. Every key must be new to the gallery.
        """
        if matrix.shape != (len(keys), self.dim):
            raise DimensionMismatch(f"rows of shape {matrix.shape} for {len(keys)} templates of dimension {self.dim}")
        self.check_model(model)
        if not self._row_of.keys().isdisjoint(keys) or len(set(keys)) != len(keys):
            raise ValueError("extend adds new templates only, each once; an existing one is replaced by upsert")
        first = len(self)
        self._new_rows(keys)
        self._rows.extend(matrix, scales)
        if origins is not None:
            self._origins[first : len(self)] = origins
        if self._index is not None:
            self._index.upserted(self._labels[first : len(self)], self._rows.stored[first : len(self)])
        self._graph = self._graph.rebuilt(self.matrix)  # built anew (if it was in use), rather than row by row
        if self.model is None and model is not None:
            self.model = dict(model)
        self._thresholds.update(thresholds or {})
        self._threshold = None
        self._keep_index(restore=True)

    def delete(self, subject: str, template: str | None = None) -> list[str]:
        """Remove one template of ``subject``, or all of them when ``template`` is None; the templates removed."""
        held = self._templates_of.get(subject, set())
        removed = sorted(held) if template is None else [template] if template in held else []
        for name in removed:
            self._delete_row(subject, name)
        self._keep_index()
        return removed

    def nearest(self, query: np.ndarray, k: int) -> tuple[np.ndarray, np.ndarray]:
        """The index's candidates for float32 unit ``query`` (``max(k, ef)`` of them, and the rows changed since
        the index last took a change), re-scored exactly as
        :meth:`Rows.scores` scores them: ``(rows, cosines)``, best first, ties by the lower row. Needs
        :attr:`index_ready`."""
        labels = self._index.search(query, k)
        rows = self._row_of_label[labels]
        live = rows < len(self)
        live[live] = self._labels[rows[live]] == labels[live]  # not deleted (nor its label given to another row)
        rows = rows[live]
        scores = self._rows.scores_at(rows, query)
        order = np.lexsort((rows, -scores))
        return rows[order], scores[order]

    def close(self) -> None:
        """Drop what the gallery builds in the background (its index, its neighbour graph): it is going away."""
        self.drop_index()
        self._graph.close()

    def drop_index(self) -> None:
        """Forget the approximate index (a build under way stops); queries scan exactly."""
        if self._index is not None:
            self._index.close()
            self._index = None

    def save_index(self) -> bool:
        """Save the index where the gallery was told to, once it holds every change; whether it was saved."""
        if self._index is None or self._index_path is None:
            return False
        return self._index.save(self._index_path, self._labels[: len(self)], self._rows.stored)

    def forget_index(self) -> None:
        """Drop the index and what was saved of it: the gallery is gone, or too small to keep one."""
        self.drop_index()
        if self._index_path is not None:
            index_store.forget(self._index_path)

    def _delete_row(self, subject: str, template: str) -> None:
        row = self._row_of.pop((subject, template))
        self._thresholds.pop((subject, template), None)
        self._threshold = None
        held = self._templates_of[subject]
        held.discard(template)
        if not held:
            del self._templates_of[subject]
            del self._code_of[subject]
        last = len(self._ids) - 1
        moved = (self._ids.pop(), self._templates.pop())
        self._origins[row] = self._origins[last]
        label = int(self._labels[row])
        self._free_labels.append(label)
        self._rows.move_last(row)
        if row != last:
            self._codes[row] = self._codes[last]
            self._labels[row] = self._labels[last]
            self._row_of_label[self._labels[row]] = row
            self._ids[row], self._templates[row] = moved
            self._row_of[moved] = row
        if self._graph.kept:
            self._graph.deleted(row, self.matrix)
        if self._index is not None:
            self._index.deleted(label)

    def _new_rows(self, keys: Sequence[tuple[str, str]]) -> None:
        """Rows after the last, for the new templates ``keys`` = (subject, template): subject codes and labels.

        Labels of deleted templates are given first, then unused ones, so that labels stay below the peak size.
        """
        first, end = len(self._ids), len(self._ids) + len(keys)
        subjects = [subject for subject, _ in keys]
        new = [subject for subject in dict.fromkeys(subjects) if subject not in self._code_of]
        if new and self._next_code >= 2 * len(self._code_of) + INITIAL_CAPACITY:
            self._renumber()  # deleted subjects' codes are not reused: keep the code space near the count
        if end > len(self._codes):
            self._grow_columns(end)
        self._ids.extend(subjects)
        self._templates.extend(template for _, template in keys)
        self._row_of.update(zip(keys, range(first, end)))
        for subject, template in keys:
            self._templates_of.setdefault(subject, set()).add(template)
        self._code_of.update(zip(new, range(self._next_code, self._next_code + len(new))))
        self._next_code += len(new)
        self._codes[first:end] = [self._code_of[subject] for subject in subjects]
        labels = [self._free_labels.pop() for _ in range(min(len(keys), len(self._free_labels)))]
        fresh = len(keys) - len(labels)
        labels.extend(range(self._next_label, self._next_label + fresh))
        self._next_label += fresh
        if self._next_label > len(self._row_of_label):
            grown = np.empty(max(2 * len(self._row_of_label), self._next_label), dtype=np.int64)
            grown[: len(self._row_of_label)] = self._row_of_label
            self._row_of_label = grown
        self._labels[first:end] = labels
        self._row_of_label[labels] = range(first, end)

    def _keep_index(self, *, restore: bool = False) -> None:
        """Build the index in the background once the gallery has ``index_min`` rows (on a bulk load, ``restore``:
        take up the saved one if there is one); drop it below half of that (so a gallery hovering at the size
        does not rebuild over and over)."""
        if self._index is None:
            if self._index_min and len(self) >= self._index_min:
                self._index = AnnIndex(self.dim, self._index_ef)
                self._index.build(self._labels[: len(self)].copy(), self._rows.stored.copy(),
                                  saved=self._index_path if restore else None)
        elif len(self) < self._index_min // 2:
            self.forget_index()

    def _renumber(self) -> None:
        self._code_of = {subject: code for code, subject in enumerate(self._code_of)}
        self._next_code = len(self._code_of)
        for row, subject in enumerate(self._ids):
            self._codes[row] = self._code_of[subject]

    def _grow_columns(self, rows: int) -> None:
        """Room for at least ``rows`` in the columns beside the rows, doubling."""
        # New buffers, like the rows': views of the codes handed out earlier keep the old one alive and unchanged.
        live, capacity = len(self._ids), max(2 * len(self._codes), rows)
        codes, labels = np.empty(capacity, dtype=np.int64), np.empty(capacity, dtype=np.int64)
        origins = np.zeros(capacity, dtype=ORIGIN)
        codes[:live], labels[:live], origins[:live] = self._codes[:live], self._labels[:live], self._origins[:live]
        self._codes, self._labels, self._origins = codes, labels, origins


class Admission:
    """Whether a gallery takes embeddings, in turn, as its upserts would take them: the first fixes the dimension
    (a gallery of none yet), the first that names a model fixes the model. A batch is checked before any of it
    is written."""

    def __init__(self, gallery: Gallery | None) -> None:
        self.dim, self.model = (gallery.dim, gallery.model) if gallery is not None else (None, None)

    def admit(self, dim: int, model: Mapping[str, Any] | None) -> None:
        """Take an embedding of ``dim`` by ``model`` (None: not named), or raise why the gallery would refuse it."""
        if self.dim is not None and dim != self.dim:
            raise DimensionMismatch(f"embedding of dimension {dim} in a gallery of dimension {self.dim}")
        _check_model(self.model, model)
        self.dim = dim
        if self.model is None and model is not None:
            self.model = dict(model)


def _check_model(held: Mapping[str, Any] | None, model: Mapping[str, Any] | None) -> None:
    if model is not None and held is not None and model_key(model) != model_key(held):
        raise ModelMismatch(f"embedding of {_model_name(model)}, the gallery holds {_model_name(held)}: not comparable")


def _model_name(model: Mapping[str, Any]) -> str:
    return f"{model['embedder']} version {model['version']} ({model['dim']}-d)"


class Galleries:
    """Every gallery a worker holds, by gallery id; a gallery exists while it has at least one template."""

    def __init__(
        self, dtype: str = "float32", *, index_min: int = 0, index_ef: int = DEFAULT_EF, index_dir: Path | None = None
    ) -> None:
        self.dtype = dtype
        self.index_min, self.index_ef = index_min, index_ef  # each gallery's approximate index (Gallery's keywords)
        self.index_dir = index_dir  # where the indexes are saved; None: nowhere
        self._by_id: dict[str, Gallery] = {}

    def get(self, gallery_id: str) -> Gallery | None:
        return self._by_id.get(gallery_id)

    def __iter__(self) -> Iterator[str]:
        return iter(self._by_id)

    def __len__(self) -> int:
        return len(self._by_id)

    def upsert(
        self, gallery_id: str, subject: str, embedding: Sequence[float] | np.ndarray, template: str = DEFAULT_TEMPLATE,
        **entry: Any,
    ) -> Gallery:
        """Add or replace a template (``entry``: :meth:`Gallery.upsert`'s keywords); the first fixes the dimension."""
        return self._changed(
            gallery_id, len(embedding), lambda gallery: gallery.upsert(subject, embedding, template, **entry)
        )

    def upsert_many(self, gallery_id: str, keys: Sequence[tuple[str, str]], matrix: np.ndarray, **entries: Any) -> Gallery:
        """Add or replace many templates of a gallery at once (``entries``: :meth:`Gallery.upsert_many`'s keywords)."""
        return self._changed(gallery_id, matrix.shape[1], lambda gallery: gallery.upsert_many(keys, matrix, **entries),
                             capacity=len(keys))

    def extend(self, gallery_id: str, keys: Sequence[tuple[str, str]], matrix: np.ndarray, **entries: Any) -> Gallery:
        """Add many new templates to a gallery at once (``entries``: :meth:`Gallery.extend`'s keywords)."""
        return self._changed(gallery_id, matrix.shape[1], lambda gallery: gallery.extend(keys, matrix, **entries),
                             capacity=len(keys))

    def _changed(self, gallery_id: str, dim: int, change: Callable[[Gallery], None], **sized: Any) -> Gallery:
        """The gallery after ``change``; a new one (of ``dim``, ``sized``) becomes visible only once it took it."""
        gallery = self._by_id.get(gallery_id)
        if gallery is None:
            gallery = self._new(gallery_id, dim, **sized)
            change(gallery)
            self._by_id[gallery_id] = gallery
        else:
            change(gallery)
        return gallery

    def delete(self, gallery_id: str, subject: str, template: str | None = None) -> Gallery | None:
        """Remove a template, or a subject's every template; the gallery is dropped with its last. What is left."""
        gallery = self._by_id.get(gallery_id)
        if gallery is None:
            return None
        gallery.delete(subject, template)
        if not gallery:
            gallery.forget_index()
            gallery.close()
            del self._by_id[gallery_id]
            return None
        return gallery

    def save_indexes(self) -> None:
        """Save every gallery's index that holds every change (a rebuild or a stop comes)."""
        for gallery in self._by_id.values():
            gallery.save_index()

    def clear(self) -> None:
        for gallery in self._by_id.values():
            gallery.close()
        self._by_id.clear()

    def _new(self, gallery_id: str, dim: int, **sized: Any) -> Gallery:
        path = None
        if self.index_dir is not None:  # named by a digest: a gallery id is any string
            path = self.index_dir / hashlib.sha256(gallery_id.encode("utf-8", "surrogatepass")).hexdigest()[:32]
        return Gallery(dim, dtype=self.dtype, index_min=self.index_min, index_ef=self.index_ef, index_path=path,
                       **sized)
