"""Galleries saved when a worker stops and taken up by its next rebuild: a restart decodes only what changed.

A rebuild reads every ``GalleryEntry`` back from the changelog and decodes it:
about 45 s for a million entries on two cores, nearly all of it Python per field
and per row. The changelog stays the truth; a save only remembers what its
values decoded to. Every row the rerank agent builds carries its origin
(:data:`streams.gallery.ORIGIN`), the 128-bit blake2b digest of the changelog
value it was built from (:func:`origin_of`). The next rebuild digests each value
it read back (a microsecond), takes the saved row of that origin as the value's
decoding, leaves out the saved rows whose value is gone (deleted or overwritten
meanwhile), and decodes only the values no saved row stands for
(:func:`paired`). So a save that is old, or from another worker, costs decoding
time, never a wrong row.

One file per worker, written to a temporary file and renamed: each gallery's
stored rows, scales and origins, and one JSON document of the galleries' ids,
templates, models and thresholds. Rows saved in another storage dtype than the
worker's are not taken up; the zip's CRCs refuse a torn file.
"""

from __future__ import annotations

import hashlib
import json
import logging
import os
import time
import zipfile
from collections.abc import Sequence
from dataclasses import dataclass
from pathlib import Path
from typing import Any

import numpy as np

from .gallery import ORIGIN, Galleries

log = logging.getLogger(__name__)

_FORMAT = 1


def origin_of(value: bytes) -> bytes:
    """The origin of a row built from changelog ``value``: its 128-bit blake2b digest."""
    return hashlib.blake2b(value, digest_size=ORIGIN.itemsize).digest()


@dataclass(frozen=True)
class SavedGallery:
    """What :meth:`~streams.gallery.Gallery.extend` needs to build a gallery's rows again without decoding them."""

    gallery_id: str
    keys: list[tuple[str, str]]  # (subject, template) of each row
    rows: np.ndarray  # as stored
    scales: np.ndarray
    origins: np.ndarray  # ORIGIN of each row
    model: dict[str, Any] | None
    thresholds: dict[tuple[str, str], tuple[int, float]]

    def kept(self, keep: np.ndarray) -> SavedGallery:
        """The rows where boolean ``keep`` is true."""
        keys = [key for key, kept in zip(self.keys, keep.tolist(), strict=True) if kept]
        kept_keys = set(keys)
        return SavedGallery(
            self.gallery_id, keys, self.rows[keep], self.scales[keep], self.origins[keep], self.model,
            {key: value for key, value in self.thresholds.items() if key in kept_keys},
        )


def held(galleries: Galleries) -> list[SavedGallery]:
    """What ``galleries`` hold now, as a save would keep it: their rows of a known origin (views, not copies)."""
    saved = []
    for gallery_id in galleries:
        gallery = galleries.get(gallery_id)
        part = SavedGallery(
            gallery_id, gallery.keys, gallery.rows.stored, gallery.rows.scales, gallery.origins, gallery.model,
            gallery.thresholds,
        )
        known = part.origins != np.zeros(1, ORIGIN)
        saved.append(part if known.all() else part.kept(known))
    return saved


def save(path: Path, saved: Sequence[SavedGallery], dtype: str) -> None:
    """Write ``saved`` galleries of rows stored as ``dtype`` to ``path``, replacing what was there at once."""
    started = time.perf_counter()
    path.parent.mkdir(parents=True, exist_ok=True)
    meta = {
        "format": _FORMAT, "dtype": dtype,
        "galleries": [
            {"id": part.gallery_id, "keys": part.keys, "model": part.model,
             "thresholds": [[*key, at, threshold] for key, (at, threshold) in part.thresholds.items()]}
            for part in saved
        ],
    }
    arrays: dict[str, np.ndarray] = {"meta": np.frombuffer(json.dumps(meta).encode(), dtype=np.uint8)}
    for i, part in enumerate(saved):
        arrays[f"rows{i}"], arrays[f"scales{i}"], arrays[f"origins{i}"] = part.rows, part.scales, part.origins
    temporary = path.with_suffix(".tmp")
    with open(temporary, "wb") as file:
        np.savez(file, **arrays)
    os.replace(temporary, path)
    log.info("%d galleries of %d rows saved as %s in %.1f s", len(saved), sum(len(p.keys) for p in saved), path,
             time.perf_counter() - started)


def load(path: Path, dtype: str) -> list[SavedGallery]:
    """The galleries saved as ``path`` with rows stored as ``dtype``; none when there is no such save to read."""
    started = time.perf_counter()
    try:
        with np.load(path, allow_pickle=False) as file:
            meta = json.loads(file["meta"].tobytes())
            if meta.get("format") != _FORMAT or meta.get("dtype") != dtype:
                log.info("saved galleries %s are of format %s, %s rows: decoded anew", path, meta.get("format"),
                         meta.get("dtype"))
                return []
            saved = [_part(entry, file[f"rows{i}"], file[f"scales{i}"], file[f"origins{i}"], dtype)
                     for i, entry in enumerate(meta["galleries"])]
    except FileNotFoundError:
        return []
    except (OSError, ValueError, KeyError, TypeError, zipfile.BadZipFile) as exc:
        log.warning("saved galleries %s unreadable (%s): decoded anew", path, exc)
        return []
    log.info("%d saved galleries of %d rows read from %s in %.1f s", len(saved), sum(len(p.keys) for p in saved),
             path, time.perf_counter() - started)
    return saved


def paired(saved: Sequence[SavedGallery], origins: Sequence[bytes]) -> tuple[list[SavedGallery], list[int]]:
    """The saved rows that stand for one of the changelog values of ``origins`` (:func:`origin_of`) each, gallery
    by gallery (those that keep any), and the positions of the values none stands for: still to be decoded."""
    saved_origins = [origin for part in saved for origin in part.origins.tolist()]
    where = dict(zip(saved_origins, range(len(saved_origins))))
    found = np.zeros(len(saved_origins), dtype=bool)
    left = []
    for position, origin in enumerate(origins):
        row = where.pop(origin, None)  # popped: a value stands for one row however often it is saved
        if row is None:
            left.append(position)
        else:
            found[row] = True
    kept, first = [], 0
    for part in saved:
        keep = found[first : first + len(part.keys)]
        first += len(part.keys)
        if keep.all():
            kept.append(part)
        elif keep.any():
            kept.append(part.kept(keep))
    return kept, left


def _part(entry: dict[str, Any], rows: np.ndarray, scales: np.ndarray, origins: np.ndarray, dtype: str) -> SavedGallery:
    """One gallery of a save, its parts checked against each other."""
    keys = [(subject, template) for subject, template in entry["keys"]]
    if not (len(keys) == len(rows) == len(scales) == len(origins)) or rows.ndim != 2 or rows.dtype != dtype \
            or scales.dtype != np.float32 or origins.dtype != ORIGIN:
        raise ValueError(f"gallery {entry['id']!r}: {len(keys)} keys, {rows.dtype} rows {rows.shape}, "
                         f"{scales.dtype} scales, {len(origins)} {origins.dtype} origins")
    thresholds = {(subject, template): (int(at), float(threshold))
                  for subject, template, at, threshold in entry["thresholds"]}
    return SavedGallery(entry["id"], keys, rows, scales, origins, entry["model"], thresholds)
