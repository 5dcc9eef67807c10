"""Inference throughput on real photographs: detector alone, embedder alone, whole pipeline, per backend.

Every backend is measured in the same run on the same inputs, so the printed
ratios (Triton over in-process ONNX Runtime) compare like with like. Triton is
measured when ``--triton-url`` is given (for instance the server of
``scripts/triton_serve.py``). Results go to ``perf/results/bench_inference.json``.

    .venv/bin/python -m perf.bench_inference [--triton-url 127.0.0.1:8001] [--batches 1 8 32] [--repeats 5]
"""

from __future__ import annotations

import argparse
import asyncio
import json
import os
import platform
import statistics
import sys
import time
from collections.abc import Awaitable, Callable
from pathlib import Path

import numpy as np
import onnxruntime

from streams.config import Settings
from streams.inference import create_backend
from streams.pipeline import FacePipeline, infer_chunked
from streams.vision.letterbox import letterbox_batch
from tests.support.photos import PORTRAITS, photo_bytes

RESULTS = Path(__file__).resolve().parent / "results" / "bench_inference.json"


def cycle(items: np.ndarray | list, n: int):
    """``n`` inputs drawn round-robin from the real ones (a batch of 32 repeats the 5 portraits)."""
    picked = [items[i % len(items)] for i in range(n)]
    return np.stack(picked) if isinstance(items, np.ndarray) else picked


Call = Callable[[], Awaitable[object]]


async def started_pipeline(settings: Settings) -> FacePipeline:
    pipeline = FacePipeline(create_backend(settings), settings.replace(emit_aligned=True))
    await pipeline.start()
    return pipeline


def stage_calls(pipeline: FacePipeline, n: int, images: list, canvas: np.ndarray, faces: np.ndarray) -> dict[str, Call]:
    """The three measured calls of one backend at batch size ``n``."""
    settings, backend = pipeline.settings, pipeline.backend
    return {
        "detector": lambda: infer_chunked(backend, settings.detector_model, cycle(canvas, n)),
        "embedder": lambda: infer_chunked(backend, settings.embedder_model, cycle(faces, n)),
        "pipeline": lambda: pipeline.process(cycle(images, n)),
    }


async def measure(calls: dict[str, Call], repeats: int) -> dict[str, float]:
    """Median seconds per backend; backends alternate call by call, so a load spike on a
    shared machine hits all of them alike instead of skewing the ratio."""
    for call in calls.values():
        await call()  # warm-up
    samples: dict[str, list[float]] = {kind: [] for kind in calls}
    for _ in range(repeats):
        for kind, call in calls.items():
            start = time.perf_counter()
            await call()
            samples[kind].append(time.perf_counter() - start)
    return {kind: statistics.median(s) for kind, s in samples.items()}


async def bench(backends: list[Settings], batches: list[int], repeats: int) -> list[dict]:
    pipelines = {s.backend: await started_pipeline(s) for s in backends}
    try:
        reference = pipelines["onnx"]
        images = [reference.decode(photo_bytes(name)) for name in PORTRAITS]
        canvas, _ = letterbox_batch(images, reference.settings.canvas_size)
        faces = np.stack([f.aligned for found in await reference.process(images) for f in found.faces])
        rows = []
        for n in batches:
            per_backend = {kind: stage_calls(p, n, images, canvas, faces) for kind, p in pipelines.items()}
            for stage in ("detector", "embedder", "pipeline"):
                seconds = await measure({kind: calls[stage] for kind, calls in per_backend.items()}, repeats)
                unit = "faces/s" if stage == "embedder" else "images/s"
                for kind, s in seconds.items():
                    rows.append(
                        {
                            "backend": kind,
                            "stage": stage,
                            "batch": n,
                            "seconds_per_batch": s,
                            "items_per_s": n / s,
                            "unit": unit,
                        }
                    )
                    print(f"  {kind:6} {stage:8} batch {n:3}: {n / s:8.1f} {unit}", flush=True)
        return rows
    finally:
        for p in pipelines.values():
            await p.close()


def ratios(rows: list[dict]) -> list[dict]:
    """Triton seconds over ONNX Runtime seconds per (stage, batch): the cost of going over the wire."""
    onnx = {(r["stage"], r["batch"]): r for r in rows if r["backend"] == "onnx"}
    out = []
    for r in rows:
        base = onnx.get((r["stage"], r["batch"]))
        if r["backend"] == "triton" and base:
            out.append(
                {
                    "stage": r["stage"],
                    "batch": r["batch"],
                    "triton_over_onnx_time": r["seconds_per_batch"] / base["seconds_per_batch"],
                }
            )
    return out


def print_table(rows: list[dict], overheads: list[dict]) -> None:
    by_key = {(r["backend"], r["stage"], r["batch"]): r["items_per_s"] for r in rows}
    over = {(o["stage"], o["batch"]): o["triton_over_onnx_time"] for o in overheads}
    print(f"\n{'stage':9} {'batch':>5} {'onnx /s':>10} {'triton /s':>10} {'triton time / onnx time':>24}")
    for stage, n in sorted({(r["stage"], r["batch"]) for r in rows}):
        triton = by_key.get(("triton", stage, n))
        ratio = over.get((stage, n))
        triton_cell = f"{triton:10.1f}" if triton else f"{'-':>10}"
        ratio_cell = f"{ratio:24.2f}" if ratio else f"{'-':>24}"
        print(f"{stage:9} {n:5} {by_key[('onnx', stage, n)]:10.1f} {triton_cell} {ratio_cell}")


async def main(argv: list[str] | None = None) -> int:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--batches", type=int, nargs="+", default=[1, 8, 32])
    parser.add_argument("--repeats", type=int, default=5, help="timed calls per measurement (median reported)")
    parser.add_argument("--triton-url", help="also measure the triton backend at this gRPC address")
    parser.add_argument("--out", type=Path, default=RESULTS)
    args = parser.parse_args(argv)

    settings = Settings.from_env()
    backends = [settings.replace(backend="onnx")]
    if args.triton_url:
        backends.append(settings.replace(backend="triton", triton_url=args.triton_url))
    rows = await bench(backends, args.batches, args.repeats)
    overheads = ratios(rows)
    print_table(rows, overheads)

    report = {
        "benchmark": "bench_inference",
        "when": time.strftime("%Y-%m-%dT%H:%M:%SZ", time.gmtime()),
        "machine": {
            "platform": platform.platform(),
            "cpus": os.cpu_count(),
            "python": platform.python_version(),
            "onnxruntime": onnxruntime.__version__,
            "providers": onnxruntime.get_available_providers(),
        },
        "inputs": {
            "photos": list(PORTRAITS),
            "canvas": settings.canvas_size,
            "repeats": args.repeats,
            "interleaved": True,
        },
        "results": rows,
        "triton_over_onnx": overheads,
    }
    args.out.parent.mkdir(parents=True, exist_ok=True)
    args.out.write_text(json.dumps(report, indent=2))
    print(f"\nwrote {args.out}")
    return 0


if __name__ == "__main__":
    sys.exit(asyncio.run(main()))
