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
reported meanwhile are journaled (last change per label wins) and replayed
onto the new graph before it is installed, so none is lost. Once installed,
each change is applied at once, O(log G). Until then :attr:`AnnIndex.ready`
is false and queries take the exact scan.
"""

from __future__ import annotations

import logging
import threading
import time

import numpy as np
from usearch.index import Index

from . import metrics

log = logging.getLogger(__name__)

#: Candidates a search keeps (HNSW's ef) and the gallery re-scores: recall@10 1.0 at a million clustered rows.
DEFAULT_EF = 128
CONNECTIVITY = 16  # graph neighbours per node (twice that on the bottom layer)
EXPANSION_ADD = 128  # candidates an insert considers: at 64, recall@10 at a million rows tops out at 0.990
BUILD_CHUNK = 1 << 16  # rows per multi-threaded add: a dropped index stops building within one chunk
#: Nodes one search visits, roughly (ef times the bottom layer's neighbours): its cost in distance computations.
SEARCH_VISITS = 4096


def new_index(dim: int, ef: int) -> Index:
    """An empty graph with the project's parameters (int8 vectors, cosine), searching ``ef`` candidates deep."""
    return Index(
        ndim=dim, metric="cos", dtype="i8", connectivity=CONNECTIVITY, expansion_add=EXPANSION_ADD,
        expansion_search=ef,
    )


class AnnIndex:
    """One gallery's HNSW graph over its rows, keyed by label; built in the background, then kept up to date.

    Changes come from one thread (the gallery's owner) and never run at the same time as a search; the
    background build only ever touches its own graph and the journal, under :attr:`_lock`.
    """

    def __init__(self, dim: int, ef: int) -> None:
        self.dim = dim
        self.ef = ef
        self._lock = threading.Lock()
        self._index: Index | None = None  # installed: searched and updated in place
        self._journal: dict[int, np.ndarray | None] | None = None  # while building: label -> row, or None deleted
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

    def __len__(self) -> int:
        """Templates the installed graph holds; 0 before."""
        index = self._index
        return len(index) if index is not None else 0

    def build(self, labels: np.ndarray, rows: np.ndarray) -> None:
        """Build from ``labels`` and their ``rows`` (copies the caller no longer changes) in a background thread.

        Changes reported from this call on are journaled and replayed before the graph is installed.
        """
        self._journal = {}
        metrics.GALLERY_INDEXES.labels(state="building").inc()
        self._thread = threading.Thread(target=self._build, args=(labels, rows), name="gallery-index", daemon=True)
        self._thread.start()

    def wait(self, timeout: float | None = None) -> bool:
        """Wait for a background build to finish; whether the graph is ready."""
        if self._thread is not None:
            self._thread.join(timeout)
        return self.ready

    def upserted(self, label: int, row: np.ndarray) -> None:
        """Template ``label`` now holds ``row`` (new or overwritten; in the gallery's storage dtype)."""
        with self._lock:
            if self._journal is not None:
                self._journal[label] = _spread(row)
            elif self._index is not None:
                self._index.remove(label)
                self._index.add(label, _spread(row), threads=1)

    def deleted(self, label: int) -> None:
        """Template ``label`` is gone (the label may be given to a new template later)."""
        with self._lock:
            if self._journal is not None:
                self._journal[label] = None
            elif self._index is not None:
                self._index.remove(label)

    def search(self, query: np.ndarray, count: int) -> np.ndarray:
        """Labels of about the ``max(count, ef)`` rows nearest float32 unit ``query``, on the caller's thread."""
        index = self._index
        if index is None:
            raise RuntimeError("the index is not ready: scan exactly")
        return index.search(_spread(query), max(count, self.ef), threads=1).keys

    def close(self) -> None:
        """Drop the graph; a build under way stops within a chunk and installs nothing."""
        with self._lock:
            self._closed = True
            if self._index is not None:
                metrics.GALLERY_INDEXES.labels(state="ready").dec()
            self._index, self._journal = None, None

    def _build(self, labels: np.ndarray, rows: np.ndarray) -> None:
        started = time.perf_counter()
        try:
            index = new_index(self.dim, self.ef)
            for start in range(0, len(labels), BUILD_CHUNK):
                if self._closed:
                    return
                index.add(labels[start : start + BUILD_CHUNK], _spread(rows[start : start + BUILD_CHUNK]), threads=0)
            while self._replayed(index):
                pass
        except Exception:  # the gallery keeps answering by the exact scan
            log.exception("building a gallery index of %d rows failed", len(labels))
        finally:
            metrics.GALLERY_INDEXES.labels(state="building").dec()
        if self.ready:
            seconds = time.perf_counter() - started
            metrics.GALLERY_INDEX_BUILD_SECONDS.observe(seconds)
            log.info("gallery index of %d rows built in %.1f s", len(index), seconds)

    def _replayed(self, index: Index) -> bool:
        """Replay what was journaled since the last round onto ``index``; once nothing was, install it (False)."""
        with self._lock:
            if self._closed:
                return False
            changes, self._journal = self._journal, {}
            if not changes:
                self._index, self._journal = index, None
                metrics.GALLERY_INDEXES.labels(state="ready").inc()
                return False
        # Outside the lock: the gallery keeps journaling while a large round (a bulk load's) is added.
        index.remove(np.fromiter(changes, dtype=np.uint64, count=len(changes)))
        kept = {label: row for label, row in changes.items() if row is not None}
        if kept:
            index.add(np.fromiter(kept, dtype=np.uint64, count=len(kept)), np.stack(list(kept.values())), threads=0)
        return True


def _spread(vectors: np.ndarray) -> np.ndarray:
    """Vectors (a new array) scaled to a largest component of 1, so that usearch's int8 (127 x) uses its whole
    range (a unit row's largest component is about 0.3: a third of it); no cosine changes. int8 rows, quantised
    per row by the gallery (:mod:`streams.rows`), already do."""
    if vectors.dtype == np.int8:
        return vectors.copy()
    vectors = vectors.astype(np.float32)
    return vectors / np.abs(vectors).max(axis=-1, keepdims=True)
