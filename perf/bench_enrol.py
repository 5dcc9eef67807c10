"""Bulk enrolment through the stream, and how long a restarted worker takes to answer from a large gallery.

On the project's local Kafka broker, one real ``facestream worker``:

* enrol: ``--entries`` synthetic unit ``GalleryEntry`` upserts (one gallery),
  encoded beforehand, are published to a ready worker, and the clock runs from
  the first until the worker's ``facestream_gallery_size`` says every one is
  applied, under at-least-once and under exactly-once;
* restart: the worker is stopped and a new one started on the same changelog;
  the clock runs from its start until it has rebuilt the gallery and answered one
  cosine query against it (``facestream_gallery_rebuild_seconds`` is read too).
  Under exactly-once the changelog's end comes from the broker
  (:mod:`streams.kafka.highwaters`); faust's own lookup recovered nothing.
* ``--seed-changelog``: restarts only, over a changelog written directly (a
  million entries without an hour of enrolment first), twice: the first worker
  decodes the whole changelog, the second takes up the rows the first saved as
  it stopped (:mod:`streams.gallery_store`). With ``--index``, each restart runs
  until the gallery's approximate index is ready: built from the rows, then
  taken up from its save.

Prints one line per measurement and writes JSON to ``perf/results/bench_enrol.json``.
"""

from __future__ import annotations

import argparse
import itertools
import os
import platform
import re
import sys
import tempfile
import time
import uuid
from pathlib import Path

import numpy as np
from confluent_kafka import Consumer

from perf.report import write_report
from streams.agents.gallery_keeper import table_key
from streams.api.gallery_link import changelog_topic, partition_of
from streams.codecs import AvroCodec
from streams.config import Settings
from streams.kafka import Producer, TopicNames, confluent_consumer, end_offsets, ensure_topics, messages
from tests.support.broker import kafka_broker
from tests.support.worker import WorkerProcess

RESULTS = Path(__file__).parent / "results" / "bench_enrol.json"
GALLERY = "bench"
MODEL = {"detector": "yunet-2023mar", "embedder": "sface-2021dec", "version": "1", "dim": 128}


def encoded_entries(n: int, topic: str, dim: int = 128) -> list[bytes]:
    """``n`` upserts of distinct subjects to one gallery, encoded before the clock starts."""
    codec, rng = AvroCodec(), np.random.default_rng(11)
    values = []
    for first in range(0, n, 10_000):
        block = rng.standard_normal((min(10_000, n - first), dim)).astype(np.float32)
        block /= np.linalg.norm(block, axis=1, keepdims=True)
        for i, row in enumerate(block.tolist(), start=first):
            record = {
                "gallery_id": GALLERY, "subject_id": f"s{i}", "op": "UPSERT", "embedding": row, "model": MODEL,
                "produced_at": int(time.time() * 1000), "template_id": None, "quality": None, "match_threshold": None,
            }
            values.append(codec.encode("GalleryEntry", record, topic=topic))
    return values


def publish(settings: Settings, topic: str, values: list[bytes]) -> float:
    """Publish the encoded entries, keyed by the gallery id; the seconds it took."""
    started = time.monotonic()
    with Producer(settings, flush_s=300) as producer:
        for value in values:
            producer.produce(topic, key=GALLERY.encode(), value=value)
    return time.monotonic() - started


def metric(worker: WorkerProcess, pattern: str) -> float | None:
    found = re.search(pattern, worker.metrics(), re.MULTILINE)
    return float(found.group(1)) if found else None


def wait_for_size(worker: WorkerProcess, n: int, timeout_s: float) -> None:
    deadline = time.monotonic() + timeout_s
    while True:
        try:
            size = metric(worker, rf'^facestream_gallery_size{{gallery="{GALLERY}"}} (\S+)$')
        except OSError:  # not serving /metrics yet
            size = None
        if size == n:
            return
        if time.monotonic() > deadline or not worker.alive():
            raise RuntimeError(f"gallery reached {size} of {n} entries in {timeout_s:.0f} s\n{worker.tail()}")
        time.sleep(0.2)


def answer_one_query(settings: Settings, timeout_s: float) -> None:
    """Publish one cosine query against the gallery and wait for its result."""
    codec, topics = AvroCodec(), TopicNames.from_settings(settings)
    consumer = Consumer(confluent_consumer(settings, group_id=f"bench-{uuid.uuid4().hex[:6]}"))
    consumer.assign(end_offsets(consumer, [topics.rerank_results]))
    query_id = uuid.uuid4().hex
    embedding = (np.ones(128, dtype=np.float32) / np.sqrt(128)).tolist()
    record = {
        "query_id": query_id, "gallery_id": GALLERY, "candidates": None, "embedding": embedding, "top_k": 5,
        "threshold": None, "method": "cosine", "params": {}, "produced_at": int(time.time() * 1000),
        "model": MODEL, "quality": None, "match_threshold": None,
    }
    with Producer(settings, flush_s=30) as producer:
        producer.produce(topics.queries, key=GALLERY.encode(), value=codec.encode("RerankQuery", record))
    found = False

    def answered() -> bool:
        return found

    for msg in messages(consumer, timeout_s=timeout_s, until=answered):
        found = found or codec.decode(msg.value(), expect="RerankResult")["query_id"] == query_id
    consumer.close()
    if not found:
        raise RuntimeError(f"no answer to the query in {timeout_s:.0f} s")


def fresh_run(
    name: str, bootstrap: str, guarantee: str, entries: int, dtype: str, workdir: Path
) -> tuple[str, Settings, str, list[bytes]]:
    """(tag, settings, gallery topic, encoded entries) of one measurement on its own app id and topics."""
    tag = uuid.uuid4().hex[:6]
    settings = Settings.from_env(
        kafka_bootstrap_servers=bootstrap, app_id=f"{name}-{tag}", topic_prefix=f"{name}{tag}.", backend="onnx",
        processing_guarantee=guarantee, gallery_dtype=dtype, data_dir=str(workdir / tag),
    )
    ensure_topics(settings)
    topic = TopicNames.from_settings(settings).gallery
    return tag, settings, topic, encoded_entries(entries, topic)


def run(bootstrap: str, guarantee: str, entries: int, dtype: str, workdir: Path) -> dict:
    """Enrol ``entries`` under ``guarantee``, then time a restart until the gallery answers."""
    tag, settings, topic, values = fresh_run("enrol", bootstrap, guarantee, entries, dtype, workdir)
    with WorkerProcess(settings, workdir / f"{tag}-1.log") as worker:
        started = time.monotonic()
        published = publish(settings, topic, values)
        wait_for_size(worker, entries, timeout_s=900)
        enrol_s = time.monotonic() - started
    result = {"guarantee": guarantee, "dtype": dtype, "entries": entries, "publish_s": published, "enrol_s": enrol_s,
              "entries_per_s": entries / enrol_s}
    print(f"{guarantee:14s} {entries:8d} entries: enrolled in {enrol_s:6.1f} s ({entries / enrol_s:7.0f} entries/s, "
          f"publishing {published:.1f} s)", flush=True)
    return {**result, **timed_restart(settings, entries, workdir / f"{tag}-2.log")}


def timed_restart(settings: Settings, entries: int, log: Path, *, until_index: bool = False) -> dict:
    """Start a worker on the existing changelog; seconds until its gallery is whole and until it answers a query;
    ``until_index``: and until the gallery's approximate index is ready (built, or taken up from its save)."""
    started = time.monotonic()
    worker = WorkerProcess(settings, log).start()  # not `with`: that waits 120 s at most
    index = {}
    try:
        wait_for_size(worker, entries, timeout_s=900)
        rebuilt_s = time.monotonic() - started
        answer_one_query(settings, timeout_s=300)
        answered_s = time.monotonic() - started
        read_metric = metric(worker, r"^facestream_changelog_read_seconds_sum (\S+)$") or 0.0
        rebuild_metric = metric(worker, r"^facestream_gallery_rebuild_seconds_sum (\S+)$")
        saved_rows = metric(worker, r'^facestream_gallery_rebuild_rows_total{source="saved"} (\S+)$') or 0.0
        if until_index:
            index = wait_for_index(worker, started, timeout_s=3600)
    finally:
        worker.stop()
    print(f"{settings.processing_guarantee:14s} {entries:8d} entries: restarted, rebuilt in {rebuilt_s:.1f} s "
          f"(bulk changelog read {read_metric:.1f} s, rebuild {rebuild_metric:.1f} s, {saved_rows:.0f} rows from "
          f"the save), answered a query after {answered_s:.1f} s", flush=True)
    if index:
        print(f"{'':14s} {entries:8d} entries: index ready {index['index_ready_s']:.1f} s after the start "
              f"({'built' if index['index_built'] else 'taken up from its save'})", flush=True)
    return {"restart_rebuilt_s": rebuilt_s, "restart_answered_s": answered_s,
            "changelog_read_seconds_metric": read_metric, "rebuild_seconds_metric": rebuild_metric,
            "rows_from_save": saved_rows, **index}


def wait_for_index(worker: WorkerProcess, started: float, timeout_s: float) -> dict:
    """Seconds from ``started`` until the worker's one gallery index is ready, and whether it was built anew."""
    deadline = time.monotonic() + timeout_s
    while metric(worker, r'^facestream_gallery_indexes{state="ready"} (\S+)$') != 1.0:
        if time.monotonic() > deadline or not worker.alive():
            raise RuntimeError(f"no gallery index ready in {timeout_s:.0f} s\n{worker.tail()}")
        time.sleep(0.5)
    built = metric(worker, r"^facestream_gallery_index_build_seconds_count (\S+)$") or 0.0
    return {"index_ready_s": time.monotonic() - started, "index_built": built > 0}


def restart_from_changelog(
    bootstrap: str, guarantee: str, entries: int, dtype: str, workdir: Path, *, index: bool = False
) -> dict:
    """Time a restart over ``entries`` written straight to the gallery changelog, as workers would have left it.

    Enrolling a million entries through the stream first would take most of an hour here; what a restart reads
    is the same either way: the compacted changelog of one gallery, one key per subject, on its partition.
    Two restarts: the first decodes the changelog, the second takes up the rows the first saved as it stopped;
    ``index``: each until the approximate index is ready (built, then taken up from its save).
    """
    tag, settings, topic, values = fresh_run("restart", bootstrap, guarantee, entries, dtype, workdir)
    with WorkerProcess(settings, workdir / f"{tag}-1.log") as worker:  # declares the changelog, enrols one
        publish(settings, topic, values[:1])
        wait_for_size(worker, 1, timeout_s=120)
    changelog = changelog_topic(settings)
    partition = partition_of(GALLERY.encode(), settings.topic_partitions)
    with Producer(settings, flush_s=300) as producer:
        for i, value in enumerate(values):
            producer.produce(changelog, key=table_key(GALLERY, f"s{i}"), value=value, partition=partition)
    decoded, restored = (timed_restart(settings, entries, workdir / f"{tag}-{i}.log", until_index=index)
                         for i in (2, 3))
    return {"guarantee": guarantee, "dtype": dtype, "entries": entries, "seeded": "changelog", **restored,
            "first_restart": decoded}


def main(argv: list[str] | None = None) -> int:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--entries", type=int, nargs="+", default=[100_000])
    parser.add_argument("--guarantee", nargs="+", default=["at_least_once", "exactly_once"])
    parser.add_argument("--runs", type=int, default=1, help="repeat every measurement")
    parser.add_argument("--dtype", default="float32")
    parser.add_argument("--seed-changelog", action="store_true",
                        help="measure restarts only, over entries written straight to the changelog")
    parser.add_argument("--index", action="store_true",
                        help="with --seed-changelog: each restart until the gallery index is ready (built, saved)")
    parser.add_argument("--out", type=Path, default=RESULTS)
    args = parser.parse_args(argv)
    runs = []
    with kafka_broker() as bootstrap, tempfile.TemporaryDirectory() as tmp:
        for _, entries, guarantee in itertools.product(range(args.runs), args.entries, args.guarantee):
            if args.seed_changelog:
                measured = restart_from_changelog(bootstrap, guarantee, entries, args.dtype, Path(tmp), index=args.index)
                runs.append(measured)
            else:
                runs.append(run(bootstrap, guarantee, entries, args.dtype, Path(tmp)))
    report = {
        "benchmark": "bench_enrol",
        "when": time.strftime("%Y-%m-%dT%H:%M:%SZ", time.gmtime()),
        "machine": {"platform": platform.platform(), "cpus": os.cpu_count()},
        "runs": runs,
    }
    write_report(args.out, report)
    return 0


if __name__ == "__main__":
    sys.exit(main())
