"""``facestream_gallery_size`` and ``facestream_gallery_bytes`` with a bounded number of series, whatever
gallery ids the topic brings.

Gallery ids come from the topic, so one series per id would let producers grow
``/metrics`` without bound (3,000 ids took it from 10 KB to 156 KB). The first
``max_labels`` galleries seen get a series of their own; every other gallery is
summed into ``gallery="_other"``, entries and bytes alike.
"""

from __future__ import annotations

from .. import metrics

OTHER = "_other"


class GallerySizes:
    """Publishes gallery sizes under at most ``max_labels`` + 1 label values."""

    def __init__(self, max_labels: int) -> None:
        self.max_labels = max_labels
        self._labelled: set[str] = set()
        self._others: dict[str, tuple[int, int]] = {}
        self._others_total = (0, 0)

    def publish(self, gallery_id: str, size: int, nbytes: int = 0) -> None:
        """Gallery ``gallery_id`` now holds ``size`` entries in ``nbytes`` bytes (size 0: it is gone)."""
        if gallery_id in self._labelled:
            if size:
                _set(gallery_id, size, nbytes)
            else:
                self._labelled.discard(gallery_id)
                _remove(gallery_id)
            return
        if size and gallery_id not in self._others and len(self._labelled) < self.max_labels:
            self._labelled.add(gallery_id)
            _set(gallery_id, size, nbytes)
            return
        old_size, old_bytes = self._others.pop(gallery_id, (0, 0))
        self._others_total = (self._others_total[0] + size - old_size, self._others_total[1] + nbytes - old_bytes)
        if size:
            self._others[gallery_id] = (size, nbytes)
        if self._others:
            _set(OTHER, *self._others_total)
        else:
            _remove(OTHER)


def _set(label: str, size: int, nbytes: int) -> None:
    metrics.GALLERY_SIZE.labels(gallery=label).set(size)
    metrics.GALLERY_BYTES.labels(gallery=label).set(nbytes)


def _remove(label: str) -> None:
    for gauge in (metrics.GALLERY_SIZE, metrics.GALLERY_BYTES):
        try:
            gauge.remove(label)
        except KeyError:
            pass
