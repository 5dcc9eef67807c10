"""Poison events on a real broker: each one gets exactly one dead letter, and the good photos after it their embeddings.

Every poison event is followed by good photos on the same partition, and the
test counts outputs per input offset: exactly one each, under at-least-once
and exactly-once, with the worker alive at the end. The claim-check phase also
checks that hostile files cost no memory and no time.
"""

from __future__ import annotations

import os
import time
from collections import Counter
from pathlib import Path

import numpy as np
import pytest
from confluent_kafka import Producer

from streams.codecs import AvroCodec
from streams.errors import ErrorCode
from streams.kafka import TopicNames, confluent_producer, ensure_topics
from tests.integration.test_rerank_stream import wait_for_gallery
from tests.support.ports import free_port
from tests.support.topics import read_topic
from tests.support.worker import WorkerProcess

pytestmark = pytest.mark.integration

GOOD_AFTER_EACH = 5
BIG = 8_500_000  # the size the attack used: past what a 16 MiB record can carry twice


def image_event(codec: AvroCodec, event_id: str, **fields) -> bytes:
    record = {"id": event_id, "image": None, "uri": None, "content_type": None, "produced_at": int(time.time() * 1000),
              "attributes": {}}
    return codec.encode("ImageEvent", {**record, **fields})


class Partition0:
    """Produces raw records to partition 0 of a topic and remembers what each offset was meant to get."""

    def __init__(self, settings, topic: str) -> None:
        self.producer = Producer(confluent_producer(settings))
        self.topic = topic
        self.expected: dict[int, str] = {}  # offset -> "embedding" or an ErrorCode value
        self.sent_at: dict[int, float] = {}

    def send(self, key: bytes | None, value: bytes, expect: str) -> None:
        offsets = []

        def delivered(err, msg) -> None:
            assert err is None, err
            offsets.append(msg.offset())

        self.producer.produce(self.topic, value=value, key=key, partition=0, on_delivery=delivered)
        self.producer.flush(30)
        (offset,) = offsets
        self.expected[offset] = expect
        self.sent_at[offset] = time.time()

    def count(self, embeddings: bool) -> int:
        return sum((e == "embedding") == embeddings for e in self.expected.values())


def answers(settings, topics: TopicNames, images: Partition0) -> tuple[dict[int, list[str]], list]:
    """Input offset -> what answered it ("embedding" or an error code), once both output topics hold enough."""
    embeddings = read_topic(settings, topics.embeddings, until=lambda r: len(r) >= images.count(True), settle_s=1)
    dead = read_topic(settings, topics.dlq, until=lambda r: len(r) >= images.count(False), settle_s=1)
    found: dict[int, list[str]] = {}
    for r in embeddings:
        found.setdefault(r.record["source"]["offset"], []).append("embedding")
    for r in dead:
        found.setdefault(r.record["source"]["offset"], []).append(r.record["error_code"])
    return found, [r.record for r in dead]


def vm_kib(pid: int, field: str) -> int:
    for line in Path(f"/proc/{pid}/status").read_text().splitlines():
        if line.startswith(field + ":"):
            return int(line.split()[1])
    raise KeyError(field)


@pytest.fixture
def hostile_root(tmp_path) -> Path:
    """A claim-check root holding a FIFO and a 2 GB sparse file (and, via /dev as a second root, /dev/zero)."""
    root = tmp_path / "claims"
    root.mkdir()
    os.mkfifo(root / "pipe.jpg")
    with open(root / "huge.jpg", "wb") as fh:
        fh.truncate(2 * 1024**3)
    return root


@pytest.mark.parametrize("guarantee", ["at_least_once", "exactly_once"])
def test_every_poison_event_gets_one_dead_letter_and_its_batch_survives(
    guarantee, stream_settings, photo_bytes, hostile_root, tmp_path
):
    settings = stream_settings.replace(
        processing_guarantee=guarantee, max_batch=16, max_wait_ms=200,
        uri_roots=os.pathsep.join([str(hostile_root), "/dev"]),
    )
    topics = TopicNames.from_settings(settings)
    ensure_topics(settings)
    codec = AvroCodec()
    photos = [photo_bytes[n] for n in ("obama.jpg", "biden.jpg", "obama2.jpg", "astronaut.png", "obama3.jpg")]
    images = Partition0(settings, topics.images)
    counter = iter(range(10_000))

    def good_photos() -> None:
        for data in photos[:GOOD_AFTER_EACH]:
            n = next(counter)
            images.send(f"good-{n}".encode(), image_event(codec, f"good-{n}", image=data), "embedding")

    with WorkerProcess(settings, tmp_path / "worker.log") as worker:
        pid = worker.process.pid
        good_photos()
        answers(settings, topics, images)
        peak_before = vm_kib(pid, "VmHWM")

        # Claim-check files that would block, exhaust memory or read gigabytes.
        claims = {
            "file:///dev/zero": ErrorCode.URI_UNREADABLE,
            f"file://{hostile_root}/pipe.jpg": ErrorCode.URI_UNREADABLE,
            f"file://{hostile_root}/huge.jpg": ErrorCode.PAYLOAD_TOO_LARGE,
            "file:///etc/passwd%00.jpg": ErrorCode.URI_NOT_ALLOWED,
            "file:///etc/shadow": ErrorCode.URI_NOT_ALLOWED,
            "file:///proc/self/environ": ErrorCode.URI_NOT_ALLOWED,
            "file:///no/such/file.jpg": ErrorCode.URI_NOT_ALLOWED,
            "file:etc/passwd": ErrorCode.URI_NOT_ALLOWED,
        }
        for n, (uri, code) in enumerate(claims.items()):
            images.send(f"claim-{n}".encode(), image_event(codec, f"claim-{n}", uri=uri), code.value)
        _, dead = answers(settings, topics, images)
        answered_s = max(d["at"].timestamp() - images.sent_at[d["source"]["offset"]] for d in dead)
        growth_mib = (vm_kib(pid, "VmHWM") - peak_before) / 1024
        print(f"hostile claim-check files: answered within {answered_s:.2f} s, peak RSS growth {growth_mib:.1f} MiB")
        assert growth_mib < 50, f"peak RSS grew {growth_mib:.0f} MiB on hostile claim-check files"
        good_photos()

        # Events whose outputs would not fit a Kafka record, and bytes fastavro would wrongly accept.
        body = image_event(codec, "x", image=photos[0])
        assert body[10:13] == b"\x02x\x02"  # after the 10-byte frame: id "x", then union branch 1 (bytes)
        negative_union = body[:12] + b"\x01" + body[13:]  # the same branch, as index -1
        images.send(b"big-id", image_event(codec, "i" * BIG, image=photos[0]), ErrorCode.BAD_EVENT.value)
        good_photos()
        images.send(b"k" * BIG, b"\x07not avro" * (7_000_000 // 9), ErrorCode.BAD_EVENT.value)
        good_photos()
        images.send(b"huge-undecodable", b"\x07" * (settings.max_message_bytes - 4096), ErrorCode.BAD_EVENT.value)
        good_photos()
        images.send(b"attrs", image_event(codec, "attrs", image=photos[0], attributes={"a": "v" * BIG}),
                    ErrorCode.BAD_EVENT.value)
        good_photos()
        images.send(b"trailing", body + b"junk", ErrorCode.BAD_EVENT.value)
        good_photos()
        images.send(b"negative-union", negative_union, ErrorCode.BAD_EVENT.value)
        good_photos()

        found, dead = answers(settings, topics, images)
        assert worker.alive(), worker.tail()

    per_offset = Counter(len(found.get(offset, [])) for offset in images.expected)
    assert per_offset == Counter({1: len(images.expected)}), {o: found.get(o) for o in images.expected}
    assert {o: found[o][0] for o in images.expected} == images.expected
    assert set(found) == set(images.expected)  # nothing answered that was not sent
    assert answered_s < 2.0, f"hostile claim-check files answered {answered_s:.1f} s after they were sent"
    by_key = {(d["key"] or b"")[:32]: d for d in dead}
    long_key = by_key[b"k" * 32]
    assert len(long_key["key"]) == settings.max_id_bytes and long_key["key_size"] == BIG
    assert len(long_key["key_sha256"]) == 64 and long_key["value_size"] is None
    huge = by_key[b"huge-undecodable"]
    assert huge["value_size"] == settings.max_message_bytes - 4096
    assert len(huge["value"]) == settings.dead_letter_prefix_bytes and len(huge["value_sha256"]) == 64


def gallery_entry(codec: AvroCodec, gallery: str, subject: str, embedding) -> bytes:
    return codec.encode("GalleryEntry", {"gallery_id": gallery, "subject_id": subject, "op": "UPSERT",
                                         "embedding": list(embedding), "model": None,
                                         "produced_at": int(time.time() * 1000)})


def rerank_query(codec: AvroCodec, query_id: str, gallery: str, embedding, method="cosine", candidates=None) -> bytes:
    return codec.encode("RerankQuery", {"query_id": query_id, "gallery_id": gallery, "candidates": candidates,
                                        "embedding": list(embedding), "top_k": 3, "threshold": None, "method": method,
                                        "params": {}, "produced_at": int(time.time() * 1000)})


@pytest.mark.parametrize("guarantee", ["at_least_once", "exactly_once"])
def test_poison_gallery_entries_and_queries(guarantee, stream_settings, tmp_path):
    """A huge subject id is refused (the worker lives), huge finite floats do not poison the gallery, even
    after a restart, and a million inline candidates are refused without holding up the queries behind."""
    settings = stream_settings.replace(processing_guarantee=guarantee, web_port=free_port(),
                                       group_instance_id=f"poison-{guarantee}")
    topics = TopicNames.from_settings(settings)
    ensure_topics(settings)
    codec = AvroCodec()
    rng = np.random.default_rng(3)
    alice, bob = (v / np.linalg.norm(v) for v in rng.standard_normal((2, 128)))
    entries = Partition0(settings, topics.gallery)
    queries = Partition0(settings, topics.queries)
    with WorkerProcess(settings, tmp_path / "worker.log") as worker:
        entries.send(b"g", gallery_entry(codec, "g", "alice", alice), "applied")
        entries.send(b"g", gallery_entry(codec, "g", "s" * BIG, alice), ErrorCode.BAD_EVENT.value)
        entries.send(b"g", gallery_entry(codec, "g", "huge", np.where(bob > 0, 3e38, -3e38)), "applied")
        entries.send(b"g", gallery_entry(codec, "g", "bob", bob), "applied")
        wait_for_gallery(worker, "g", 3)

        queries.send(b"g", rerank_query(codec, "q-alice", "g", alice), "result")
        many = [{"id": "c", "embedding": [1.0]}] * 1_000_000
        queries.send(b"g", rerank_query(codec, "q-many", "g", [1.0], candidates=many), ErrorCode.BAD_QUERY.value)
        queries.send(b"g", rerank_query(codec, "q-bob", "g", bob, method="query_expansion"), "result")
        results = read_topic(settings, topics.rerank_results, until=lambda r: len(r) >= 2, settle_s=1)
        dead = read_topic(settings, topics.dlq, until=lambda r: len(r) >= 2, settle_s=1)
        assert worker.alive(), worker.tail()

    with WorkerProcess(settings, tmp_path / "restarted.log") as worker:
        wait_for_gallery(worker, "g", 3)
        queries.send(b"g", rerank_query(codec, "q-after", "g", alice), "result")
        results = read_topic(settings, topics.rerank_results, until=lambda r: len(r) >= 3, settle_s=1)

    answered = Counter(r.record["source"]["offset"] for r in results + dead if r.record["source"]["topic"] == topics.queries)
    assert answered == Counter({offset: 1 for offset in queries.expected})
    source = lambda r: (r.record["source"]["topic"], r.record["source"]["offset"])  # noqa: E731
    assert {source(d): d.record["error_code"] for d in dead} == {
        **{(topics.gallery, o): e for o, e in entries.expected.items() if e != "applied"},
        **{(topics.queries, o): e for o, e in queries.expected.items() if e != "result"},
    }
    by_query = {r.record["query_id"]: r.record for r in results}
    for query_id, first in (("q-alice", "alice"), ("q-bob", "bob"), ("q-after", "alice")):
        matches = by_query[query_id]["matches"]
        assert matches[0]["id"] == first and matches[0]["score"] > 0.99, matches
        assert all(np.isfinite(m["score"]) for m in matches)
    many_offset = next(o for o, e in queries.expected.items() if e == ErrorCode.BAD_QUERY.value)
    refused_s = next(d.record["at"].timestamp() for d in dead if source(d) == (topics.queries, many_offset))
    assert refused_s - queries.sent_at[many_offset] < 2.0  # refused before a million candidates are decoded
    huge_score = {m["id"]: m["score"] for m in by_query["q-bob"]["matches"]}["huge"]
    assert 0.5 < huge_score < 0.9  # the sign pattern of bob, normalised: a real row, not zeros
