"""The worker's Prometheus metrics: names, labels, units and buckets in one place.

Every metric lives in this module's own :data:`REGISTRY` (not the global default
one) so tests can read exactly what ``/metrics`` serves, and so importing a
library that registers its own metrics cannot change what a worker exports.
Names follow Prometheus conventions: seconds as the unit, counters end in
``_total``. The Grafana dashboard is checked against :func:`exported_names`.
"""

from __future__ import annotations

from prometheus_client import (
    CONTENT_TYPE_LATEST,
    CollectorRegistry,
    Counter,
    Gauge,
    Histogram,
    PlatformCollector,
    ProcessCollector,
    generate_latest,
)

REGISTRY = CollectorRegistry(auto_describe=True)
ProcessCollector(registry=REGISTRY)
PlatformCollector(registry=REGISTRY)

#: Values of ``facestream_images_total{result}``: embedded (>= 1 face), no face found, sent to the DLQ.
IMAGE_RESULTS = ("ok", "no_face", "dlq")
#: Stages the face pipeline times itself (``ImageFaces.timings_ms``), observed once per model call.
PIPELINE_STAGES = ("detect", "align", "embed")
#: Values of ``facestream_stage_seconds{stage}``, in pipeline order: the embed agent times decode and produce.
STAGES = ("decode", *PIPELINE_STAGES, "produce")

# Batch sizes are bounded by max_batch (at most a few hundred): powers of two.
BATCH_SIZE_BUCKETS = (1, 2, 4, 8, 16, 32, 64, 128, 256)
# One stage of one batch: a millisecond (a tiny decode) to seconds (a cold GPU, a retried call).
STAGE_BUCKETS = (0.001, 0.0025, 0.005, 0.01, 0.025, 0.05, 0.1, 0.25, 0.5, 1.0, 2.5, 5.0, 10.0)
# Event timestamp to output acknowledged: includes batching wait and any backlog.
END_TO_END_BUCKETS = (0.01, 0.025, 0.05, 0.1, 0.25, 0.5, 1.0, 2.5, 5.0, 10.0, 30.0, 60.0)

IMAGES_TOTAL = Counter(
    "facestream_images_total",
    "Image events processed, by result (ok, no_face, dlq).",
    ["result"],
    registry=REGISTRY,
)
FACES_TOTAL = Counter(
    "facestream_faces_total",
    "Faces detected and embedded.",
    registry=REGISTRY,
)
BATCH_SIZE = Histogram(
    "facestream_batch_size",
    "Image events per batch handed to the models.",
    buckets=BATCH_SIZE_BUCKETS,
    registry=REGISTRY,
)
STAGE_SECONDS = Histogram(
    "facestream_stage_seconds",
    "Wall time of one pipeline stage for one batch.",
    ["stage"],
    buckets=STAGE_BUCKETS,
    registry=REGISTRY,
)
INFERENCE_SECONDS = Histogram(
    "facestream_inference_seconds",
    "Wall time of one backend inference call, by model.",
    ["model"],
    buckets=STAGE_BUCKETS,
    registry=REGISTRY,
)
END_TO_END_SECONDS = Histogram(
    "facestream_end_to_end_seconds",
    "From the image event's Kafka timestamp to its output being acknowledged by Kafka.",
    buckets=END_TO_END_BUCKETS,
    registry=REGISTRY,
)
DLQ_TOTAL = Counter(
    "facestream_dlq_total",
    "Records sent to the dead-letter topic, by error code.",
    ["error_code"],
    registry=REGISTRY,
)
RERANK_SECONDS = Histogram(
    "facestream_rerank_seconds",
    "Wall time of one re-ranking call, by method.",
    ["method"],
    buckets=STAGE_BUCKETS,
    registry=REGISTRY,
)
GALLERY_SIZE = Gauge(
    "facestream_gallery_size",
    "Entries in a gallery held by this worker.",
    ["gallery"],
    registry=REGISTRY,
)
GALLERY_BYTES = Gauge(
    "facestream_gallery_bytes",
    "Bytes the rows, row scales and subject codes of a gallery take on this worker (the labels of gallery_size).",
    ["gallery"],
    registry=REGISTRY,
)
# Rebuilding this worker's galleries from the recovered table: milliseconds (a few entries) to a minute (millions).
REBUILD_BUCKETS = (0.01, 0.1, 0.5, 1.0, 2.5, 5.0, 10.0, 20.0, 30.0, 60.0, 120.0, 300.0)
GALLERY_REBUILD_SECONDS = Histogram(
    "facestream_gallery_rebuild_seconds",
    "Wall time of rebuilding every gallery matrix from the recovered changelog table (start-up, rebalance).",
    buckets=REBUILD_BUCKETS,
    registry=REGISTRY,
)
REBUILD_SOURCES = ("held", "saved", "decoded")
GALLERY_REBUILD_ROWS = Counter(
    "facestream_gallery_rebuild_rows",
    "Rows a gallery rebuild took from the rows held before it, from the rows saved at the last stop, or decoded "
    "from the changelog (a save that is not taken up shows as decoded rows).",
    ["source"],
    registry=REGISTRY,
)
CHANGELOG_READ_SECONDS = Histogram(
    "facestream_changelog_read_seconds",
    "Wall time of reading newly assigned table changelog partitions in bulk, before faust replays what came after.",
    buckets=REBUILD_BUCKETS,
    registry=REGISTRY,
)
#: Values of ``facestream_gallery_indexes{state}``: a gallery's approximate index being built, or answering queries.
INDEX_STATES = ("building", "ready")
GALLERY_INDEX_BUILD_SECONDS = Histogram(
    "facestream_gallery_index_build_seconds",
    "Wall time of building one gallery's approximate (HNSW) index in the background, until it answers queries.",
    buckets=REBUILD_BUCKETS,
    registry=REGISTRY,
)
NEIGHBOUR_GRAPH_BUILD_SECONDS = Histogram(
    "facestream_neighbour_graph_build_seconds",
    "Wall time of building one gallery's neighbour graph (k-reciprocal) in the background, until it is installed.",
    buckets=REBUILD_BUCKETS + (600.0, 1800.0),
    registry=REGISTRY,
)
GALLERY_INDEXES = Gauge(
    "facestream_gallery_indexes",
    "Galleries on this worker whose approximate index is building (queries scan exactly) or ready (queries use it).",
    ["state"],
    registry=REGISTRY,
)
CONSUMER_LAG = Gauge(
    "facestream_consumer_lag",
    "High watermark minus the consumer group's committed offset, per partition.",
    ["topic", "partition"],
    registry=REGISTRY,
)
BACKEND_UP = Gauge(
    "facestream_backend_up",
    "1 when the inference backend answered its last readiness check, else 0.",
    ["backend"],
    registry=REGISTRY,
)

# Known label values start at zero so dashboards and rate() see the series before the first event.
for _result in IMAGE_RESULTS:
    IMAGES_TOTAL.labels(result=_result)
for _stage in STAGES:
    STAGE_SECONDS.labels(stage=_stage)
for _state in INDEX_STATES:
    GALLERY_INDEXES.labels(state=_state)
for _source in REBUILD_SOURCES:
    GALLERY_REBUILD_ROWS.labels(source=_source)


def render() -> tuple[bytes, str]:
    """The text exposition of :data:`REGISTRY` and its content type, for ``/metrics``."""
    return generate_latest(REGISTRY), CONTENT_TYPE_LATEST


def exported_names() -> set[str]:
    """Every sample name ``/metrics`` can carry (``_bucket``, ``_sum``, ``_count``, ``_total`` included)."""
    names: set[str] = set()
    suffixes = {"counter": ("_total", "_created"), "histogram": ("_bucket", "_sum", "_count", "_created")}
    for family in REGISTRY.collect():
        # A labelled metric with no children yet has no samples: derive its names from its type.
        names.update(f"{family.name}{suffix}" for suffix in suffixes.get(family.type, ("",)))
        names.update(sample.name for sample in family.samples)
    return names
