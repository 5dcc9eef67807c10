"""A gallery's approximate nearest-neighbour index: cosine candidates among a million rows in a millisecond.

An exact scan reads every row per query, so its time grows with the gallery:
41 ms a query at a million float32 rows on one core (15 ms float16). An HNSW
graph (Malkov and Yashunin, 2018) finds the nearest rows by walking a few
thousand of them instead: 0.83 ms, recall@10 1.0 against the exact top 10
(``perf/bench_gallery.py``, G = 1M, d = 128, clustered rows, ef = 128). The
graph only finds candidates: the gallery re-scores them exactly from its own
rows (:meth:`streams.gallery.Gallery.nearest`), so a query's scores are the
stored rows' cosines whichever path found them, and asking for ``ef``
candidates beyond the ``k`` wanted buys recall at little cost.

Why usearch, not faiss: a gallery changes one template at a time, and usearch
removes and replaces vectors by key (reusing their slots), where faiss's
``IndexHNSWFlat`` cannot remove at all: every delete or overwrite would need
tombstones, a search-time filter and rebuilds. usearch also keeps the graph's
vectors as int8 (264 MiB saved at a million rows, where faiss keeps float32,
512 MB before its links), releases the GIL while it adds, and saves, loads and
memory-maps a graph. faiss is faster on this 2-core machine, at the same
parameters and recall (1.0): it builds a million rows in 354 s against 530 s
and answers in 0.56 ms against 0.83; both are 30 to 50 times the exact scan.

Two choices were measured at a million rows: rows are scaled to a largest
component of 1 before usearch rounds them to int8 (recall 0.963 -> 0.984 at
ef = 128), and an insert considers 128 candidates (at 64, recall tops out at
0.990, ef = 192 or 256; at 128 it is 1.0 at ef = 128, and the build takes
1.7 times as long). Recovery rebuilds the graph from the recovered rows:
saving one and loading it back is 300 times faster (0.4 s + 1.4 s, or 0.35 s
to memory-map it, against 530 s), but a saved graph must name the changelog
position and the labels it holds, and while a rebuild runs the exact scan
answers.

Labels, not rows: a gallery's rows move on delete (the last row fills the
hole), so the index is keyed by a label per template that never moves
(the gallery keeps label <-> row). The build runs in a background thread from
a snapshot of the rows, off the event loop and off the agents' lock; changes
reported meanwhile are journaled (last change per label wins). Until the graph
is installed :attr:`AnnIndex.ready` is false and queries take the exact scan.
From then on the same thread adds the journaled changes to the graph, a chunk
at a time: an insert costs about a millisecond at 100,000 rows, which the event
loop would otherwise pay per entry during a bulk enrolment. A search returns
the labels still journaled beside the graph's own candidates, so a query never
misses a change the graph has not taken yet; their rows are re-scored exactly
like the rest.
"""

from __future__ import annotations

import logging
import threading
import time
from pathlib import Path

import numpy as np
from usearch.index import Index

from . import index_store, metrics
from .background import yield_to_the_stream

log = logging.getLogger(__name__)

#: Candidates a search keeps (HNSW's ef) and the gallery re-scores: recall@10 1.0 at a million clustered rows.
DEFAULT_EF = 128
CONNECTIVITY = 16  # graph neighbours per node (twice that on the bottom layer)
EXPANSION_ADD = 128  # candidates an insert considers: at 64, recall@10 at a million rows tops out at 0.990
BUILD_CHUNK = 1 << 16  # rows per multi-threaded add: a dropped index stops building within one chunk
APPLY_CHUNK = 64  # changes per add once built: tens of milliseconds, the longest a search waits for one
#: How long saving an index waits for its thread to take the last changes: a stopping worker saves every index
#: within FACESTREAM_SHUTDOWN_GRACE_S.
SAVE_WAIT_S = 2.0
#: Nodes one search visits, roughly (ef times the bottom layer's neighbours): its cost in distance computations.
SEARCH_VISITS = 4096


def new_index(dim: int, ef: int) -> Index:
    """An empty graph with the project's parameters (int8 vectors, cosine), searching ``ef`` candidates deep."""
    return Index(
        ndim=dim, metric="cos", dtype="i8", connectivity=CONNECTIVITY, expansion_add=EXPANSION_ADD,
        expansion_search=ef,
    )


class AnnIndex:
    """One gallery's HNSW graph over its rows, keyed by label: built, then kept up to date, in a background thread.

    Changes come from one thread (the gallery's owner) and never run at the same time as a search. They cost
    that thread a dictionary entry: the indexer thread adds them to the graph (about a millisecond each at
    100,000 rows), and until it has, a search returns their labels beside the graph's candidates.
    """

    def __init__(self, dim: int, ef: int) -> None:
        self.dim = dim
        self.ef = ef
        self._lock = threading.Lock()  # the pending changes and the state below
        self._graph_lock = threading.Lock()  # one usearch call at a time: its binding is not safe across threads
        self._index: Index | None = None  # installed: searched, and updated by the indexer thread
        self._pending: dict[int, np.ndarray | None] = {}  # changes not in the graph yet: label -> row, or None deleted
        self._applying: dict[int, np.ndarray | None] = {}  # the round the indexer thread is adding now
        self._wake = threading.Event()  # pending changes, or closed
        self._idle = threading.Event()  # built (or given up) with every change in the graph
        self._closed = False
        self._thread: threading.Thread | None = None

    @property
    def ready(self) -> bool:
        """Whether searches use the graph (else the caller scans exactly)."""
        return self._index is not None

    @property
    def graph(self) -> Index | None:
        """The installed usearch graph (to save, load or inspect; changes go through this class); None before."""
        return self._index

    @property
    def nbytes(self) -> int:
        """Memory the installed graph takes (vectors and links); 0 before."""
        index = self._index
        return int(index.memory_usage) if index is not None else 0

    @property
    def pending(self) -> int:
        """Changes the indexer thread has not added to the graph yet."""
        with self._lock:
            return len(self._pending) + len(self._applying)

    def __len__(self) -> int:
        """Templates the installed graph holds; 0 before."""
        index = self._index
        return len(index) if index is not None else 0

    def build(self, labels: np.ndarray, rows: np.ndarray, *, saved: Path | None = None) -> None:
        """Build from ``labels`` and their ``rows`` (copies the caller no longer changes) in a background thread,
        which then keeps the graph up to date with every change reported from this call on. ``saved``: take up
        the graph saved there instead (:mod:`streams.index_store`), if there is one that can be read."""
        metrics.GALLERY_INDEXES.labels(state="building").inc()
        self._thread = threading.Thread(
            target=self._run, args=(labels, rows, saved), name="gallery-index", daemon=True
        )
        self._thread.start()

    def save(self, path: Path, labels: np.ndarray, rows: np.ndarray) -> bool:
        """Save the graph as ``path`` once it holds every change, the gallery's ``labels`` and stored ``rows`` (the
        gallery does not change meanwhile); False when it is not built or its thread is too far behind."""
        if not self.wait(SAVE_WAIT_S):
            return False
        with self._graph_lock:
            index_store.save(path, self._index, labels, rows)
        return True

    def wait(self, timeout: float | None = None) -> bool:
        """Wait until the graph is built and holds every change reported so far; whether it is (in time)."""
        return self._idle.wait(timeout) and self.ready

    def upserted(self, labels: np.ndarray, rows: np.ndarray) -> None:
        """Templates ``labels`` now hold ``rows`` (new or overwritten; in the gallery's storage dtype)."""
        self._report(dict(zip(labels.tolist(), _spread(rows), strict=True)))

    def deleted(self, label: int) -> None:
        """Template ``label`` is gone (the label may be given to a new template later)."""
        self._report({label: None})

    def search(self, query: np.ndarray, count: int) -> np.ndarray:
        """Labels to re-score for float32 unit ``query``: about the ``max(count, ef)`` the graph finds nearest,
        and every label changed since the graph last took a change. A label may be stale (deleted, or given to
        another template since): the caller keeps live ones and re-scores them from its own rows."""
        index = self._index
        if index is None:
            raise RuntimeError("the index is not ready: scan exactly")
        with self._graph_lock:
            found = index.search(_spread(query), max(count, self.ef), threads=1).keys.astype(np.int64)
        with self._lock:
            changed = [*self._pending, *self._applying]
        return np.union1d(found, np.array(changed, dtype=np.int64)) if changed else found

    def close(self) -> None:
        """Drop the graph; a build under way stops within a chunk and installs nothing."""
        with self._lock:
            self._closed = True
            if self._index is not None:
                metrics.GALLERY_INDEXES.labels(state="ready").dec()
            self._index, self._pending, self._applying = None, {}, {}
        self._wake.set()  # the indexer thread ends (and says so to wait) after the chunk it is adding

    def _report(self, changes: dict[int, np.ndarray | None]) -> None:
        with self._lock:
            if self._closed:
                return
            self._pending.update(changes)  # the last change of a label wins
            self._idle.clear()
        self._wake.set()

    def _run(self, labels: np.ndarray, rows: np.ndarray, saved: Path | None) -> None:
        """The indexer thread: the graph of the snapshot, then rounds of the changes reported meanwhile."""
        yield_to_the_stream()
        try:
            index = self._built(labels, rows, saved)
            if index is None:
                return
            self._wake.set()  # the changes journaled meanwhile: the first round
            while self._next_round(index):
                pass
        except Exception:  # the gallery keeps answering by the exact scan
            log.exception("building or updating a gallery index of %d rows failed", len(labels))
            with self._lock:
                if self._index is not None:
                    metrics.GALLERY_INDEXES.labels(state="ready").dec()
                self._closed, self._index, self._pending, self._applying = True, None, {}, {}
        finally:
            self._idle.set()

    def _built(self, labels: np.ndarray, rows: np.ndarray, saved: Path | None) -> Index | None:
        """The graph of the snapshot, restored or built, and installed; None once closed meanwhile."""
        started = time.perf_counter()
        try:
            index = new_index(self.dim, self.ef)
            lacking = index_store.restore(saved, index, labels, rows) if saved is not None else None
            if lacking is None:
                index = new_index(self.dim, self.ef)  # a refused load may have left anything in the first
                for start in range(0, len(labels), BUILD_CHUNK):
                    if self._closed:
                        return None
                    chunk = slice(start, start + BUILD_CHUNK)
                    index.add(labels[chunk], _spread(rows[chunk]), threads=0)
        finally:
            metrics.GALLERY_INDEXES.labels(state="building").dec()
        with self._lock:
            if self._closed:
                return None
            if lacking is not None and len(lacking):  # added like changes; one reported since is newer
                spread = _spread(rows[lacking])
                for label, row in zip(labels[lacking].tolist(), spread, strict=True):
                    self._pending.setdefault(label, row)
            self._index = index
            metrics.GALLERY_INDEXES.labels(state="ready").inc()
        if lacking is None:
            seconds = time.perf_counter() - started
            metrics.GALLERY_INDEX_BUILD_SECONDS.observe(seconds)
            log.info("gallery index of %d rows built in %.1f s", len(index), seconds)
        return index

    def _next_round(self, index: Index) -> bool:
        """Wait for changes and add them to the graph, a chunk at a time (a search waits one chunk at most);
        False once closed."""
        self._wake.wait()
        with self._lock:
            self._wake.clear()
            if self._closed:
                return False
            if not self._pending:
                self._idle.set()
                return True
            self._applying, self._pending = self._pending, {}
            changes = list(self._applying.items())
        for start in range(0, len(changes), APPLY_CHUNK):
            if self._closed:
                return False
            chunk = changes[start : start + APPLY_CHUNK]
            kept = [(label, row) for label, row in chunk if row is not None]
            with self._graph_lock:
                index.remove(np.array([label for label, _ in chunk], dtype=np.uint64))
                if kept:
                    index.add(np.array([label for label, _ in kept], dtype=np.uint64),
                              np.stack([row for _, row in kept]), threads=1)
        with self._lock:
            self._applying = {}
            if not self._pending:
                self._idle.set()
        return True


def _spread(vectors: np.ndarray) -> np.ndarray:
    """Vectors (a new array) scaled to a largest component of 1, so that usearch's int8 (127 x) uses its whole
    range (a unit row's largest component is about 0.3: a third of it); no cosine changes. int8 rows, quantised
    per row by the gallery (:mod:`streams.rows`), already do."""
    if vectors.dtype == np.int8:
        return vectors.copy()
    vectors = vectors.astype(np.float32)
    return vectors / np.abs(vectors).max(axis=-1, keepdims=True)
