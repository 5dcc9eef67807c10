"""`make demo` (``python -m scripts.demo``): the whole product in one minute, on a fresh machine.

Starts the local Kafka broker (unless one already answers), a worker on the
in-process ONNX Runtime backend, publishes the sample photographs, reads their
embeddings back from the embeddings topic, prints the faces per image and the
Obama-Obama / Obama-Biden similarities, then stops what it started. What it
prints is all a newcomer sees unless something goes wrong: the worker writes
to .cache/demo-worker.log.
"""

from __future__ import annotations

import json
import logging
import subprocess
import sys
import threading
import time

import confluent_kafka
from confluent_kafka import Consumer

from streams.codecs import AvroCodec
from streams.config import Settings
from streams.kafka import (
    TopicNames,
    confluent_consumer,
    confluent_producer,
    end_offsets,
    ensure_topics,
    messages,
)
from streams.models.families import SFACE
from tests.support import REPO
from tests.support.broker import KAFKA_LOCAL
from tests.support.photos import PHOTOS, fetch
from tests.support.worker import WorkerProcess

WORKER_LOG = REPO / ".cache" / "demo-worker.log"


def wait_for_producer_ids(settings: Settings, timeout_s: float = 30.0) -> None:
    """Return once the broker hands out producer ids (or after ``timeout_s``), asking with a silenced probe.

    A broker that has just started answers the first idempotent producer
    "Coordinator load in progress" while it fetches its first block of ids;
    librdkafka retries, and logs a warning that would be the demo's first line
    of output. The probe takes that answer, so ``facestream produce`` does not.
    """
    assigned = threading.Event()

    def statistics(report: str) -> None:
        if json.loads(report).get("eos", {}).get("idemp_state") == "Assigned":
            assigned.set()

    silenced = logging.getLogger("demo.producer-id-probe")
    silenced.propagate = False
    silenced.addHandler(logging.NullHandler())
    probe = confluent_kafka.Producer(
        confluent_producer(settings, logger=silenced, stats_cb=statistics, **{"statistics.interval.ms": 100})
    )
    deadline = time.monotonic() + timeout_s
    while not assigned.is_set() and time.monotonic() < deadline:
        probe.poll(0.1)


def read_embeddings(settings: Settings, consumer: Consumer, wanted: set[str]) -> dict[str, dict]:
    codec = AvroCodec.from_settings(settings)
    records: dict[str, dict] = {}
    try:
        for msg in messages(consumer, timeout_s=120, until=lambda: wanted <= records.keys(), poll_s=1.0):
            record = codec.decode(msg.value(), expect="FaceEmbeddings")
            records[record["image_id"]] = record
    finally:
        consumer.close()
    return records


def cosine(a: list[float], b: list[float]) -> float:
    return float(sum(x * y for x, y in zip(a, b, strict=True)))


def main() -> int:
    settings = Settings.from_env()
    started_broker = subprocess.run([KAFKA_LOCAL, "status"], capture_output=True).returncode != 0
    if started_broker:
        subprocess.run([KAFKA_LOCAL, "start"], check=True)
    WORKER_LOG.unlink(missing_ok=True)
    worker = WorkerProcess(settings.replace(backend="onnx"), WORKER_LOG)
    try:
        ensure_topics(settings)
        reader = Consumer(confluent_consumer(settings, group_id="facestream-demo-reader"))
        embeddings = TopicNames.from_settings(settings).embeddings
        reader.assign(end_offsets(reader, [embeddings]))  # only what this run produces
        print("starting a worker (in-process ONNX Runtime backend) ...")
        worker.start()
        wait_for_producer_ids(settings)  # while the worker loads its models
        try:
            worker.wait_ready()
        except (RuntimeError, TimeoutError) as exc:  # it says why, with the end of the worker's log
            raise SystemExit(f"{exc}\nsee {WORKER_LOG.relative_to(REPO)}") from None
        photos = fetch()
        subprocess.run([sys.executable, "-m", "streams", "produce", "--no-progress", *map(str, photos)], check=True)
        records = read_embeddings(settings, reader, set(PHOTOS))
        width = max(map(len, PHOTOS)) + 2
        print(f"\n{'image':<{width}} faces  best score")
        for name in PHOTOS:
            faces = records.get(name, {}).get("faces", [])
            best = f"{max(f['score'] for f in faces):.3f}" if faces else "-"
            print(f"{name:<{width}} {len(faces):>5}  {best}")

        def first(name: str) -> list[float]:
            return records[name]["faces"][0]["embedding"]

        print(f"\ncosine similarity (same person above {SFACE.same_person}):")
        for a, b in [("obama.jpg", "obama2.jpg"), ("obama.jpg", "obama3.jpg"), ("obama.jpg", "biden.jpg")]:
            score = cosine(first(a), first(b))
            verdict = "same person" if score > SFACE.same_person else "different people"
            print(f"  {a:<11} vs {b:<11} {score:+.3f}  {verdict}")
        return 0
    finally:
        worker.stop()
        if started_broker:
            subprocess.run([KAFKA_LOCAL, "stop"], check=False)


if __name__ == "__main__":
    sys.exit(main())
