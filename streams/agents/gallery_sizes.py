"""``facestream_gallery_size`` with a bounded number of series, whatever gallery ids the topic brings.

Gallery ids come from the topic, so one series per id would let producers grow
``/metrics`` without bound (3,000 ids took it from 10 KB to 156 KB). The first
``max_labels`` galleries seen get a series of their own; every other gallery is
summed into ``gallery="_other"``.
"""

from __future__ import annotations

from .. import metrics

OTHER = "_other"


class GallerySizes:
    """Publishes gallery sizes under at most ``max_labels`` + 1 label values."""

    def __init__(self, max_labels: int) -> None:
        self.max_labels = max_labels
        self._labelled: set[str] = set()
        self._others: dict[str, int] = {}
        self._others_total = 0

    def publish(self, gallery_id: str, size: int) -> None:
        """Gallery ``gallery_id`` now holds ``size`` entries (0: it is gone)."""
        if gallery_id in self._labelled:
            if size:
                metrics.GALLERY_SIZE.labels(gallery=gallery_id).set(size)
            else:
                self._labelled.discard(gallery_id)
                metrics.GALLERY_SIZE.remove(gallery_id)
            return
        if size and gallery_id not in self._others and len(self._labelled) < self.max_labels:
            self._labelled.add(gallery_id)
            metrics.GALLERY_SIZE.labels(gallery=gallery_id).set(size)
            return
        self._others_total += size - self._others.pop(gallery_id, 0)
        if size:
            self._others[gallery_id] = size
        if self._others:
            metrics.GALLERY_SIZE.labels(gallery=OTHER).set(self._others_total)
        else:
            try:
                metrics.GALLERY_SIZE.remove(OTHER)
            except KeyError:
                pass
