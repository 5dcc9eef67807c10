"""Stream throughput against the in-process pipeline, measured side by side in one run.

Pushes N real photographs through a real Kafka broker and a real worker
(subprocess, in-process ONNX Runtime backend), and reports throughput and
end-to-end latency (input record timestamp to output record timestamp) p50/p99.
In the same run, with the same batch size, it measures the in-process
pipeline's own throughput on the same photos (decode included, as in the
worker) before and after the stream, and prints stream/pipeline last.

    .venv/bin/python -m perf.bench_stream [--images 400] [--batch 16]

Uses ``KAFKA_BOOTSTRAP_SERVERS`` when set, else starts the local broker on free ports.
"""

from __future__ import annotations

import argparse
import asyncio
import os
import platform
import sys
import tempfile
import time
import uuid
from pathlib import Path

import numpy as np
from confluent_kafka import Consumer

from perf.report import write_report
from streams.codecs import AvroCodec
from streams.config import Settings
from streams.inference import create_backend
from streams.kafka import Producer, TopicNames, confluent_consumer, ensure_topics, messages
from streams.pipeline import FacePipeline
from tests.support.broker import kafka_broker
from tests.support.photos import PORTRAITS, photo_bytes
from tests.support.worker import WorkerProcess

RESULTS = Path(__file__).resolve().parent / "results" / "bench_stream.json"


def cpu_seconds(pid: int | None = None) -> float:
    """CPU time (user + system, every thread) of a process so far: this one by default."""
    if pid is None:
        return time.process_time()
    fields = Path(f"/proc/{pid}/stat").read_text().rsplit(")", 1)[1].split()
    return (int(fields[11]) + int(fields[12])) / os.sysconf("SC_CLK_TCK")  # utime, stime


async def pipeline_images_per_s(settings: Settings, payloads: list[bytes], n: int) -> tuple[float, float]:
    """(images/s, CPU ms per image) of decode + FacePipeline.process over ``n`` images in batches of ``max_batch``."""
    pipeline = FacePipeline(create_backend(settings), settings)
    await pipeline.start()
    try:
        batch = settings.max_batch
        await pipeline.process([pipeline.decode(payloads[0])])  # warm-up
        start, cpu = time.perf_counter(), cpu_seconds()
        for first in range(0, n, batch):
            images = [pipeline.decode(payloads[i % len(payloads)]) for i in range(first, min(n, first + batch))]
            await pipeline.process(images)
        return n / (time.perf_counter() - start), (cpu_seconds() - cpu) / n * 1000
    finally:
        await pipeline.close()


def stream_run(settings: Settings, payloads: list[bytes], n: int, workdir: Path) -> dict:
    """Publish ``n`` events to a ready worker, read every output; throughput and latencies."""
    codec = AvroCodec()
    topics = TopicNames.from_settings(settings)
    consumer = Consumer(confluent_consumer(settings, group_id=f"bench-{uuid.uuid4().hex[:6]}"))
    consumer.subscribe([topics.embeddings])
    with WorkerProcess(settings, workdir / "worker.log") as worker:
        # Warm-up: the worker's first batch pays for session start-up and thread pools.
        warm = _publish(settings, codec, topics.images, payloads, 2 * settings.max_batch, "warm")
        _collect(consumer, codec, warm)
        start, worker_cpu, own_cpu = time.time(), cpu_seconds(worker.process.pid), cpu_seconds()
        sent = _publish(settings, codec, topics.images, payloads, n, "run")
        latencies = _collect(consumer, codec, sent)
        elapsed = time.time() - start
        worker_cpu, own_cpu = cpu_seconds(worker.process.pid) - worker_cpu, cpu_seconds() - own_cpu
    consumer.close()
    lat = np.array(latencies)
    return {
        "images": n,
        "seconds": elapsed,
        "images_per_s": n / elapsed,
        "latency_p50_s": float(np.percentile(lat, 50)),
        "latency_p99_s": float(np.percentile(lat, 99)),
        "worker_cpu_ms_per_image": worker_cpu / n * 1000,
        "producer_consumer_cpu_ms_per_image": own_cpu / n * 1000,  # this process, publishing and reading
    }


def _publish(
    settings: Settings, codec: AvroCodec, topic: str, payloads: list[bytes], n: int, prefix: str
) -> dict[str, float]:
    """Publish ``n`` events; their ids and produce times (epoch seconds)."""
    sent = {}
    with Producer(settings, flush_s=60) as producer:
        for i in range(n):
            event_id = f"{prefix}-{i}"
            sent[event_id] = time.time()
            record = {"id": event_id, "image": payloads[i % len(payloads)], "produced_at": int(sent[event_id] * 1000)}
            producer.produce(topic, key=event_id.encode(), value=codec.encode("ImageEvent", record))
    return sent


def _collect(consumer: Consumer, codec: AvroCodec, sent: dict[str, float]) -> list[float]:
    """End-to-end seconds (input produced -> output record timestamp) of every id in ``sent``."""
    latency: dict[str, float] = {}
    for msg in messages(consumer, timeout_s=600, until=lambda: len(latency) >= len(sent)):
        image_id = codec.decode(msg.value(), expect="FaceEmbeddings")["image_id"]
        if image_id in sent:
            latency[image_id] = msg.timestamp()[1] / 1000.0 - sent[image_id]
    if len(latency) < len(sent):
        raise RuntimeError(f"only {len(latency)} of {len(sent)} outputs arrived")
    return list(latency.values())


def main(argv: list[str] | None = None) -> int:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--images", type=int, default=400)
    parser.add_argument("--batch", type=int, default=16)
    parser.add_argument("--out", type=Path, default=RESULTS)
    args = parser.parse_args(argv)
    payloads = [photo_bytes(name) for name in PORTRAITS]
    run = uuid.uuid4().hex[:6]
    with kafka_broker() as bootstrap, tempfile.TemporaryDirectory() as tmp:
        settings = Settings.from_env(
            kafka_bootstrap_servers=bootstrap,
            app_id=f"bench-{run}",
            topic_prefix=f"bench{run}.",
            max_batch=args.batch,
            backend="onnx",
            data_dir=str(Path(tmp) / "worker"),
        )
        ensure_topics(settings)
        before, cpu_before = asyncio.run(pipeline_images_per_s(settings, payloads, args.images))
        print(f"pipeline (before): {before:7.1f} images/s  CPU {cpu_before:.1f} ms/image", flush=True)
        stream = stream_run(settings, payloads, args.images, Path(tmp))
        print(f"stream:            {stream['images_per_s']:7.1f} images/s  "
              f"p50 {stream['latency_p50_s'] * 1000:.0f} ms  p99 {stream['latency_p99_s'] * 1000:.0f} ms  "
              f"CPU worker {stream['worker_cpu_ms_per_image']:.1f} ms/image, "
              f"producer+consumer {stream['producer_consumer_cpu_ms_per_image']:.1f} ms/image", flush=True)
        after, cpu_after = asyncio.run(pipeline_images_per_s(settings, payloads, args.images))
        print(f"pipeline (after):  {after:7.1f} images/s  CPU {cpu_after:.1f} ms/image", flush=True)
    pipeline = (before + after) / 2
    ratio = stream["images_per_s"] / pipeline
    report = {
        "benchmark": "bench_stream",
        "when": time.strftime("%Y-%m-%dT%H:%M:%SZ", time.gmtime()),
        "machine": {"platform": platform.platform(), "cpus": os.cpu_count()},
        "batch": args.batch,
        "pipeline_images_per_s": {"before": before, "after": after},
        "pipeline_cpu_ms_per_image": {"before": cpu_before, "after": cpu_after},
        "stream": stream,
        "stream_over_pipeline": ratio,
    }
    write_report(args.out, report)
    print(f"stream/pipeline throughput ratio (batch {args.batch}): {ratio:.2f}")
    return 0


if __name__ == "__main__":
    sys.exit(main())
