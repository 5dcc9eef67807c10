"""HTTP API throughput against the in-process pipeline, measured side by side in one run.

A real ``facestream api`` process (subprocess, no broker needed for embeddings)
is sent one real photograph per ``POST /v1/embeddings`` by 1, 8 and 32
concurrent clients; for each it reports images/s, latency p50/p99 and the
detector calls per image (from the API's ``/metrics``: the micro-batcher at
work). In the same run it measures the in-process pipeline (decode included) at
the batch size those clients can fill, ``min(clients, FACESTREAM_MAX_BATCH)``,
and prints API/pipeline last.

    .venv/bin/python -m perf.bench_api [--requests 8] [--backend onnx|triton]

``--backend triton`` serves the models from a real Triton server (PyTriton, its
detector batches up to 16); ``onnx`` runs them in-process, whose detector takes
at most 2 canvases per call (CPU memory), so a batch of 16 costs 8 detector calls.
"""

from __future__ import annotations

import argparse
import asyncio
import contextlib
import os
import platform
import re
import sys
import tempfile
import time
from collections.abc import Callable
from functools import partial
from pathlib import Path

import httpx
import numpy as np

from perf.bench_stream import pipeline_images_per_s
from perf.report import write_report
from streams.config import Settings
from tests.support.photos import photo_bytes
from tests.support.triton import triton_server
from tests.support.worker import WorkerProcess

RESULTS = Path(__file__).resolve().parent / "results" / "bench_api.json"
CLIENTS = (1, 8, 32)
PHOTO = "obama.jpg"


def detector_calls(api: WorkerProcess, model: str) -> float:
    found = re.search(rf'^facestream_inference_seconds_count{{model="{model}"}} (\S+)$', api.metrics(), re.M)
    return float(found.group(1)) if found else 0.0


def wait_alive(api: WorkerProcess, timeout_s: float = 120.0) -> None:
    deadline = time.monotonic() + timeout_s
    while time.monotonic() < deadline:
        if not api.alive():
            raise RuntimeError(f"the API exited; log:\n{api.tail()}")
        with contextlib.suppress(OSError):
            if api.status_of("/healthz") == 200:
                return
        time.sleep(0.3)
    raise TimeoutError(f"the API did not answer; log:\n{api.tail()}")


async def clients_run(base: str, clients: int, per_client: int, photo: bytes, calls: Callable[[], float]) -> dict:
    """``clients`` concurrent clients, each sending ``per_client`` one-photo requests back to back.

    ``calls()`` reads the detector calls so far; the warm-up request's are not counted.
    """
    latencies: list[float] = []
    limits = httpx.Limits(max_connections=clients)
    async with httpx.AsyncClient(base_url=base, timeout=120, limits=limits) as http:

        async def client(requests: int) -> None:
            for _ in range(requests):
                started = time.perf_counter()
                reply = await http.post("/v1/embeddings", files=[("images", (PHOTO, photo, "image/jpeg"))])
                reply.raise_for_status()
                assert len(reply.json()["images"][0]["faces"]) == 1
                latencies.append(time.perf_counter() - started)

        await client(1)  # warm-up: a connection, the models
        latencies.clear()
        before = calls()
        started = time.perf_counter()
        await asyncio.gather(*(client(per_client) for _ in range(clients)))
        wall = time.perf_counter() - started
        detector_calls = calls() - before
    return {
        "detector_calls_per_image": detector_calls / len(latencies),
        "clients": clients,
        "images": len(latencies),
        "images_per_s": len(latencies) / wall,
        "latency_p50_s": float(np.percentile(latencies, 50)),
        "latency_p99_s": float(np.percentile(latencies, 99)),
    }


def main(argv: list[str] | None = None) -> int:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--requests", type=int, default=8, help="requests per client (at least 48 in all per level)")
    parser.add_argument("--backend", choices=("onnx", "triton"), default="onnx")
    parser.add_argument("--out", type=Path, default=RESULTS)
    args = parser.parse_args(argv)
    photo = photo_bytes(PHOTO)
    with contextlib.ExitStack() as stack:
        extra = {}
        if args.backend == "triton":
            extra = {"backend": "triton", "triton_url": stack.enter_context(triton_server())}
        settings = Settings.from_env(kafka_bootstrap_servers="127.0.0.1:9", **extra)
        tmp = Path(stack.enter_context(tempfile.TemporaryDirectory()))
        api = WorkerProcess(settings, tmp / "api.log", command="api").start()
        stack.callback(api.stop)
        wait_alive(api)
        base = f"http://127.0.0.1:{api.port}"
        levels = []
        for clients in CLIENTS:
            per_client = max(args.requests, -(-48 // clients))
            calls = partial(detector_calls, api, settings.detector_model)
            run = asyncio.run(clients_run(base, clients, per_client, photo, calls))
            batch = min(clients, settings.max_batch)
            run["pipeline_batch"] = batch
            run["pipeline_images_per_s"], _ = asyncio.run(
                pipeline_images_per_s(settings.replace(max_batch=batch), [photo], max(run["images"], 4 * batch))
            )
            run["api_over_pipeline"] = run["images_per_s"] / run["pipeline_images_per_s"]
            levels.append(run)
            print(
                f"{clients:3d} clients: {run['images_per_s']:6.1f} images/s  p50 {run['latency_p50_s'] * 1000:6.0f} ms  "
                f"p99 {run['latency_p99_s'] * 1000:6.0f} ms  detector calls/image {run['detector_calls_per_image']:.3f}  "
                f"pipeline@{batch} {run['pipeline_images_per_s']:6.1f} images/s",
                flush=True,
            )
    report = {
        "benchmark": "bench_api",
        "when": time.strftime("%Y-%m-%dT%H:%M:%SZ", time.gmtime()),
        "machine": {"platform": platform.platform(), "cpus": os.cpu_count()},
        "backend": args.backend,
        "max_batch": settings.max_batch,
        "levels": levels,
    }
    write_report(args.out, report)
    for run in levels:
        print(
            f"api/pipeline throughput ratio at {run['clients']} clients (batch {run['pipeline_batch']}): "
            f"{run['api_over_pipeline']:.2f}; detector calls per image {run['detector_calls_per_image']:.3f}"
        )
    return 0


if __name__ == "__main__":
    sys.exit(main())
