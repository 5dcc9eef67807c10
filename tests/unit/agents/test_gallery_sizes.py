"""facestream_gallery_size keeps a bounded number of series whatever gallery ids arrive."""

from __future__ import annotations

from streams import metrics
from streams.agents.gallery_sizes import OTHER, GallerySizes


def series() -> dict[str, float]:
    return {s.labels["gallery"]: s.value for s in metrics.GALLERY_SIZE.collect()[0].samples}


def test_galleries_past_the_label_limit_are_summed_under_other():
    for gallery in list(series()):
        metrics.GALLERY_SIZE.remove(gallery)
    sizes = GallerySizes(max_labels=2)
    for n in range(3000):
        sizes.publish(f"g{n}", 1)
    assert series() == {"g0": 1, "g1": 1, OTHER: 2998}
    sizes.publish("g5", 4)
    sizes.publish("g6", 0)
    sizes.publish("g0", 0)
    assert series() == {"g1": 1, OTHER: 3000}
    for n in range(2, 3000):
        sizes.publish(f"g{n}", 0)
    assert series() == {"g1": 1}
