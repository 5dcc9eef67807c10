"""What operators see, on a real broker with real workers: /metrics after real traffic, lag, /readyz.

* After real photos, a bad input, a gallery and a query flow through a worker,
  every facestream metric is on /metrics with values that match the traffic.
* Workers join and leave: each reports the lag of the partitions it holds,
  and committed offsets catch up on every partition after each rebalance.
* A worker whose Triton server is unreachable, from the start or later, says
  503 and names the backend, and is "paused": the lag gauge climbs with every
  event produced; once the server is reachable the same worker reports 200,
  catches up, and the lag returns to 0. The server is the real Triton of
  tests/support/triton.py, behind a local TCP relay the test opens and cuts.
* A worker whose broker dies says 503 naming the broker; one stuck on an
  event it cannot answer names the stalled topic. Either way SIGTERM ends it
  within 10 s, and the unanswered event's offset stays uncommitted.
* A static member (``group.instance.id``) SIGKILLed and restarted under the
  same id gets its partitions back at once: a fresh event is answered within
  15 s of the restart; a healthy idle worker ends gracefully on SIGTERM.
"""

from __future__ import annotations

import contextlib
import json
import os
import socket
import socketserver
import subprocess
import sys
import threading
import time
from collections.abc import Callable

import pytest
from confluent_kafka import Consumer, TopicPartition
from prometheus_client.parser import text_string_to_metric_families

from streams.kafka import TopicNames, confluent_consumer, ensure_topics
from streams.kafka.lag import partition_lag
from tests.support import REPO
from tests.support.broker import local_broker
from tests.support.photos import NO_FACE, PORTRAITS
from tests.support.ports import free_port
from tests.support.topics import read_topic
from tests.support.worker import WorkerProcess

pytestmark = pytest.mark.integration


def facestream(settings, *args: str) -> subprocess.CompletedProcess:
    """The real CLI with ``settings`` as its environment."""
    done = subprocess.run(
        [sys.executable, "-m", "streams", *args],
        cwd=REPO, env={**os.environ, **settings.to_env()}, capture_output=True, text=True, timeout=180, check=False,
    )
    assert done.returncode == 0, done.stdout + done.stderr
    return done


def samples(worker: WorkerProcess) -> dict[tuple[str, frozenset], float]:
    """Every sample of the worker's /metrics: (name, labels) -> value."""
    return {
        (s.name, frozenset(s.labels.items())): s.value
        for family in text_string_to_metric_families(worker.metrics())
        for s in family.samples
    }


def value(found: dict, name: str, **labels: str) -> float:
    return found[(name, frozenset(labels.items()))]


def lags(worker: WorkerProcess, topic: str) -> dict[str, float]:
    """The lag gauge of each partition of ``topic`` the worker reports."""
    found = samples(worker).items()
    return {dict(l)["partition"]: v for (n, l), v in found if n == "facestream_consumer_lag" and dict(l)["topic"] == topic}


def lag(worker: WorkerProcess, topic: str) -> float | None:
    """Sum of the lag gauge over the partitions of ``topic``; None while no partition is reported."""
    values = lags(worker, topic)
    return sum(values.values()) if values else None


def wait_for(what: str, check: Callable[[], bool], timeout_s: float, worker: WorkerProcess) -> None:
    deadline = time.monotonic() + timeout_s
    while not check():
        if time.monotonic() > deadline:
            raise AssertionError(f"{what} not within {timeout_s} s; worker log:\n{worker.tail()}")
        time.sleep(0.5)


def test_metrics_after_real_traffic(stream_settings, photo_paths, photo_bytes, tmp_path):
    settings = stream_settings.replace(max_batch=4, max_wait_ms=200, lag_interval_s=1.0, log_format="json")
    topics = TopicNames.from_settings(settings)
    ensure_topics(settings)
    truncated = tmp_path / "truncated.jpg"
    truncated.write_bytes(photo_bytes["obama.jpg"][: len(photo_bytes["obama.jpg"]) // 2])
    images = [photo_paths[n] for n in (*PORTRAITS, NO_FACE)] + [truncated]

    with WorkerProcess(settings, tmp_path / "worker.log") as worker:
        facestream(settings, "produce", "--no-progress", *map(str, images))
        read_topic(settings, topics.embeddings, until=lambda r: len(r) >= len(PORTRAITS) + 1)
        read_topic(settings, topics.dlq, until=lambda r: len(r) >= 1)
        facestream(settings, "enroll", str(photo_paths["obama.jpg"]), str(photo_paths["biden.jpg"]), "--gallery", "ops")
        facestream(settings, "query", str(photo_paths["obama2.jpg"]), "--gallery", "ops", "--timeout", "60")
        wait_for("lag 0", lambda: lag(worker, topics.images) == 0, 30, worker)
        found = samples(worker)
        # faust's own pages (topology, table contents) are off: nothing unauthenticated beyond ours
        assert worker.status_of("/router/") == 404 == worker.status_of("/table/")

    events = len(images)
    assert value(found, "facestream_images_total", result="ok") == len(PORTRAITS)
    assert value(found, "facestream_images_total", result="no_face") == 1
    assert value(found, "facestream_images_total", result="dlq") == 1
    assert value(found, "facestream_dlq_total", error_code="TRUNCATED_IMAGE") == 1
    assert value(found, "facestream_faces_total") == len(PORTRAITS)  # one face per portrait

    # every event in exactly one batch, no batch above max_batch
    assert value(found, "facestream_batch_size_sum") == events
    assert value(found, "facestream_batch_size_count") >= events / settings.max_batch
    assert value(found, "facestream_batch_size_bucket", le="4.0") == value(found, "facestream_batch_size_count")

    for stage in ("decode", "detect", "align", "embed", "produce"):
        count = value(found, "facestream_stage_seconds_count", stage=stage)
        total = value(found, "facestream_stage_seconds_sum", stage=stage)
        assert count >= 1 and 0 < total < 60 * count, (stage, count, total)
        # one observation per batch, not per image of it
        assert count <= value(found, "facestream_batch_size_count"), (stage, count)
    for model in (settings.detector_model, settings.embedder_model):
        count = value(found, "facestream_inference_seconds_count", model=model)
        assert count >= 1 and 0 < value(found, "facestream_inference_seconds_sum", model=model) < 60 * count

    assert value(found, "facestream_end_to_end_seconds_count") == events
    mean_e2e = value(found, "facestream_end_to_end_seconds_sum") / events
    assert 0 < mean_e2e < 120, mean_e2e

    assert value(found, "facestream_gallery_size", gallery="ops") == 2
    assert value(found, "facestream_rerank_seconds_count", method="cosine") == 1
    assert value(found, "facestream_backend_up", backend="onnx") == 1
    partitions = {dict(l)["partition"] for (n, l) in found if n == "facestream_consumer_lag" and dict(l)["topic"] == topics.images}
    assert partitions == all_partitions(settings)  # one worker holds them all
    assert value(found, "process_cpu_seconds_total") > 0
    assert value(found, "process_resident_memory_bytes") > 50 * 2**20

    # FACESTREAM_LOG_FORMAT=json: the worker's whole output is JSON lines, the dead letter logged with its batch
    logged = [json.loads(line) for line in (tmp_path / "worker.log").read_text().splitlines() if line.strip()]
    (dead,) = [r for r in logged if r["message"].startswith("dead-lettering")]
    assert dead["batch_id"] and "TRUNCATED_IMAGE" in dead["message"]


def all_partitions(settings) -> set[str]:
    return {str(p) for p in range(settings.topic_partitions)}


def test_lag_follows_partitions_across_rebalances(stream_settings, photo_paths, photo_bytes, tmp_path):
    """Each worker reports only what it holds; committed offsets keep up after workers join and leave."""
    settings = stream_settings.replace(lag_interval_s=1.0, max_wait_ms=100)
    topics = TopicNames.from_settings(settings)
    ensure_topics(settings)
    caught_up = dict.fromkeys(all_partitions(settings), 0)
    rounds = []
    for n in range(3):  # the same portraits under new names (event ids) for each round
        folder = tmp_path / f"round{n}"
        folder.mkdir()
        for name in PORTRAITS:
            (folder / f"r{n}-{name}").write_bytes(photo_bytes[name])
        rounds.append((str(folder), {f"r{n}-{name}" for name in PORTRAITS}))

    def produce_and_process(folder: str, ids: set[str]) -> None:
        """Publish a round and wait for its outputs: only then is a lag of 0 news, not a reading from before."""
        facestream(settings, "produce", "--no-progress", folder)
        read_topic(settings, topics.embeddings, until=lambda r: ids <= {x.record["image_id"] for x in r}, timeout_s=90)

    with WorkerProcess(settings, tmp_path / "a.log") as first:
        produce_and_process(*rounds[0])
        wait_for("first worker committed", lambda: lags(first, topics.images) == caught_up, 30, first)

        with WorkerProcess(settings, tmp_path / "b.log") as second:  # ready: it holds a partition
            def split_between_them() -> bool:
                held = [set(lags(w, topics.images)) for w in (first, second)]
                return all(held) and held[0].isdisjoint(held[1]) and held[0] | held[1] == all_partitions(settings)

            wait_for("partitions split without overlap", split_between_them, 60, second)
            produce_and_process(*rounds[1])
            wait_for("both committed", lambda: lag(first, topics.images) == 0 == lag(second, topics.images), 30, second)

        # the second worker left: the first takes its partitions over and commits on them too
        produce_and_process(*rounds[2])
        wait_for("first holds all and committed", lambda: lags(first, topics.images) == caught_up, 30, first)


class Relay:
    """127.0.0.1:<port> forwards connections to ``target`` while open; closed, it refuses them and cuts the live ones."""

    def __init__(self, target: str) -> None:
        host, _, port = target.rpartition(":")
        self.target = (host, int(port))
        self.port = free_port()
        self._server: socketserver.ThreadingTCPServer | None = None
        self._live: set[socket.socket] = set()

    @property
    def url(self) -> str:
        return f"127.0.0.1:{self.port}"

    def open(self) -> None:
        relay = self

        class Forward(socketserver.BaseRequestHandler):
            def handle(self) -> None:
                with socket.create_connection(relay.target) as upstream:
                    relay._live |= {self.request, upstream}
                    back = threading.Thread(target=_pump, args=(upstream, self.request), daemon=True)
                    back.start()
                    _pump(self.request, upstream)
                    back.join()

        socketserver.ThreadingTCPServer.allow_reuse_address = True
        self._server = socketserver.ThreadingTCPServer(("127.0.0.1", self.port), Forward)
        self._server.daemon_threads = True
        threading.Thread(target=self._server.serve_forever, daemon=True).start()

    def close(self) -> None:
        if self._server is not None:
            self._server.shutdown()
            self._server.server_close()
            self._server = None
        for sock in list(self._live):
            with contextlib.suppress(OSError):
                sock.shutdown(socket.SHUT_RDWR)
        self._live.clear()


def _pump(src: socket.socket, dst: socket.socket) -> None:
    try:
        while data := src.recv(65536):
            dst.sendall(data)
        dst.shutdown(socket.SHUT_WR)
    except OSError:
        pass


def test_readiness_and_lag_follow_the_triton_server(stream_settings, photo_paths, triton_url, tmp_path):
    relay = Relay(triton_url)
    settings = stream_settings.replace(
        backend="triton", triton_url=relay.url, triton_timeout_s=2.0, retry_backoff_ms=100,
        lag_interval_s=1.0, max_batch=4, max_wait_ms=100,
    )
    topics = TopicNames.from_settings(settings)
    ensure_topics(settings)
    worker = WorkerProcess(settings, tmp_path / "worker.log").start()

    def backend_down_with_partitions() -> bool:
        status, body = worker.readyz()
        failed = [c["name"] for c in body.get("checks", []) if not c["ok"]]
        return status == 503 and failed == ["backend"]

    try:
        # 1. Triton unreachable from the start: 503 naming the backend; served later, 200 with no event flowing.
        wait_for("503 naming only the backend", backend_down_with_partitions, 120, worker)
        assert value(samples(worker), "facestream_backend_up", backend="triton") == 0
        relay.open()
        wait_for("/readyz 200 once Triton is served", lambda: worker.readyz()[0] == 200, 60, worker)
        assert value(samples(worker), "facestream_backend_up", backend="triton") == 1

        # 2. Triton lost while running: 503 again; the worker is paused, so the lag climbs with each event.
        relay.close()
        wait_for("503 after losing Triton", backend_down_with_partitions, 30, worker)
        names = sorted(PORTRAITS)
        facestream(settings, "produce", "--no-progress", *(str(photo_paths[n]) for n in names))
        wait_for("lag to reach the events produced", lambda: lag(worker, topics.images) == len(names), 30, worker)
        time.sleep(3)  # still paused: nothing processed, nothing committed
        assert lag(worker, topics.images) == len(names)

        # 3. Triton back: ready again, the events are processed and the lag returns to 0.
        relay.open()
        wait_for("/readyz 200 after Triton returns", lambda: worker.readyz()[0] == 200, 90, worker)
        embeddings = read_topic(settings, topics.embeddings, until=lambda r: len(r) >= len(names), timeout_s=90)
        assert sorted(r.record["image_id"] for r in embeddings) == names
        wait_for("lag back to 0", lambda: lag(worker, topics.images) == 0, 30, worker)
    finally:
        worker.stop()
        relay.close()


def check_of(worker: WorkerProcess, name: str) -> dict:
    """The ``name`` check of the worker's /readyz; {} while it does not answer."""
    return next((c for c in worker.readyz()[1].get("checks", []) if c["name"] == name), {})


def committed_lag(settings, topic: str) -> int:
    """Records of ``topic`` the worker group has not committed, read from the broker."""
    consumer = Consumer(confluent_consumer(settings, group_id=settings.app_id))
    try:
        partitions = [TopicPartition(topic, p) for p in range(settings.topic_partitions)]
        total = 0
        for tp in consumer.committed(partitions, timeout=10):
            low, high = consumer.get_watermark_offsets(tp, timeout=10)
            total += partition_lag(low, high, tp.offset)
        return total
    finally:
        consumer.close()


def assert_sigterm_ends_it_in_time(worker: WorkerProcess, record_property, name: str) -> int:
    status, seconds = worker.terminate()
    record_property(f"{name}_sigterm_exit_s", round(seconds, 2))
    assert seconds < 10, f"SIGTERM took {seconds:.1f} s; log:\n{worker.tail()}"
    return status


def test_readiness_names_a_dead_broker_and_sigterm_still_ends_the_worker(
    stream_settings, tmp_path, record_property
):
    with contextlib.ExitStack() as broker:  # a broker of its own, to kill
        bootstrap = broker.enter_context(local_broker())
        settings = stream_settings.replace(kafka_bootstrap_servers=bootstrap, lag_interval_s=1.0, broker_stale_s=5.0)
        ensure_topics(settings)
        worker = WorkerProcess(settings, tmp_path / "worker.log").start()
        try:
            worker.wait_ready()
            broker.close()
            wait_for(
                "/readyz naming the broker",
                lambda: check_of(worker, "broker").get("detail", "").startswith("no broker answered for"),
                60, worker,
            )
            status, body = worker.readyz()
            assert status == 503 and [c["name"] for c in body["checks"] if not c["ok"]] == ["broker"]
            assert_sigterm_ends_it_in_time(worker, record_property, "broker_dead")
        finally:
            worker.kill()


def test_a_worker_stuck_on_an_event_names_the_topic_and_sigterm_still_ends_it(
    stream_settings, photo_paths, tmp_path, record_property
):
    """Triton unreachable while an event waits: the batch is retried forever, which no check but progress sees."""
    settings = stream_settings.replace(
        backend="triton", triton_url=f"127.0.0.1:{free_port()}", triton_timeout_s=2.0, retry_backoff_ms=100,
        lag_interval_s=1.0, stall_timeout_s=5.0, max_wait_ms=100,
    )
    topics = TopicNames.from_settings(settings)
    ensure_topics(settings)
    log_path = tmp_path / "worker.log"
    worker = WorkerProcess(settings, log_path).start()
    try:
        wait_for("partitions assigned", lambda: check_of(worker, "partitions").get("ok") is True, 120, worker)
        facestream(settings, "produce", "--no-progress", str(photo_paths["obama.jpg"]))
        wait_for("the batch in backend retry", lambda: "backend failed (attempt" in log_path.read_text(), 60, worker)
        wait_for("/readyz naming the stalled topic", lambda: check_of(worker, "progress").get("ok") is False, 30, worker)
        assert check_of(worker, "progress")["detail"].startswith(f"{topics.images}: lag 1 unanswered for ")
        assert_sigterm_ends_it_in_time(worker, record_property, "backend_down")
    finally:
        worker.kill()
    assert committed_lag(settings, topics.images) == 1  # the unanswered event is processed again after a restart


def test_a_static_member_restarted_after_a_crash_answers_within_15_s(
    stream_settings, photo_paths, photo_bytes, tmp_path, record_property
):
    settings = stream_settings.replace(group_instance_id="worker-0", max_wait_ms=100)
    topics = TopicNames.from_settings(settings)
    ensure_topics(settings)
    images = tmp_path / "images"
    images.mkdir()

    def answered(event_id: str) -> None:
        read_topic(settings, topics.embeddings, until=lambda r: event_id in {x.record["image_id"] for x in r})

    (images / "before.jpg").write_bytes(photo_bytes["obama.jpg"])
    with WorkerProcess(settings, tmp_path / "first.log") as first:
        facestream(settings, "produce", "--no-progress", str(images / "before.jpg"))
        answered("before.jpg")
        first.kill()  # a crash: no LeaveGroup, the broker keeps the member until its session times out

    restarted_at = time.monotonic()
    # Same id, same web address: faust's assignor asserts that the assignment the broker hands back names its URL.
    second = WorkerProcess(first.settings, tmp_path / "second.log").start()
    try:
        (images / "after.jpg").write_bytes(photo_bytes["obama.jpg"])
        facestream(settings, "produce", "--no-progress", str(images / "after.jpg"))
        answered("after.jpg")
        seconds = time.monotonic() - restarted_at
        record_property("static_member_restart_to_output_s", round(seconds, 2))
        assert seconds < 15, f"first output {seconds:.1f} s after the restart; log:\n{second.tail()}"

        # healthy and idle, it ends gracefully, well within the watchdog's grace
        assert assert_sigterm_ends_it_in_time(second, record_property, "idle") == 0
    finally:
        second.kill()
