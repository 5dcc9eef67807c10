"""`make demo`: the whole product in one minute, on a fresh machine.

Starts the local Kafka broker (unless one already answers), a worker on the
in-process ONNX Runtime backend, publishes the sample photographs, reads their
embeddings back from the embeddings topic, prints the faces per image and the
Obama-Obama / Obama-Biden similarities, then stops what it started.
"""

from __future__ import annotations

import json
import os
import signal
import socket
import subprocess
import sys
import time
import urllib.request
from pathlib import Path

REPO = Path(__file__).resolve().parents[1]
sys.path.insert(0, str(REPO))

from confluent_kafka import Consumer  # noqa: E402

from streams.codecs import AvroCodec  # noqa: E402
from streams.config import Settings  # noqa: E402
from streams.kafka import TopicNames, confluent_consumer, end_offsets, ensure_topics, messages  # noqa: E402
from tests.photos import PHOTOS, fetch  # noqa: E402

KAFKA_LOCAL = str(REPO / "scripts" / "kafka-local")
SAME_PERSON = 0.363  # SFace's published cosine threshold


def free_port() -> int:
    with socket.socket() as sock:
        sock.bind(("127.0.0.1", 0))
        return sock.getsockname()[1]


def wait_ready(port: int, worker: subprocess.Popen, timeout_s: float = 120.0) -> None:
    deadline = time.monotonic() + timeout_s
    while time.monotonic() < deadline:
        if worker.poll() is not None:
            raise SystemExit(f"the worker exited with code {worker.returncode}; see .cache/demo-worker.log")
        try:
            with urllib.request.urlopen(f"http://127.0.0.1:{port}/readyz", timeout=2) as reply:
                if reply.status == 200:
                    return
        except OSError:
            pass
        time.sleep(1)
    raise SystemExit("the worker did not become ready in time; see .cache/demo-worker.log")


def read_embeddings(settings: Settings, consumer: Consumer, wanted: set[str]) -> dict[str, dict]:
    codec = AvroCodec(settings.schema_registry_url)
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
    worker = None
    try:
        ensure_topics(settings)
        reader = Consumer(confluent_consumer(settings, group_id="facestream-demo-reader"))
        embeddings = TopicNames.from_settings(settings).embeddings
        reader.assign(end_offsets(reader, [embeddings]))  # only what this run produces
        port = free_port()
        log = open(REPO / ".cache" / "demo-worker.log", "w")
        env = {**os.environ, "FACESTREAM_BACKEND": "onnx", "FACESTREAM_WEB_PORT": str(port)}
        print("starting a worker (in-process ONNX Runtime backend) ...")
        worker = subprocess.Popen([sys.executable, "-m", "streams", "worker"], env=env, stdout=log, stderr=log)
        wait_ready(port, worker)
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

        print(f"\ncosine similarity (same person above {SAME_PERSON}):")
        for a, b in [("obama.jpg", "obama2.jpg"), ("obama.jpg", "obama3.jpg"), ("obama.jpg", "biden.jpg")]:
            score = cosine(first(a), first(b))
            verdict = "same person" if score > SAME_PERSON else "different people"
            print(f"  {a:<11} vs {b:<11} {score:+.3f}  {verdict}")
        print(json.dumps({"model": records["obama.jpg"]["model"]}))
        return 0
    finally:
        if worker is not None:
            worker.send_signal(signal.SIGTERM)
            try:
                worker.wait(30)
            except subprocess.TimeoutExpired:
                worker.kill()
        if started_broker:
            subprocess.run([KAFKA_LOCAL, "stop"], check=False)


if __name__ == "__main__":
    sys.exit(main())
