"""The rerank stream end to end: real photos enrolled and queried through a real broker and real workers."""

from __future__ import annotations

import json
import os
import re
import subprocess
import sys
import time

import numpy as np
import pytest
from confluent_kafka import Producer

from streams.codecs import AvroCodec
from streams.kafka import TopicNames, confluent_producer, ensure_topics
from streams.models.families import SFACE
from streams.ranking import METHODS
from tests.support import REPO
from tests.support.topics import read_topic
from tests.support.worker import WorkerProcess

pytestmark = pytest.mark.integration

SUBJECTS = {"obama": "obama.jpg", "biden": "biden.jpg", "astronaut": "astronaut.png"}


def facestream(settings, *args: str) -> subprocess.CompletedProcess:
    """Run the real CLI with ``settings`` as its environment."""
    return subprocess.run(
        [sys.executable, "-m", "streams", *args],
        cwd=REPO, env={**os.environ, **settings.to_env()}, capture_output=True, text=True, timeout=120,
    )


def query(settings, photo, gallery: str, *extra: str) -> tuple[int, dict]:
    done = facestream(settings, "query", str(photo), "--gallery", gallery, "--timeout", "60", "--json", *extra)
    return done.returncode, json.loads(done.stdout.strip().splitlines()[-1])


def gallery_size(worker: WorkerProcess, gallery: str) -> float | None:
    found = re.search(rf'^facestream_gallery_size{{gallery="{gallery}"}} (\S+)$', worker.metrics(), re.M)
    return float(found.group(1)) if found else None


def wait_for_gallery(worker: WorkerProcess, gallery: str, size: int, timeout_s: float = 60.0) -> None:
    deadline = time.monotonic() + timeout_s
    while gallery_size(worker, gallery) != size:
        assert time.monotonic() < deadline, f"gallery {gallery} never reached {size}: {gallery_size(worker, gallery)}"
        time.sleep(0.3)


def ranking(result: dict) -> list[tuple[str, int, float]]:
    return [(m["id"], m["rank"], m["score"]) for m in result["matches"]]


def test_obama_ranks_first_and_the_gallery_survives_a_restart(stream_settings, photo_paths, tmp_path):
    settings = stream_settings
    topics = TopicNames.from_settings(settings)
    ensure_topics(settings)
    with WorkerProcess(settings, tmp_path / "worker-1.log") as worker:
        enrolled = facestream(settings, "enroll", *(str(photo_paths[f]) for f in SUBJECTS.values()), "--gallery", "people")
        assert enrolled.returncode == 0, enrolled.stdout + enrolled.stderr
        lines = [json.loads(line) for line in enrolled.stdout.splitlines()]
        assert [(r["subject"], r["enrolled"]) for r in lines] == [(s, True) for s in SUBJECTS]
        wait_for_gallery(worker, "people", 3)

        before = {}
        for method in METHODS:
            code, result = query(settings, photo_paths["obama2.jpg"], "people", "--method", method, "--top-k", "3")
            assert code == 0, result
            assert result["method"] == method and result["gallery_size"] == 3
            assert [m["rank"] for m in result["matches"]] == [1, 2, 3]
            assert result["matches"][0]["id"] == "obama", result
            scores = [m["score"] for m in result["matches"]]
            assert scores == sorted(scores, reverse=True)
            assert result["source"]["topic"] == topics.queries
            before[method] = ranking(result)
        cosine = dict((i, s) for i, _, s in before["cosine"])
        assert cosine["obama"] > 0.5 and cosine["biden"] < SFACE.same_person and cosine["astronaut"] < SFACE.same_person

        code, dead = query(settings, photo_paths["obama2.jpg"], "nobody")
        assert (code, dead["error"]["code"]) == (1, "UNKNOWN_GALLERY")

    # A new process: nothing enrolled again, everything it knows comes from the changelog topic.
    with WorkerProcess(settings, tmp_path / "worker-2.log") as worker:
        for method in METHODS:
            code, result = query(settings, photo_paths["obama2.jpg"], "people", "--method", method, "--top-k", "3")
            assert code == 0, result
            assert [(i, r) for i, r, _ in ranking(result)] == [(i, r) for i, r, _ in before[method]]
            np.testing.assert_allclose([s for *_, s in ranking(result)], [s for *_, s in before[method]], atol=1e-6)
        assert gallery_size(worker, "people") == 3

    dlq = read_topic(settings, topics.dlq, until=lambda r: len(r) >= 1, settle_s=1)
    assert len(dlq) == 1 and dlq[0].key == b"nobody" and dlq[0].record["error_code"] == "UNKNOWN_GALLERY"
    assert AvroCodec().decode(dlq[0].record["value"], expect="RerankQuery")["gallery_id"] == "nobody"


def unit(*values: float) -> list[float]:
    vector = np.asarray(values, dtype=np.float32)
    return (vector / np.linalg.norm(vector)).tolist()


def test_deletes_thresholds_inline_candidates_and_bad_queries(stream_settings, tmp_path):
    settings = stream_settings
    topics = TopicNames.from_settings(settings)
    ensure_topics(settings)
    codec = AvroCodec()
    producer = Producer(confluent_producer(settings))

    def entry(subject: str, embedding: list[float], op: str = "UPSERT") -> None:
        record = {"gallery_id": "g", "subject_id": subject, "op": op, "embedding": embedding, "produced_at": 0}
        producer.produce(topics.gallery, key=b"g", value=codec.encode("GalleryEntry", record))

    def ask(query_id: str, embedding: list[float], key: bytes = b"g", **fields) -> None:
        record = {"query_id": query_id, "gallery_id": "g", "embedding": embedding, "produced_at": 0, **fields}
        producer.produce(topics.queries, key=key, value=codec.encode("RerankQuery", record))

    with WorkerProcess(settings, tmp_path / "worker.log") as worker:
        entry("a", unit(1, 0, 0))
        entry("b", unit(1, 1, 0))
        entry("c", unit(0, 1, 0))
        entry("d", unit(0, 0, 1))
        entry("b", [], op="DELETE")
        entry("a", unit(1, 0.1, 0))  # replaces a's row
        entry("z", unit(1, 2, 3, 4))  # wrong dimension: refused, the gallery is untouched
        producer.flush(10)
        wait_for_gallery(worker, "g", 3)

        ask("all", unit(1, 0, 0))
        ask("thresholded", unit(1, 0, 0), threshold=0.5)
        ask("inline", unit(0, 1), candidates=[{"id": "x", "embedding": unit(1, 0)}, {"id": "y", "embedding": unit(1, 3)}])
        ask("inline-dim", unit(0, 0, 1), candidates=[{"id": "x", "embedding": unit(0, 1)}])
        ask("wrong-dim", unit(1, 0))
        ask("bad-param", unit(1, 0, 0), method="k_reciprocal", params={"k3": 1.0})
        ask("bad-k1", unit(1, 0, 0), method="k_reciprocal", params={"k1": 0.0})
        ask("bad-top-k", unit(1, 0, 0), top_k=0)
        ask("wrong-key", unit(1, 0, 0), key=b"other")
        ask("qe", unit(1, 0, 0), method="query_expansion", params={"alpha": 1.0, "neighbours": 2.0})
        producer.flush(10)

        results = read_topic(settings, topics.rerank_results, until=lambda r: len(r) >= 4, settle_s=2)
        dead = read_topic(settings, topics.dlq, until=lambda r: len(r) >= 7, settle_s=1)

    by_query = {r.record["query_id"]: r for r in results}
    assert sorted(by_query) == ["all", "inline", "qe", "thresholded"]
    for r in results:
        assert r.key.decode() == r.record["query_id"]
    best, *others = by_query["all"].record["matches"]
    assert (best["id"], best["rank"]) == ("a", 1)
    assert best["score"] == pytest.approx(1 / np.sqrt(1.01), abs=1e-6)  # the replaced row, not the first one
    assert {m["id"] for m in others} == {"c", "d"} and all(m["score"] == 0.0 for m in others)  # b was deleted
    assert by_query["all"].record["gallery_size"] == 3
    assert [m["id"] for m in by_query["inline"].record["matches"]] == ["y", "x"]
    assert by_query["inline"].record["gallery_size"] == 2
    assert [m["id"] for m in by_query["thresholded"].record["matches"]] == ["a"]
    assert by_query["qe"].record["matches"][0]["id"] == "a"

    codes = {}
    for r in dead:
        name, record = codec.decode_named(r.record["value"])
        codes[record.get("query_id") or record.get("subject_id")] = r.record["error_code"]
    assert codes == {
        "z": "DIMENSION_MISMATCH",
        "inline-dim": "DIMENSION_MISMATCH",
        "wrong-dim": "DIMENSION_MISMATCH",
        "bad-param": "BAD_QUERY",
        "bad-k1": "BAD_QUERY",
        "bad-top-k": "BAD_QUERY",
        "wrong-key": "BAD_QUERY",
    }


def test_galleries_follow_their_partitions_across_workers(stream_settings, tmp_path):
    """A second worker takes half the partitions: each gallery is held, reported and answered by exactly one."""
    settings = stream_settings
    topics = TopicNames.from_settings(settings)
    ensure_topics(settings)
    codec = AvroCodec()
    producer = Producer(confluent_producer(settings))
    names = [f"g{i}" for i in range(6)]

    def held(worker: WorkerProcess) -> set[str]:
        return {name for name in names if gallery_size(worker, name) == 3}

    def wait_until(condition, what: str, timeout_s: float = 90.0) -> None:
        deadline = time.monotonic() + timeout_s
        while not condition():
            assert time.monotonic() < deadline, what
            time.sleep(0.5)

    first = WorkerProcess(settings, tmp_path / "worker-1.log")
    with first:
        for name in names:
            for subject in range(3):
                record = {"gallery_id": name, "subject_id": f"s{subject}", "op": "UPSERT",
                          "embedding": unit(1, subject, int(name[1:])), "produced_at": 0}
                producer.produce(topics.gallery, key=name.encode(), value=codec.encode("GalleryEntry", record))
        producer.flush(10)
        wait_until(lambda: held(first) == set(names), "the first worker never held every gallery")

        with WorkerProcess(settings, tmp_path / "worker-2.log") as second:
            wait_until(lambda: held(first).isdisjoint(held(second)) and held(first) | held(second) == set(names),
                       "the galleries were not split between the workers")
            assert held(first) and held(second)
            for name in names:
                record = {"query_id": name, "gallery_id": name, "embedding": unit(1, 0, int(name[1:])), "produced_at": 0}
                producer.produce(topics.queries, key=name.encode(), value=codec.encode("RerankQuery", record))
            producer.flush(10)
            results = read_topic(settings, topics.rerank_results, until=lambda r: len(r) >= len(names), settle_s=1)
            answers = sorted((r.record["query_id"], r.record["gallery_size"], r.record["matches"][0]["id"]) for r in results)
            assert answers == [(name, 3, "s0") for name in names]

        wait_until(lambda: held(first) == set(names), "the first worker did not take every gallery back")


def test_a_restarted_worker_takes_up_the_gallery_and_index_the_last_one_saved(stream_settings, tmp_path):
    """The first worker builds the gallery's HNSW index and saves rows and index as it stops; the next one, on the
    same data directory, takes both up (decoding and building no more) and finds the rows enrolled while it was
    down."""
    settings = stream_settings.replace(gallery_index_min=200)
    topics = TopicNames.from_settings(settings)
    ensure_topics(settings)
    codec, producer = AvroCodec(), Producer(confluent_producer(settings))
    rows = np.random.default_rng(3).standard_normal((260, 16)).astype(np.float32)

    def enrol(first: int, last: int) -> None:
        for i in range(first, last):
            record = {"gallery_id": "big", "subject_id": f"s{i}", "op": "UPSERT", "embedding": rows[i].tolist(),
                      "produced_at": 0}
            producer.produce(topics.gallery, key=b"big", value=codec.encode("GalleryEntry", record))
        producer.flush(10)

    def index_state(worker: WorkerProcess) -> tuple[float | None, float | None]:
        text = worker.metrics()
        ready = re.search(r'^facestream_gallery_indexes{state="ready"} (\S+)$', text, re.M)
        built = re.search(r"^facestream_gallery_index_build_seconds_count (\S+)$", text, re.M)
        return (float(ready.group(1)) if ready else None), (float(built.group(1)) if built else None)

    def wait_for_index(worker: WorkerProcess) -> float:
        deadline = time.monotonic() + 60
        while (state := index_state(worker))[0] != 1.0:
            assert time.monotonic() < deadline, f"no gallery index ready: {state}"
            time.sleep(0.3)
        return state[1]

    enrol(0, 250)
    with WorkerProcess(settings, tmp_path / "worker-1.log") as worker:
        wait_for_gallery(worker, "big", 250)
        assert wait_for_index(worker) == 1.0  # built
    assert len(list((tmp_path / "worker" / "gallery-index").glob("*.usearch"))) == 1
    enrol(250, 260)  # while no worker runs
    with WorkerProcess(settings, tmp_path / "worker-2.log") as worker:
        wait_for_gallery(worker, "big", 260)
        assert wait_for_index(worker) == 0.0  # taken up, not built
        rebuilt = {source: float(count) for source, count in re.findall(
            r'^facestream_gallery_rebuild_rows_total{source="(\w+)"} (\S+)$', worker.metrics(), re.M)}
        assert (rebuilt["saved"], rebuilt["decoded"]) == (250.0, 0.0)  # the 10 new ones came by the stream
        ask = {"query_id": "q", "gallery_id": "big", "embedding": rows[255].tolist(), "produced_at": 0, "top_k": 1}
        producer.produce(topics.queries, key=b"big", value=codec.encode("RerankQuery", ask))
        producer.flush(10)
        results = read_topic(settings, topics.rerank_results, until=lambda r: len(r) >= 1)
    match = results[0].record["matches"][0]
    assert match["id"] == "s255" and match["score"] == pytest.approx(1.0, abs=1e-5)
