"""Crash test: N events, K random SIGKILLs with restarts, then lost / duplicated outputs per input id.

Publishes N ImageEvents of the real portraits to fresh topics, runs one worker
and SIGKILLs it K times while it processes them, restarting it at once each time
(same settings, static membership, so the restart does not wait for the session
timeout). Kills are drawn at random fractions of the stream, so they land while
events are in flight, never during a restart. Once the outputs stop growing it
reads the embeddings and dead-letter topics back (read_committed under
exactly-once) and counts, per input id: lost (no output), duplicated (more than
one), dead-lettered; and per kill the time from the restart to the first output
record written after it (Kafka record timestamps). Exactly-once must show no
duplicates; at-least-once may, and they are reported. Not part of ``make test``:
it takes minutes.

    .venv/bin/python -m scripts.chaos [--events 2000] [--kills 20] [--guarantee at_least_once]
                                      [--partitions 2] [--bootstrap HOST:PORT] [--seed S] [--json PATH]

Without ``--bootstrap`` it uses ``tests.support.broker.kafka_broker()`` (``KAFKA_BOOTSTRAP_SERVERS``, else
a broker of its own). The worker log and results of each run go to ``.cache/chaos/<run>/``.
Exit status 1 when an id was lost or dead-lettered, or duplicated under exactly-once.
"""

from __future__ import annotations

import argparse
import contextlib
import hashlib
import json
import mimetypes
import random
import statistics
import sys
import time
import uuid
from collections import Counter
from collections.abc import Callable
from dataclasses import asdict, dataclass
from pathlib import Path

from confluent_kafka import Consumer

from streams.cli.produce import image_event
from streams.codecs import AvroCodec
from streams.config import Settings
from streams.kafka import Producer, TopicNames, confluent_consumer, ensure_topics, messages
from tests.support import REPO
from tests.support.broker import kafka_broker
from tests.support.photos import PORTRAITS, photo_bytes
from tests.support.topics import Received, read_topic
from tests.support.worker import WorkerProcess

RUNS = REPO / ".cache" / "chaos"
#: Kills fall between these fractions of the stream: the first batches and the tail stay calm.
KILL_SPAN = (0.05, 0.95)
#: After its fraction is reached a kill waits up to this long more, so it hits any point of a batch.
KILL_JITTER_S = 1.0
#: A worker that exits this often in a row without an output in between will not recover by itself.
MAX_SELF_EXITS = 5


@dataclass
class Kill:
    at_s: float  # since the worker first started
    answered: int  # distinct ids with an output when the worker was killed
    restart_at: float  # epoch seconds
    ready_s: float | None = None  # restart to /readyz 200
    first_output_s: float | None = None  # restart to the first output record timestamped after it


def output_id(schema: str, record: dict) -> str:
    """The input id an output answers: an embedding names it, a dead letter keeps the input key."""
    if schema == "FaceEmbeddings":
        return record["image_id"]
    return (record["key"] or b"").decode(errors="replace")


def produce_events(settings: Settings, n: int) -> dict[str, tuple[int, int]]:
    """Publish ``n`` events shaped like ``facestream produce`` makes them; (partition, offset) of each id."""
    topic = TopicNames.from_settings(settings).images
    codec = AvroCodec.from_settings(settings)
    payloads = {name: photo_bytes(name) for name in PORTRAITS}
    placed: dict[str, tuple[int, int]] = {}
    failed: list[str] = []

    def delivered(err, msg) -> None:
        if err:
            failed.append(f"{msg.key().decode()}: {err}")
        else:
            placed[msg.key().decode()] = (msg.partition(), msg.offset())

    with Producer(settings, flush_s=120, on_delivery=delivered) as producer:
        for i in range(n):
            photo = PORTRAITS[i % len(PORTRAITS)]
            event_id = f"{photo}-{i}"
            record = image_event(event_id, payloads[photo], mimetypes.guess_type(photo)[0], photo)
            producer.produce(topic, key=event_id.encode(), value=codec.encode("ImageEvent", record, topic=topic))
    if failed or len(placed) != n:
        raise SystemExit(f"chaos: {len(placed)} of {n} events acknowledged; failures: {failed[:5]}")
    return placed


class Monitor:
    """Follows the output topics live: which ids are answered, and when records arrive."""

    def __init__(self, settings: Settings, topics: list[str], isolation: str) -> None:
        self.codec = AvroCodec.from_settings(settings)
        self.consumer = Consumer(
            confluent_consumer(settings, group_id=f"chaos-monitor-{uuid.uuid4().hex[:8]}", **{"isolation.level": isolation})
        )
        self.consumer.subscribe(topics)
        self.answered: set[str] = set()
        self.records: Counter[str] = Counter()  # per topic
        self.last_growth = time.monotonic()

    def poll(self, timeout_s: float) -> list[float]:
        """Take what arrived; the Kafka timestamps (epoch seconds) of the new records."""
        stamps = []
        for msg in messages(self.consumer, timeout_s=timeout_s, poll_s=timeout_s):
            schema, record = self.codec.decode_named(msg.value())
            self.answered.add(output_id(schema, record))
            self.records[msg.topic()] += 1
            stamps.append(msg.timestamp()[1] / 1000.0)
        if stamps:
            self.last_growth = time.monotonic()
        return stamps

    def close(self) -> None:
        self.consumer.close()


class Chaos:
    """One worker under fire: kills, restarts, and how long each restart takes to produce again."""

    def __init__(self, worker: WorkerProcess, monitor: Monitor, quiet_s: float) -> None:
        self.worker = worker
        self.monitor = monitor
        self.quiet_s = quiet_s
        self.started = time.time()
        self.kills: list[Kill] = []
        self.exits: list[dict] = []  # the worker died on its own
        self.gave_up = ""  # why the outputs stopped before every id was answered
        self._exits_in_a_row = 0
        self.cold_start_s: float | None = None  # first start to first output, for comparison
        self._next_readyz = 0.0

    def pump(self, done: Callable[[], bool]) -> bool:
        """Follow outputs and restarts until ``done()``; False once there is no point waiting (see ``gave_up``)."""
        while not done():
            if time.monotonic() - self.monitor.last_growth > self.quiet_s:
                self.gave_up = f"no output for {self.quiet_s:g} s"
            if self.gave_up:
                return False
            stamps = self.monitor.poll(0.2)
            if stamps:
                self._exits_in_a_row = 0
            if self.cold_start_s is None and stamps:
                self.cold_start_s = min(stamps) - self.started
            last = self.kills[-1] if self.kills else None
            if last and last.first_output_s is None and any(t > last.restart_at for t in stamps):
                last.first_output_s = min(t for t in stamps if t > last.restart_at) - last.restart_at
            if last and last.ready_s is None and time.monotonic() >= self._next_readyz:
                self._next_readyz = time.monotonic() + 0.5
                if self.worker.readyz()[0] == 200:
                    last.ready_s = time.time() - last.restart_at
            if not self.worker.alive():
                status = self.worker.process.returncode
                self.exits.append({"at_s": time.time() - self.started, "returncode": status})
                self._exits_in_a_row += 1
                if self._exits_in_a_row >= MAX_SELF_EXITS:
                    self.gave_up = f"the worker exited by itself {MAX_SELF_EXITS} times in a row"
                    self._mark(f"worker exited by itself with status {status}; giving up")
                else:
                    self._mark(f"worker exited by itself with status {status}; restarting")
                    self.worker.start()
        return True

    def kill_and_restart(self) -> None:
        answered = len(self.monitor.answered)
        self.worker.kill()
        self._mark(f"SIGKILL #{len(self.kills) + 1} with {answered} ids answered; restarting")
        self.kills.append(Kill(time.time() - self.started, answered, time.time()))
        self.worker.start()

    def restarted_and_producing(self) -> bool:
        return not self.kills or self.kills[-1].first_output_s is not None

    def _mark(self, what: str) -> None:
        """A line in the worker log between two lives of the worker, so the log reads as a story."""
        with open(self.worker.log_path, "a") as log:
            log.write(f"\n===== chaos {time.strftime('%H:%M:%S')}: {what} =====\n\n")


def code_digest() -> str:
    """Digest of the package sources: a run is only meaningful if they did not change under it."""
    digest = hashlib.sha256()
    for path in sorted((REPO / "streams").rglob("*.py")):
        digest.update(str(path.relative_to(REPO)).encode() + b"\0" + path.read_bytes())
    return digest.hexdigest()[:16]


def offset_ranges(coordinates: list[tuple[int, int]]) -> dict[int, str]:
    """Input offsets per partition as compact ranges ("120-127,300"): lost batches show as runs."""
    by_partition: dict[int, list[int]] = {}
    for partition, offset in sorted(coordinates):
        by_partition.setdefault(partition, []).append(offset)
    out = {}
    for partition, offsets in by_partition.items():
        runs, start = [], offsets[0]
        for prev, cur in zip(offsets, offsets[1:] + [None]):
            if cur != prev + 1:
                runs.append(f"{start}-{prev}" if prev != start else str(start))
                start = cur
        out[partition] = ",".join(runs)
    return out


def tally(placed: dict[str, tuple[int, int]], embeddings: list[Received], dead: list[Received]) -> dict:
    """Lost, duplicated and dead-lettered input ids, from every output record read back."""
    outputs = Counter(output_id(r.schema, r.record) for r in [*embeddings, *dead])
    dead_ids = {output_id(r.schema, r.record) for r in dead}
    lost = sorted(i for i in placed if outputs[i] == 0)
    duplicated = sorted(i for i, count in outputs.items() if count > 1 and i in placed)
    return {
        "embeddings_records": len(embeddings),
        "dlq_records": len(dead),
        "lost": len(lost),
        "lost_input_offsets": offset_ranges([placed[i] for i in lost]) if lost else {},
        "lost_ids": lost[:50],
        "duplicated": len(duplicated),
        "duplicate_records": sum(outputs[i] - 1 for i in duplicated),
        "duplicated_ids": duplicated[:50],
        "dead_lettered": len(dead_ids & placed.keys()),
        "dead_letter_codes": dict(Counter(r.record["error_code"] for r in dead)),
        "unknown_ids": sorted(set(outputs) - placed.keys())[:50],
    }


def summary(result: dict) -> str:
    c, r = result["counts"], result["restarts"]
    lines = [
        f"chaos {result['run']}: {result['guarantee']}, {result['partitions']} partitions, "
        f"{result['events']} events, {len(result['kills'])} SIGKILLs, seed {result['seed']}",
        f"  produced in {result['produce_s']:.1f} s; processed in {result['process_s']:.1f} s "
        f"({result['events'] / result['process_s']:.1f} events/s with the restarts)"
        + ("" if result["finished"] else f"; GAVE UP before every id was answered: {result['gave_up']}"),
        "",
        f"  {'lost':>6} {'duplicated':>11} {'dup records':>12} {'dead letters':>13} {'worker self-exits':>18}",
        f"  {c['lost']:>6} {c['duplicated']:>11} {c['duplicate_records']:>12} {c['dead_lettered']:>13} "
        f"{len(result['self_exits']):>18}",
        "",
        f"  restart -> first output: p50 {fmt(r['first_output_p50_s'])} s, max {fmt(r['first_output_max_s'])} s; "
        f"restart -> ready: p50 {fmt(r['ready_p50_s'])} s, max {fmt(r['ready_max_s'])} s; "
        f"cold start -> first output: {fmt(r['cold_start_first_output_s'])} s",
        "",
        f"  {'kill':>4} {'at s':>7} {'answered':>9} {'ready s':>8} {'1st output s':>13}",
    ]
    for n, k in enumerate(result["kills"], 1):
        lines.append(f"  {n:>4} {k['at_s']:>7.1f} {k['answered']:>9} {fmt(k['ready_s']):>8} {fmt(k['first_output_s']):>13}")
    if c["lost"]:
        lines += ["", f"  lost input offsets per partition: {c['lost_input_offsets']}"]
    if result["guarantee"] == "exactly_once" and c["duplicated"]:
        lines += ["", f"  EXACTLY-ONCE VIOLATED: duplicated ids {c['duplicated_ids'][:10]}"]
    if c["unknown_ids"]:
        lines += ["", f"  outputs for ids never produced: {c['unknown_ids'][:10]}"]
    if not result["code_unchanged"]:
        lines += ["", "  WARNING: streams/ changed during the run; restarts may have run different code"]
    return "\n".join(lines)


def fmt(value: float | None) -> str:
    return "-" if value is None else f"{value:.1f}"


def run(args: argparse.Namespace, bootstrap: str) -> dict:
    run_id = f"{time.strftime('%Y%m%d-%H%M%S')}-{args.guarantee}-{uuid.uuid4().hex[:6]}"
    run_dir = RUNS / run_id
    run_dir.mkdir(parents=True)
    settings = Settings.from_env(
        kafka_bootstrap_servers=bootstrap,
        app_id=f"chaos-{run_id}",
        topic_prefix=f"chaos-{run_id}.",
        topic_partitions=args.partitions,
        processing_guarantee=args.guarantee,
        data_dir=str(run_dir / "worker"),
    ).replace(group_instance_id="chaos-worker-0")
    topics = TopicNames.from_settings(settings)
    isolation = "read_committed" if args.guarantee == "exactly_once" else "read_uncommitted"
    ensure_topics(settings)
    digest = code_digest()
    rng = random.Random(args.seed)
    kill_points = [rng.uniform(*KILL_SPAN) * args.events for _ in range(args.kills)]

    began = time.monotonic()
    placed = produce_events(settings, args.events)
    produce_s = time.monotonic() - began
    print(f"chaos {run_id}: {args.events} events published in {produce_s:.1f} s; worker log {run_dir / 'worker.log'}",
          flush=True)

    monitor = Monitor(settings, [topics.embeddings, topics.dlq], isolation)
    chaos = Chaos(WorkerProcess(settings, run_dir / "worker.log").start(), monitor, args.quiet_s)
    began = time.monotonic()
    try:
        for fraction in sorted(kill_points):
            if not chaos.pump(lambda f=fraction: chaos.restarted_and_producing() and len(monitor.answered) >= f):
                break
            jitter_until = time.monotonic() + rng.uniform(0, KILL_JITTER_S)
            if not chaos.pump(lambda t=jitter_until: time.monotonic() >= t):
                break
            chaos.kill_and_restart()
            print(f"  SIGKILL #{len(chaos.kills)} at {len(monitor.answered)}/{args.events} answered", flush=True)
        finished = chaos.pump(lambda: len(monitor.answered) >= args.events)
        process_s = time.monotonic() - began
    finally:
        chaos.worker.stop()
        monitor.close()

    def reread(topic: str) -> list[Received]:
        seen = monitor.records[topic]
        return read_topic(settings, topic, until=lambda r: len(r) >= seen, timeout_s=60, settle_s=2, isolation=isolation)

    counts = tally(placed, reread(topics.embeddings), reread(topics.dlq))
    first = [k.first_output_s for k in chaos.kills if k.first_output_s is not None]
    ready = [k.ready_s for k in chaos.kills if k.ready_s is not None]
    return {
        "run": run_id,
        "when": time.strftime("%Y-%m-%dT%H:%M:%SZ", time.gmtime()),
        "guarantee": args.guarantee,
        "partitions": args.partitions,
        "events": args.events,
        "seed": args.seed,
        "bootstrap": bootstrap,
        "topic_prefix": settings.topic_prefix,
        "worker_log": str(run_dir / "worker.log"),
        "code_digest": digest,
        "code_unchanged": code_digest() == digest,
        "produce_s": produce_s,
        "process_s": process_s,
        "finished": finished,
        "gave_up": chaos.gave_up,
        "counts": counts,
        "restarts": {
            "cold_start_first_output_s": chaos.cold_start_s,
            "first_output_p50_s": statistics.median(first) if first else None,
            "first_output_max_s": max(first, default=None),
            "ready_p50_s": statistics.median(ready) if ready else None,
            "ready_max_s": max(ready, default=None),
            "without_output": len(chaos.kills) - len(first),
        },
        "kills": [asdict(k) for k in chaos.kills],
        "self_exits": chaos.exits,
    }


def main(argv: list[str] | None = None) -> int:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--events", type=int, default=2000)
    parser.add_argument("--kills", type=int, default=20)
    parser.add_argument("--guarantee", choices=["at_least_once", "exactly_once"], default="at_least_once")
    parser.add_argument("--partitions", type=int, default=2)
    parser.add_argument("--bootstrap", help="a running broker (default: tests.support.broker.kafka_broker())")
    parser.add_argument("--seed", type=int, default=None, help="draws the kill points (default: random, printed)")
    parser.add_argument("--quiet-s", type=float, default=90.0,
                        help="give up once no output arrived for this long (default 90)")
    parser.add_argument("--json", type=Path, help="results file (default .cache/chaos/<run>/results.json)")
    args = parser.parse_args(argv)
    if args.events < 1 or args.kills < 0:
        parser.error("--events must be at least 1 and --kills not negative")
    if args.seed is None:
        args.seed = random.randrange(2**32)
    with contextlib.nullcontext(args.bootstrap) if args.bootstrap else kafka_broker() as bootstrap:
        result = run(args, bootstrap)
    out = args.json or Path(result["worker_log"]).with_name("results.json")
    out.parent.mkdir(parents=True, exist_ok=True)
    out.write_text(json.dumps(result, indent=2))
    print(summary(result))
    c = result["counts"]
    failed = c["lost"] or c["dead_lettered"] or c["unknown_ids"] or not result["finished"] or (
        args.guarantee == "exactly_once" and c["duplicated"]
    )
    if failed:
        print(f"\nworker log: {result['worker_log']}")
    print(f"results: {out}")
    return 1 if failed else 0


if __name__ == "__main__":
    sys.exit(main())
