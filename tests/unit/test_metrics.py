"""The /metrics exposition: names, types, labels and buckets that operators' queries rely on."""

from __future__ import annotations

from prometheus_client.parser import text_string_to_metric_families

from streams import metrics


def _families() -> dict:
    body, content_type = metrics.render()
    assert content_type.startswith("text/plain")
    return {f.name: f for f in text_string_to_metric_families(body.decode())}


def _sample(name: str, default: float | None = None, **labels: str) -> float:
    for family in _families().values():
        for s in family.samples:
            if s.name == name and all(s.labels.get(k) == v for k, v in labels.items()):
                return s.value
    if default is None:
        raise AssertionError(f"no sample {name} {labels}")
    return default


def test_every_issue_metric_is_exposed_with_its_type():
    families = _families()
    expected = {
        "facestream_images": "counter",
        "facestream_faces": "counter",
        "facestream_batch_size": "histogram",
        "facestream_stage_seconds": "histogram",
        "facestream_inference_seconds": "histogram",
        "facestream_end_to_end_seconds": "histogram",
        "facestream_dlq": "counter",
        "facestream_rerank_seconds": "histogram",
        "facestream_gallery_size": "gauge",
        "facestream_consumer_lag": "gauge",
        "facestream_backend_up": "gauge",
    }
    for name, kind in expected.items():
        assert families[name].type == kind, name
    assert "process_cpu_seconds" in families  # the process collector


def test_label_names_match_the_contract():
    assert metrics.IMAGES_TOTAL._labelnames == ("result",)
    assert metrics.STAGE_SECONDS._labelnames == ("stage",)
    assert metrics.INFERENCE_SECONDS._labelnames == ("model",)
    assert metrics.DLQ_TOTAL._labelnames == ("error_code",)
    assert metrics.RERANK_SECONDS._labelnames == ("method",)
    assert metrics.GALLERY_SIZE._labelnames == ("gallery",)
    assert metrics.CONSUMER_LAG._labelnames == ("topic", "partition")
    assert metrics.BACKEND_UP._labelnames == ("backend",)


def test_known_stages_and_results_are_present_before_any_event():
    for stage in ("decode", "detect", "align", "embed", "produce"):
        _sample("facestream_stage_seconds_count", stage=stage)
    for result in metrics.IMAGE_RESULTS:
        _sample("facestream_images_total", result=result)


def test_observations_land_in_the_right_buckets():
    before_small = _sample("facestream_batch_size_bucket", le="4.0")
    before_all = _sample("facestream_batch_size_count")
    metrics.BATCH_SIZE.observe(3)
    metrics.BATCH_SIZE.observe(200)
    assert _sample("facestream_batch_size_bucket", le="4.0") == before_small + 1
    assert _sample("facestream_batch_size_bucket", le="256.0") >= before_all + 2
    assert _sample("facestream_batch_size_count") == before_all + 2

    before = _sample("facestream_end_to_end_seconds_bucket", le="60.0")
    metrics.END_TO_END_SECONDS.observe(45.0)
    assert _sample("facestream_end_to_end_seconds_bucket", le="60.0") == before + 1


def test_counters_and_gauges_move():
    before = _sample("facestream_dlq_total", 0.0, error_code="CORRUPT_IMAGE")
    metrics.DLQ_TOTAL.labels(error_code="CORRUPT_IMAGE").inc()
    assert _sample("facestream_dlq_total", error_code="CORRUPT_IMAGE") == before + 1

    metrics.CONSUMER_LAG.labels(topic="face.images", partition="3").set(17)
    assert _sample("facestream_consumer_lag", topic="face.images", partition="3") == 17


def test_bucket_ranges_suit_each_quantity():
    assert metrics.BATCH_SIZE_BUCKETS[0] == 1 and metrics.BATCH_SIZE_BUCKETS[-1] == 256
    assert metrics.STAGE_BUCKETS[0] == 0.001 and metrics.STAGE_BUCKETS[-1] == 10.0
    assert metrics.END_TO_END_BUCKETS[0] == 0.01 and metrics.END_TO_END_BUCKETS[-1] == 60.0


def test_exported_names_include_sample_suffixes_but_not_bare_family_names():
    names = metrics.exported_names()
    assert {"facestream_images_total", "facestream_stage_seconds_bucket", "facestream_consumer_lag"} <= names
    assert "facestream_images" not in names
    assert "facestream_stage_seconds" not in names

