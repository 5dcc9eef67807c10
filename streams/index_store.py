"""A gallery's approximate index saved beside the worker's data and taken up again after a restart.

Building the HNSW graph of a million rows takes about nine minutes on two cores
(:mod:`streams.ann_index`); loading a saved one takes a second or two. The
saved graph is only a head start, never the truth: the gallery is rebuilt from
the changelog as always, and the graph is then brought to it. Each saved label
comes with a 64-bit digest of the stored row it was given; each rebuilt row gets
its digest too, and rows are paired by digest (equal rows in turn). A paired
label is renamed to the row's new label, a saved label left unpaired (deleted or
overwritten since) is removed, and a rebuilt row left unpaired (new or changed)
is added by the indexer thread, while searches re-score it beside the graph's
candidates. So a graph saved long ago, or from other partitions, costs time,
never a wrong answer: every score is re-computed from the rebuilt rows anyway.

A graph is saved before a rebuild and when the worker stops, once its indexer
thread has taken every change, and taken up by that thread (the gallery scans
exactly meanwhile). The metadata names a digest of the graph file, so a torn or
foreign file is refused (and the graph built from scratch) before usearch reads
a byte of it.
"""

from __future__ import annotations

import hashlib
import logging
import os
import time
from pathlib import Path

import numpy as np
from usearch.index import Index

log = logging.getLogger(__name__)

_GRAPH, _META = ".usearch", ".npz"
#: Labels are renamed through this range, so that no renamed label meets one not renamed yet.
_PARKED = np.uint64(1 << 48)
_ODD = np.uint64(0x9E3779B97F4A7C15)  # the golden-ratio multiplier: a different odd weight per word


def row_digests(rows: np.ndarray) -> np.ndarray:
    """A 64-bit digest of each stored row's bytes (a change detector, not a cryptographic hash)."""
    rows = np.ascontiguousarray(rows)
    raw = rows.view(np.uint8).reshape(len(rows), -1)
    pad = -raw.shape[1] % 8
    words = np.pad(raw, ((0, 0), (0, pad))).view(np.uint64) if pad else raw.view(np.uint64)
    weights = (np.arange(1, words.shape[1] + 1, dtype=np.uint64) * _ODD) | np.uint64(1)
    with np.errstate(over="ignore"):
        return (words * weights).sum(axis=1, dtype=np.uint64) ^ (words[:, ::-1] * _ODD).sum(axis=1, dtype=np.uint64)


def save(path: Path, graph: Index, labels: np.ndarray, rows: np.ndarray) -> None:
    """Save ``graph``, which holds ``labels`` with their stored ``rows`` and nothing else and does not change
    meanwhile, as ``path``.usearch and ``path``.npz."""
    started = time.perf_counter()
    path.parent.mkdir(parents=True, exist_ok=True)
    graph_tmp, meta_tmp = path.with_suffix(".usearch.tmp"), path.with_suffix(".npz.tmp")
    graph.save(str(graph_tmp))
    with open(meta_tmp, "wb") as meta:
        np.savez(meta, labels=labels.astype(np.uint64), digests=row_digests(rows), graph=_file_digest(graph_tmp))
    os.replace(graph_tmp, path.with_suffix(_GRAPH))
    os.replace(meta_tmp, path.with_suffix(_META))
    log.info("gallery index of %d rows saved as %s in %.1f s", len(labels), path, time.perf_counter() - started)


def restore(path: Path, graph: Index, labels: np.ndarray, rows: np.ndarray) -> np.ndarray | None:
    """Load the graph saved as ``path`` into the empty ``graph`` and bring it to ``labels`` and their stored
    ``rows``; the positions of the rows it still lacks, or None when there is no save that can be read."""
    started = time.perf_counter()
    if not _loaded(path, graph):
        return None
    with np.load(path.with_suffix(_META), allow_pickle=False) as meta:
        saved, digests = meta["labels"], meta["digests"]
    ours, theirs = _paired(digests, row_digests(rows))
    stale = np.setdiff1d(np.arange(len(saved)), ours)
    graph.remove(saved[stale])
    moving = saved[ours] != labels[theirs].astype(np.uint64)
    if moving.any():
        renamed = labels[theirs][moving].astype(np.uint64)
        graph.rename(saved[ours][moving], renamed + _PARKED)
        graph.rename(renamed + _PARKED, renamed)
    fresh = np.setdiff1d(np.arange(len(labels)), theirs)
    log.info("gallery index of %d rows restored from %s in %.1f s: %d kept, %d removed, %d to add",
             len(labels), path, time.perf_counter() - started, len(ours), len(stale), len(fresh))
    return fresh


def forget(path: Path) -> None:
    """Remove what :func:`save` wrote as ``path`` (the gallery dropped its index)."""
    for suffix in (_GRAPH, _META):
        path.with_suffix(suffix).unlink(missing_ok=True)


def _loaded(path: Path, graph: Index) -> bool:
    """Whether the saved graph was loaded into ``graph``: both files there, agreeing with each other, of rows of
    ``graph``'s dimension."""
    try:
        with np.load(path.with_suffix(_META), allow_pickle=False) as meta:
            expected, count = bytes(meta["graph"]), len(meta["labels"])
        if _file_digest(path.with_suffix(_GRAPH)).tobytes() != expected:
            log.warning("saved gallery index %s does not match its metadata: built anew", path)
            return False
        dim, ef = graph.ndim, graph.expansion_search
        graph.load(str(path.with_suffix(_GRAPH)))
    except FileNotFoundError:
        return False
    except (OSError, ValueError, KeyError, RuntimeError) as exc:
        log.warning("saved gallery index %s unreadable (%s): built anew", path, exc)
        return False
    if graph.ndim != dim or len(graph) != count:
        log.warning("saved gallery index %s holds %d %d-d rows, not %d %d-d: built anew",
                    path, len(graph), graph.ndim, count, dim)
        return False
    graph.expansion_search = ef
    return True


def _paired(saved: np.ndarray, current: np.ndarray) -> tuple[np.ndarray, np.ndarray]:
    """Positions in ``saved`` and in ``current`` (digest arrays) of rows that pair up: equal digests, the n-th
    occurrence of a digest with its n-th occurrence on the other side."""
    keys = [_occurrence_keys(digests) for digests in (saved, current)]
    _, ours, theirs = np.intersect1d(keys[0], keys[1], return_indices=True)
    return ours, theirs


def _occurrence_keys(digests: np.ndarray) -> np.ndarray:
    """Each digest folded with how many times it occurred before, so that equal rows get distinct keys."""
    order = np.argsort(digests, kind="stable")
    ordered = digests[order]
    nth = np.arange(len(ordered), dtype=np.uint64) - np.searchsorted(ordered, ordered).astype(np.uint64)
    keys = np.empty_like(digests)
    with np.errstate(over="ignore"):
        keys[order] = ordered ^ (nth * _ODD)
    return keys


def _file_digest(path: Path) -> np.ndarray:
    with open(path, "rb") as file:
        return np.frombuffer(hashlib.file_digest(file, "blake2b").digest(), dtype=np.uint8)
