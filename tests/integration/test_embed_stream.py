"""The embed stream end to end: real photos and bad inputs through a real broker and a real worker."""

from __future__ import annotations

import os
import subprocess
import sys
import time
from collections import Counter

import numpy as np
import pytest

from streams.errors import ErrorCode
from streams.kafka import TopicNames, ensure_topics
from tests.support import REPO
from tests.support.bad_inputs import bad_files
from tests.support.photos import NO_FACE, PORTRAITS
from tests.support.topics import read_topic
from tests.support.worker import WorkerProcess

pytestmark = pytest.mark.integration

TRACEPARENT = "00-4bf92f3577b34da6a3ce929d0e0e4736-00f067aa0ba902b7-01"


def produce(settings, paths, *extra: str) -> str:
    """Publish files with the real CLI; returns what it printed."""
    env = {**os.environ, **settings.to_env()}
    done = subprocess.run(
        [sys.executable, "-m", "streams", "produce", "--no-progress", *extra, *map(str, paths)],
        cwd=REPO, env=env, capture_output=True, text=True, timeout=120,
    )
    assert done.returncode == 0, done.stderr
    return done.stdout


@pytest.fixture
def bad_paths(tmp_path, photo_bytes):
    folder = tmp_path / "bad"
    folder.mkdir()
    expected = {}
    for name, (data, code) in bad_files(photo_bytes["obama.jpg"]).items():
        (folder / name).write_bytes(data)
        expected[name] = code
    return folder, expected


def test_ten_photos_and_five_bad_inputs(stream_settings, photo_paths, bad_paths, tmp_path):
    settings = stream_settings.replace(max_batch=8, max_wait_ms=200)
    topics = TopicNames.from_settings(settings)
    ensure_topics(settings)
    bad_folder, expected_codes = bad_paths
    assert len(photo_paths) == 10
    with WorkerProcess(settings, tmp_path / "worker.log") as worker:
        printed = produce(settings, [*photo_paths.values(), bad_folder])
        assert "15 acknowledged, 0 failed" in printed

        embeddings = read_topic(settings, topics.embeddings, until=lambda r: len(r) >= 10, settle_s=3)
        dead = read_topic(settings, topics.dlq, until=lambda r: len(r) >= 5, settle_s=1)

        assert sorted(r.record["image_id"] for r in embeddings) == sorted(photo_paths)
        by_id = {r.record["image_id"]: r for r in embeddings}
        for name in PORTRAITS:
            (face,) = by_id[name].record["faces"]
            assert face["score"] > 0.9
            assert len(face["embedding"]) == by_id[name].record["model"]["dim"] == 128
            assert abs(np.linalg.norm(face["embedding"]) - 1.0) < 1e-4
            assert len(face["landmarks"]) == 10
        assert by_id[NO_FACE].record["faces"] == []
        for r in embeddings:
            assert r.key.decode() == r.record["image_id"]
            assert r.record["source"]["topic"] == topics.images

        codes = {r.key.decode(): r.record["error_code"] for r in dead}
        assert codes == {name: code.value for name, code in expected_codes.items()}
        assert len(set(codes.values())) == 5
        for r in dead:
            assert r.record["value"]  # the original ImageEvent bytes, for replay
            assert r.record["message"]

        # Still consuming after the bad inputs: one more photo comes out, traced end to end.
        assert worker.alive()
        produce_with_trace(settings, photo_paths["obama2.jpg"], "after-bad-inputs")
        later = read_topic(
            settings, topics.embeddings,
            until=lambda rs: any(r.record["image_id"] == "after-bad-inputs" for r in rs),
        )
        (after,) = [r for r in later if r.record["image_id"] == "after-bad-inputs"]
        assert after.headers.get("traceparent") == TRACEPARENT.encode()


def produce_with_trace(settings, path, event_id: str) -> None:
    from confluent_kafka import Producer

    from streams.codecs import AvroCodec
    from streams.kafka import confluent_producer

    value = AvroCodec().encode(
        "ImageEvent",
        {"id": event_id, "image": path.read_bytes(), "content_type": "image/jpeg", "produced_at": int(time.time() * 1000)},
    )
    producer = Producer(confluent_producer(settings))
    producer.produce(settings.topic("images"), key=event_id.encode(), value=value, headers={"traceparent": TRACEPARENT})
    assert producer.flush(30) == 0


def test_undecodable_event_goes_to_the_dlq_with_its_bytes(stream_settings, tmp_path):
    from confluent_kafka import Producer

    from streams.kafka import confluent_producer

    ensure_topics(stream_settings)
    producer = Producer(confluent_producer(stream_settings))
    producer.produce(stream_settings.topic("images"), key=b"garbage", value=b"\x00not avro at all")
    assert producer.flush(30) == 0
    with WorkerProcess(stream_settings, tmp_path / "worker.log"):
        (dead,) = read_topic(stream_settings, stream_settings.topic("dlq"), until=lambda r: len(r) >= 1, settle_s=1)
    assert dead.record["error_code"] == ErrorCode.BAD_EVENT.value
    assert dead.record["value"] == b"\x00not avro at all"
    assert dead.record["key"] == b"garbage"


@pytest.mark.parametrize("guarantee", ["at_least_once", "exactly_once"])
def test_sigkill_mid_stream_loses_nothing(stream_settings, photo_paths, tmp_path, guarantee, record_property):
    """SIGKILL the worker while 240 events stream in, restart it: every id comes out at least once."""
    settings = stream_settings.replace(processing_guarantee=guarantee, max_batch=8, max_wait_ms=100)
    topics = TopicNames.from_settings(settings)
    ensure_topics(settings)
    sources = [photo_paths[n] for n in PORTRAITS]
    repeat = 48
    expected = {f"{p.name}-{k}" for p in sources for k in range(1, repeat + 1)}
    worker = WorkerProcess(settings, tmp_path / "worker.log").start()
    try:
        worker.wait_ready()
        producer = subprocess.Popen(
            [sys.executable, "-m", "streams", "produce", "--no-progress", "--repeat", str(repeat), "--rate", "40",
             *map(str, sources)],
            cwd=REPO, env={**os.environ, **settings.to_env()},
        )
        # Kill once a good part of the stream is out and more is on its way.
        read_topic(settings, topics.embeddings, until=lambda r: len(r) >= 60, timeout_s=120)
        worker.kill()
        assert producer.wait(120) == 0
        worker = WorkerProcess(settings, tmp_path / "worker.log").start()
        worker.wait_ready()
        out = read_topic(
            settings, topics.embeddings,
            until=lambda r: {x.record["image_id"] for x in r} >= expected, timeout_s=240, settle_s=3,
        )
    finally:
        worker.stop()
    ids = Counter(r.record["image_id"] for r in out)
    assert set(ids) == expected, f"missing: {sorted(expected - set(ids))[:10]}"
    duplicates = sum(n - 1 for n in ids.values())
    record_property("duplicates", duplicates)
    print(f"{guarantee}: {len(out)} records for {len(expected)} ids, {duplicates} duplicates")
    if guarantee == "exactly_once":
        doubled = sorted(
            (r.record["image_id"], r.partition, r.offset, r.record["source"]["offset"])
            for r in out if ids[r.record["image_id"]] > 1
        )
        assert duplicates == 0, f"duplicated (id, out partition, out offset, source offset): {doubled[:12]}"
