"""Worker memory under load, measured side by side with a plain OpenCV loop in one run.

A real worker (subprocess, default settings, in-process ONNX Runtime) is sampled
every 0.2 s (``VmRSS``; ``VmHWM``, reset per phase, catches peaks between samples):

* idle: once ``/readyz`` answers, before any event;
* steady: while it embeds the ten real photos over and over (``--events``);
* peak: while it embeds 32 legal 40-megapixel JPEGs of about 620 KB, made once
  from the portraits into ``.cache/bench_memory``.

The peer is the same photos through ``cv2.FaceDetectorYN`` + ``cv2.FaceRecognizerSF``
in a subprocess, one image at a time: what the models and pixels cost with no
stream processor around them. ``--budget-emulated`` adds a worker that holds at
most two big images at once (``max_batch`` 1, ``agent_concurrency`` 2), what an
80-megapixel ``max_pixels_in_flight`` allows. Prints worker/peer ratios last.

    .venv/bin/python -m perf.bench_memory [--runs 3] [--events 300] [--budget-emulated]

Uses ``KAFKA_BOOTSTRAP_SERVERS`` when set, else starts the local broker on free ports.
"""

from __future__ import annotations

import argparse
import json
import os
import platform
import statistics
import subprocess
import sys
import tempfile
import threading
import time
import uuid
from contextlib import contextmanager
from pathlib import Path

import cv2
import numpy as np
from confluent_kafka import Consumer

from perf.opencv_loop import OpenCvLoop
from streams.codecs import AvroCodec
from streams.config import Settings
from streams.kafka import Producer, TopicNames, confluent_consumer, ensure_topics, messages
from tests.support import REPO
from tests.support.broker import kafka_broker
from tests.support.photos import PHOTOS, PORTRAITS, photo_path
from tests.support.worker import WorkerProcess

RESULTS = Path(__file__).resolve().parent / "results" / "bench_memory.json"
BIG_CACHE = REPO / ".cache" / "bench_memory"
#: 39.9 MP, the largest 4:3 frame (sides multiples of 32) under the default 40 MP max_image_pixels.
BIG_SIZE = (7296, 5472)
BIG_BYTES = 620_000
BIG_EVENTS = 32
SAMPLE_S = 0.2


def big_jpegs() -> list[Path]:
    """One 40 MP JPEG of about ``BIG_BYTES`` per portrait: scaled to the frame's height, tiled across its width."""
    BIG_CACHE.mkdir(parents=True, exist_ok=True)
    paths = []
    for name in PORTRAITS:
        path = BIG_CACHE / f"{Path(name).stem}-{BIG_SIZE[0]}x{BIG_SIZE[1]}-{BIG_BYTES // 1000}k.jpg"
        if not path.exists():
            path.write_bytes(_encode_near(_tiled(cv2.imread(str(photo_path(name)), cv2.IMREAD_COLOR)), BIG_BYTES))
        paths.append(path)
    return paths


def _tiled(portrait: np.ndarray) -> np.ndarray:
    width, height = BIG_SIZE
    size = (round(portrait.shape[1] * height / portrait.shape[0]), height)
    scaled = cv2.resize(portrait, size, interpolation=cv2.INTER_CUBIC)
    return np.tile(scaled, (1, -(-width // scaled.shape[1]), 1))[:, :width]


def _encode_near(image: np.ndarray, target: int) -> bytes:
    """The JPEG whose size is closest to ``target`` bytes (bisection over the quality).

    At 40 MP that is quality 1 or close: a baseline JPEG spends about a byte per 8x8 block
    whatever the quality, so 620 KB photos of that size are as compressed as JPEG gets.
    """
    low, high, best = 1, 100, b""
    while low <= high:
        quality = (low + high) // 2
        data = cv2.imencode(".jpg", image, [cv2.IMWRITE_JPEG_QUALITY, quality])[1].tobytes()
        if not best or abs(len(data) - target) < abs(len(best) - target):
            best = data
        low, high = (quality + 1, high) if len(data) < target else (low, quality - 1)
    return best


class RssSampler:
    """VmRSS of one process every ``SAMPLE_S`` in a thread; each phase reports median and max RSS and its VmHWM."""

    def __init__(self, pid: int) -> None:
        self.pid = pid
        self._samples: list[float] = []
        self._stop = threading.Event()
        self._thread = threading.Thread(target=self._loop, daemon=True)
        self._thread.start()

    def status_mb(self) -> dict[str, float]:
        fields = {}
        with open(f"/proc/{self.pid}/status") as fh:
            for line in fh:
                key, _, value = line.partition(":")
                if key in ("VmRSS", "VmHWM"):
                    fields[key] = int(value.split()[0]) / 1024
        return fields

    def _loop(self) -> None:
        while not self._stop.wait(SAMPLE_S):
            try:
                self._samples.append(self.status_mb()["VmRSS"])
            except (OSError, KeyError):
                return

    @contextmanager
    def phase(self, into: dict, name: str):
        """A dict for the phase's numbers, stored as ``into[name]``, its RSS added at the end.

        VmHWM is reset first (``clear_refs`` 5) so the peak reported is the phase's own.
        """
        Path(f"/proc/{self.pid}/clear_refs").write_text("5")
        first = len(self._samples)
        stats = into[name] = {}
        yield stats
        samples = self._samples[first:] + [self.status_mb()["VmRSS"]]
        peak = self.status_mb()["VmHWM"]
        stats.update(rss_median_mb=statistics.median(samples), rss_max_mb=max(samples), hwm_mb=peak)

    def stop(self) -> None:
        self._stop.set()
        self._thread.join()


class Answers:
    """Publishes ImageEvents and waits until each has its one answer (embeddings or dead letter)."""

    def __init__(self, settings: Settings) -> None:
        self.topics = TopicNames.from_settings(settings)
        self.codec = AvroCodec()
        self.producer = Producer(settings, flush_s=60)
        self.consumer = Consumer(confluent_consumer(settings, group_id=f"bench-memory-{uuid.uuid4().hex[:6]}"))
        self.consumer.subscribe([self.topics.embeddings, self.topics.dlq])

    def run(self, payloads: list[bytes], n: int, prefix: str) -> dict:
        """Publish ``n`` events cycling over ``payloads``; seconds until all answered, and dead letters among them."""
        start = time.time()
        ids = set()
        for i in range(n):
            event_id = f"{prefix}-{i}"
            ids.add(event_id)
            record = {"id": event_id, "image": payloads[i % len(payloads)], "produced_at": int(time.time() * 1000)}
            self.producer.produce(
                self.topics.images, key=event_id.encode(), value=self.codec.encode("ImageEvent", record)
            )
        self.producer.flush()
        dead = 0
        for msg in messages(self.consumer, timeout_s=900, until=lambda: not ids):
            schema, record = self.codec.decode_named(msg.value())
            image_id = record.get("image_id") or msg.key().decode()
            if image_id in ids:
                ids.discard(image_id)
                dead += schema == "DeadLetter"
        if ids:
            raise RuntimeError(f"{len(ids)} of {n} events unanswered")
        seconds = time.time() - start
        return {"events": n, "seconds": seconds, "images_per_s": n / seconds, "dead_letters": dead}

    def close(self) -> None:
        self.consumer.close()


def worker_run(
    settings: Settings, answers: Answers, photos: list[bytes], big: list[bytes], events: int, log: Path
) -> dict:
    """Idle, steady (``events`` photos; none skips it) and peak phases of one fresh worker."""
    run_id = uuid.uuid4().hex[:6]
    result: dict = {}
    with WorkerProcess(settings, log) as worker:
        sampler = RssSampler(worker.process.pid)
        try:
            with sampler.phase(result, "idle"):
                time.sleep(2)
            answers.run(photos[:1], 2, f"warm-{run_id}")  # the first batch pays for thread pools and sessions
            if events:
                with sampler.phase(result, "steady") as steady:
                    steady["stream"] = answers.run(photos, events, f"photo-{run_id}")
            with sampler.phase(result, "peak") as peak:
                peak["stream"] = answers.run(big, BIG_EVENTS, f"big-{run_id}")
        finally:
            sampler.stop()
    return result


def peer_run(paths: list[Path], events: int) -> dict:
    """The peer on ``events`` images cycling over ``paths``: idle, then its whole run as one phase."""
    result: dict = {}
    peer = subprocess.Popen(
        [sys.executable, "-m", "perf.bench_memory", "--peer", str(events), *map(str, paths)],
        cwd=REPO, stdin=subprocess.PIPE, stdout=subprocess.PIPE, text=True,
    )
    sampler = RssSampler(peer.pid)
    try:
        assert peer.stdout.readline().strip() == "ready"
        with sampler.phase(result, "idle"):
            time.sleep(2)
        with sampler.phase(result, "run") as run:
            peer.stdin.write("go\n")
            peer.stdin.flush()
            run["images_per_s"] = float(peer.stdout.readline().split()[1])
    finally:
        sampler.stop()
        peer.stdin.close()
        peer.wait(30)
    return result


def peer_main(events: int, paths: list[str]) -> None:
    """Decode, detect, align and embed one image at a time, as OpenCV's samples do (perf.opencv_loop)."""
    loop = OpenCvLoop(Settings.from_env())
    payloads = [Path(p).read_bytes() for p in paths]
    print("ready", flush=True)
    sys.stdin.readline()
    start = time.perf_counter()
    for i in range(events):
        loop.process(cv2.imdecode(np.frombuffer(payloads[i % len(payloads)], np.uint8), cv2.IMREAD_COLOR))
    print(f"done {events / (time.perf_counter() - start)}", flush=True)
    sys.stdin.readline()


def summary(runs: list[dict], *path: str) -> float:
    """Median over runs of one reported number."""
    values = []
    for run in runs:
        for key in path:
            run = run[key]
        values.append(run)
    return statistics.median(values)


def main(argv: list[str] | None = None) -> int:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--runs", type=int, default=1, help="fresh workers (and peers) per configuration")
    parser.add_argument("--events", type=int, default=300, help="photo events of the steady phase")
    parser.add_argument("--budget-emulated", action="store_true", help="also a worker holding two big images at most")
    parser.add_argument("--out", type=Path, default=RESULTS)
    parser.add_argument("--peer", nargs="+", help=argparse.SUPPRESS)
    args = parser.parse_args(argv)
    if args.peer:
        peer_main(int(args.peer[0]), args.peer[1:])
        return 0

    photo_paths = [photo_path(name) for name in PHOTOS]
    big_paths = big_jpegs()
    photos = [p.read_bytes() for p in photo_paths]
    big = [p.read_bytes() for p in big_paths]
    print(f"big images: {len(big_paths)} x {BIG_SIZE[0]}x{BIG_SIZE[1]}, {min(map(len, big)) // 1000}-"
          f"{max(map(len, big)) // 1000} KB", flush=True)
    report: dict = {"worker": [], "budget_emulated": [], "peer": []}
    with kafka_broker() as bootstrap, tempfile.TemporaryDirectory() as tmp:
        settings = Settings.from_env(
            kafka_bootstrap_servers=bootstrap,
            app_id=f"bench-memory-{uuid.uuid4().hex[:6]}",
            topic_prefix=f"benchmem{uuid.uuid4().hex[:6]}.",
            backend="onnx",
            data_dir=str(Path(tmp) / "worker"),
        )
        ensure_topics(settings)
        answers = Answers(settings)
        try:
            for run in range(args.runs):
                worker = worker_run(settings, answers, photos, big, args.events, Path(tmp) / f"worker-{run}.log")
                report["worker"].append(worker)
                peer = {"steady": peer_run(photo_paths, args.events), "peak": peer_run(big_paths, BIG_EVENTS)}
                report["peer"].append(peer)
                print(f"run {run + 1}: worker idle {worker['idle']['rss_max_mb']:.0f} MB, "
                      f"steady {worker['steady']['rss_max_mb']:.0f} MB "
                      f"({worker['steady']['stream']['images_per_s']:.1f} images/s), "
                      f"peak {worker['peak']['hwm_mb']:.0f} MB ({worker['peak']['stream']['seconds']:.0f} s) | "
                      f"peer idle {peer['steady']['idle']['rss_max_mb']:.0f} MB, "
                      f"steady {peer['steady']['run']['rss_max_mb']:.0f} MB "
                      f"({peer['steady']['run']['images_per_s']:.1f} images/s), "
                      f"peak {peer['peak']['run']['hwm_mb']:.0f} MB", flush=True)
                if args.budget_emulated:
                    held = settings.replace(max_batch=1, agent_concurrency=2)
                    emulated = worker_run(held, answers, photos, big, 0, Path(tmp) / f"budget-{run}.log")
                    report["budget_emulated"].append(emulated)
                    print(f"run {run + 1}: worker peak with budget emulated {emulated['peak']['hwm_mb']:.0f} MB "
                          f"({emulated['peak']['stream']['seconds']:.0f} s)", flush=True)
        finally:
            answers.close()

    workers, peers = report["worker"], report["peer"]
    medians = {
        "idle": (summary(workers, "idle", "rss_max_mb"), summary(peers, "steady", "idle", "rss_max_mb")),
        "steady": (summary(workers, "steady", "rss_max_mb"), summary(peers, "steady", "run", "rss_max_mb")),
        "peak": (summary(workers, "peak", "hwm_mb"), summary(peers, "peak", "run", "hwm_mb")),
    }
    if report["budget_emulated"]:
        medians["peak_budget_emulated"] = (summary(report["budget_emulated"], "peak", "hwm_mb"), medians["peak"][1])
    report.update(
        benchmark="bench_memory",
        when=time.strftime("%Y-%m-%dT%H:%M:%SZ", time.gmtime()),
        machine={"platform": platform.platform(), "cpus": os.cpu_count()},
        inputs={"photos": list(PHOTOS), "events": args.events, "big": [p.name for p in big_paths],
                "big_events": BIG_EVENTS, "sample_s": SAMPLE_S},
        medians_mb={k: {"worker": w, "peer": p, "worker_over_peer": w / p} for k, (w, p) in medians.items()},
    )
    args.out.parent.mkdir(parents=True, exist_ok=True)
    args.out.write_text(json.dumps(report, indent=2))
    print(f"\n{'phase':22} {'worker MB':>10} {'peer MB':>10}")
    for name, (w, p) in medians.items():
        print(f"{name:22} {w:10.0f} {p:10.0f}")
    print(f"wrote {args.out}")
    print("worker/peer RSS ratio (median of runs): " + ", ".join(f"{k} {w / p:.2f}" for k, (w, p) in medians.items()))
    return 0


if __name__ == "__main__":
    sys.exit(main())
