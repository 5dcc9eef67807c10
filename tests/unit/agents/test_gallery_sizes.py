"""facestream_gallery_size and facestream_gallery_bytes keep a bounded number of series whatever gallery ids arrive."""

from __future__ import annotations

from streams import metrics
from streams.agents.gallery_sizes import OTHER, GallerySizes


def series(gauge=metrics.GALLERY_SIZE) -> dict[str, float]:
    return {s.labels["gallery"]: s.value for s in gauge.collect()[0].samples}


def test_galleries_past_the_label_limit_are_summed_under_other():
    for gauge in (metrics.GALLERY_SIZE, metrics.GALLERY_BYTES):
        for gallery in list(series(gauge)):
            gauge.remove(gallery)
    sizes = GallerySizes(max_labels=2)
    for n in range(3000):
        sizes.publish(f"g{n}", 1, 100)
    assert series() == {"g0": 1, "g1": 1, OTHER: 2998}
    assert series(metrics.GALLERY_BYTES) == {"g0": 100, "g1": 100, OTHER: 299_800}
    sizes.publish("g5", 4, 400)
    sizes.publish("g6", 0)
    sizes.publish("g0", 0)
    assert series() == {"g1": 1, OTHER: 3000}
    assert series(metrics.GALLERY_BYTES) == {"g1": 100, OTHER: 300_000}
    for n in range(2, 3000):
        sizes.publish(f"g{n}", 0)
    assert series() == {"g1": 1}
    assert series(metrics.GALLERY_BYTES) == {"g1": 100}
