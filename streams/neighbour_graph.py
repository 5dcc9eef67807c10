"""A gallery's neighbour graph: k-reciprocal re-ranking of one query in O(G x d), not O(G^2 x d).

:func:`streams.rerank.k_reciprocal` ranks queries and gallery jointly from the
dense (Q + G)^2 distance matrix: 0.9 s at ten thousand rows, minutes at a
hundred thousand. Most of that matrix describes the gallery rows among
themselves, which no query changes, so a :class:`NeighbourGraph` keeps it, row
by row: each row's nearest rows (enough for ``k1 + 1`` and a margin), its
largest distance, and which rows keep it among their nearest. A query then
computes its distances to the gallery and works on the neighbourhoods it
touches only; its result is the row the dense call returns for that query alone
(``k_reciprocal(query[None], gallery)``), to float32 rounding.

The graph costs nothing until it is built, O(G^2 x d) on every core: a minute
and a half at a hundred thousand rows on two cores. A gallery starts that build
on its first k-reciprocal query (:meth:`NeighbourGraph.start_build`) in a
background thread, from a copy of its rows, and the query waits for it without
holding the agents' lock, so entries and other queries go on meanwhile. Each
row the gallery appends, overwrites or deletes during the build is journaled
and replayed onto the new graph over a shadow copy of the rows, which goes
through the same changes in the same order, before the graph is installed; from
then on each change is applied at once, O(G x d).
"""

from __future__ import annotations

import inspect
import logging
import threading
import time
from concurrent.futures import Future
from typing import Any

import numpy as np

from streams import _rerank, metrics

from .background import yield_to_the_stream
from .rerank import _integer, _matrix, _real, k_reciprocal

log = logging.getLogger(__name__)

_DEFAULTS = inspect.signature(k_reciprocal).parameters
DEFAULT_K1: int = _DEFAULTS["k1"].default
DEFAULT_K2: int = _DEFAULTS["k2"].default
DEFAULT_LAMBDA: float = _DEFAULTS["lambda_value"].default


def answers(k1_max: int, k1: int, k2: int) -> bool:
    """Whether a graph built for ``k1_max`` ranks a query with these parameters (else: the dense path)."""
    return 1 <= k1 <= k1_max and 1 <= k2 <= k1_max + 1


def margin(k1_max: int) -> int:
    """Neighbours kept beyond ``k1_max + 1``: a row refills (O(G x d)) only once deletes took them all."""
    return max(8, (k1_max + 1) // 2)


class NeighbourGraph:
    """The neighbour graph of one gallery's rows: unbuilt (and free), building in the background, or built.

    Changes are reported from one thread (the gallery's owner) and never run at the same time as a query;
    a background build touches only its own core, its shadow rows and the journal, under :attr:`_lock`.
    """

    def __init__(self) -> None:
        self._core: Any = None  # installed: queried and kept up to date in place
        self._lock = threading.Lock()
        self._journal: list[tuple[int, np.ndarray | None]] | None = None  # while building: (row, new row or None)
        self._building: Future[None] | None = None
        self._wanted = 0  # the k1_max of the graph built or being built; 0 when none
        self._threads = 0
        self._closed = False

    @property
    def built(self) -> bool:
        return self._core is not None

    @property
    def k1_max(self) -> int:
        """The largest k1 the graph answers (k2 up to ``k1_max + 1``); 0 while unbuilt."""
        core = self._core
        return core.k1_max if core is not None else 0

    @property
    def kept(self) -> bool:
        """Whether the gallery reports its row changes: the graph is built or being built."""
        return self._wanted > 0

    @property
    def wanted(self) -> int:
        """The ``k1_max`` this graph is built or being built for; 0 when neither (what a rebuilt gallery rebuilds)."""
        return self._wanted

    def build(self, matrix: Any, k1_max: int, *, threads: int = 0) -> None:
        """From scratch over the gallery's rows, for queries with ``k1`` up to ``k1_max``; returns once built."""
        self.start_build(matrix, k1_max, threads=threads).result()

    def start_build(self, matrix: Any, k1_max: int, *, threads: int = 0) -> Future[None]:
        """Build in a background thread from a copy of ``matrix`` (the gallery's rows now), for ``k1`` up to
        ``k1_max``; done once the graph is installed. A build for the same ``k1_max`` under way is not
        started twice; one for another replaces it, and the graph built before is dropped at once."""
        k1_max, threads = _integer(k1_max, "k1_max"), _integer(threads, "threads")
        core = _rerank.NeighbourGraph(k1_max, margin(k1_max))  # refuses a bad k1_max here, not in the thread
        with self._lock:
            if self._building is not None and not self._building.done() and self._wanted == k1_max:
                return self._building
            rows = np.array(_matrix(matrix, "gallery"), dtype=np.float32)  # the shadow: the journal replays onto it
            # A graph built for another k1 stops being kept up to date: dropped now, replaced once built.
            self._core, self._journal, self._wanted, self._threads = None, [], k1_max, threads
            self._building = building = Future()
            building.set_running_or_notify_cancel()
        thread = threading.Thread(
            target=self._build, args=(core, rows, building), name="neighbour-graph", daemon=True
        )
        thread.start()
        return building

    def rebuilt(self, matrix: Any) -> NeighbourGraph:
        """This graph closed, and a new one over ``matrix`` (the gallery's rows, all replaced): building for the
        same ``k1_max`` when this one was built or building, else unbuilt."""
        self.close()
        graph = NeighbourGraph()
        if self._wanted:
            graph.start_build(matrix, self._wanted, threads=self._threads)
        return graph

    def close(self) -> None:
        """Drop the graph; a build under way installs nothing (its thread finishes the O(G^2 d) pass first)."""
        with self._lock:
            self._closed, self._core, self._journal = True, None, None

    def upserted(self, row: int, matrix: np.ndarray) -> None:
        """Row ``row`` of ``matrix`` (the gallery after the change) was appended or overwritten."""
        with self._lock:
            if self._journal is not None:
                self._journal.append((row, np.array(matrix[row], dtype=np.float32)))
                return
        self._maintain(self._core.upserted, row, matrix)

    def deleted(self, row: int, matrix: np.ndarray) -> None:
        """Row ``row`` was deleted and the gallery's last row moved into it; ``matrix`` is after the move."""
        with self._lock:
            if self._journal is not None:
                self._journal.append((row, None))
                return
        self._maintain(self._core.deleted, row, matrix)

    def _maintain(self, change: Any, row: int, matrix: np.ndarray) -> None:
        if self._core is None:
            return
        try:
            change(_matrix(matrix, "gallery"), row)
        except ValueError:
            self._core, self._wanted = None, 0  # a row it cannot take (NaN, say): the next query builds anew
            raise

    def _build(self, core: Any, rows: np.ndarray, building: Future[None]) -> None:
        """The background build: the O(G^2 d) pass over the snapshot, then the journal's rounds, then install."""
        yield_to_the_stream()
        started = time.perf_counter()
        try:
            core.build(rows, threads=self._threads)
            shadow = _Shadow(rows)
            while (changes := self._next_round(core, building)) is not None:
                for row, vector in changes:  # outside the lock: entries go on being journaled meanwhile
                    shadow.replay(core, row, vector)
        except BaseException as exc:  # a row it cannot take, or memory: the query that waits says so
            with self._lock:
                if self._building is building:
                    self._journal, self._wanted = None, 0
            log.warning("building a neighbour graph of %d rows failed: %s", len(rows), exc)
            building.set_exception(exc if isinstance(exc, Exception) else RuntimeError(str(exc)))
            return
        seconds = time.perf_counter() - started
        metrics.NEIGHBOUR_GRAPH_BUILD_SECONDS.observe(seconds)
        log.info("neighbour graph of %d rows (k1 up to %d) built in %.1f s", core.size, core.k1_max, seconds)
        building.set_result(None)

    def _next_round(self, core: Any, building: Future[None]) -> list[tuple[int, np.ndarray | None]] | None:
        """The changes journaled since the last round; once there are none, ``core`` installed instead (None)."""
        with self._lock:
            if self._closed or self._building is not building:
                return None  # closed, or replaced by a build for another k1: install nothing
            changes, self._journal = self._journal, []
            if not changes:
                self._core, self._journal = core, None
                return None
            return changes

    def k_reciprocal(
        self,
        query: Any,
        matrix: Any,
        k1: int = DEFAULT_K1,
        k2: int = DEFAULT_K2,
        lambda_value: float = DEFAULT_LAMBDA,
        *,
        threads: int = 0,
    ) -> np.ndarray:
        """The k-reciprocal distances, float32 (G,), of one query to the gallery ``matrix`` the graph describes."""
        if self._core is None:
            raise ValueError("the neighbour graph is not built")
        q = _matrix(query, "query")
        if q.ndim != 1:
            raise ValueError(f"query must be one vector (1-D), got shape {q.shape}")
        return self._core.k_reciprocal(
            q[None, :], _matrix(matrix, "gallery"), _integer(k1, "k1"), _integer(k2, "k2"),
            _real(lambda_value, "lambda_value"), threads=_integer(threads, "threads"),
        )[0]

    def nearest(self, row: int) -> list[tuple[int, float]]:
        """(row, squared distance) of the neighbours kept for ``row``, nearest first (itself first)."""
        return self._built().nearest(_integer(row, "row"))

    def farthest(self, row: int) -> list[tuple[int, float]]:
        """(row, squared distance) of the farthest rows kept for ``row``, farthest first."""
        return self._built().farthest(_integer(row, "row"))

    def holders(self, row: int) -> list[int]:
        """The rows that keep ``row`` among their nearest (the reverse lists a query walks), unordered."""
        return self._built().holders(_integer(row, "row"))

    def _built(self) -> Any:
        if self._core is None:
            raise ValueError("the neighbour graph is not built")
        return self._core


class _Shadow:
    """The rows a background build's graph describes, taken through the journaled changes as the gallery took
    them: an append grows them, a delete moves the last row into the hole."""

    def __init__(self, rows: np.ndarray) -> None:
        self._rows, self._count = rows, len(rows)

    def replay(self, core: Any, row: int, vector: np.ndarray | None) -> None:
        if vector is None:
            self._count -= 1
            self._rows[row] = self._rows[self._count]
            core.deleted(self._rows[: self._count], row)
            return
        if row == self._count:
            if row == len(self._rows):
                grown = np.empty((max(2 * row, 16), self._rows.shape[1]), dtype=np.float32)
                grown[:row] = self._rows[:row]
                self._rows = grown
            self._count += 1
        self._rows[row] = vector
        core.upserted(self._rows[: self._count], row)
