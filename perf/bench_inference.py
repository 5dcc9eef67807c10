"""Inference throughput on real photographs: facestream's pipeline against the OpenCV loop, per backend.

Measured side by side in one run, on the same decoded photos, calls interleaved
so a load spike on a shared machine hits every peer alike:

* ``facestream``: :class:`FacePipeline` on the in-process ONNX Runtime backend (the
  embedded default), in batches of ``--batch`` images, as the stream hands them over;
* ``opencv``: the loop a user would write with OpenCV alone (:mod:`perf.opencv_loop`),
  one image at a time, on the same upstream models and thresholds;
* ``triton``: the same pipeline on a Triton server, when ``--triton-url`` is given.

Stages: ``detector`` (fit onto the canvas, detect, decode boxes: ``FaceDetectorYN.detect``
for OpenCV), ``embedder`` (the aligned crops of every face found, 112x112), ``pipeline``
(detect, align, embed). Each covers the whole photo set, and every peer's faces are
counted, so faces/s compares like with like when the detectors disagree on a face.
The photo set is the pinned real photographs plus group pictures made of them
(two and three people side by side), cycled to ``--images``. Ratios are printed
last. Results go to ``perf/results/bench_inference.json``.

    .venv/bin/python -m perf.bench_inference [--images 64] [--batch 16] [--repeats 5] [--triton-url 127.0.0.1:8001]
"""

from __future__ import annotations

import argparse
import asyncio
import os
import platform
import statistics
import sys
import time
from collections.abc import Awaitable, Callable
from pathlib import Path

import cv2
import numpy as np
import onnxruntime

from perf.opencv_loop import OpenCvLoop
from perf.report import write_report
from streams.config import Settings
from streams.inference import create_backend
from streams.pipeline import FacePipeline, infer_chunked
from tests.support.photos import PHOTOS, photo_bytes, side_by_side

RESULTS = Path(__file__).resolve().parent / "results" / "bench_inference.json"
GROUPS = (
    ("obama.jpg", "biden.jpg"),
    ("obama2.jpg", "astronaut.png"),
    ("biden.jpg", "obama3.jpg"),
    ("astronaut.png", "obama.jpg", "biden.jpg"),
    ("obama3.jpg", "obama2.jpg", "astronaut.png"),
    ("biden.jpg", "astronaut.png", "obama2.jpg"),
)

Call = Callable[[], Awaitable[object]]


def photo_set(n: int) -> list[np.ndarray]:
    """``n`` decoded BGR photos: every pinned photo, then the group pictures, cycled."""
    singles = {name: cv2.imdecode(np.frombuffer(photo_bytes(name), np.uint8), cv2.IMREAD_COLOR) for name in PHOTOS}
    groups = []
    for names in GROUPS:
        picture = singles[names[0]]
        for name in names[1:]:
            picture = side_by_side(picture, singles[name])
        groups.append(picture)
    distinct = [*singles.values(), *groups]
    return [distinct[i % len(distinct)] for i in range(n)]


def batches(items: list, size: int) -> list[list]:
    return [items[i : i + size] for i in range(0, len(items), size)]


async def facestream_calls(pipeline: FacePipeline, images: list[np.ndarray], crops: np.ndarray, batch: int):
    settings, backend = pipeline.settings, pipeline.backend

    async def detector() -> None:
        for chunk in batches(images, batch):
            await pipeline.detect(chunk)

    async def embedder() -> None:
        for first in range(0, len(crops), batch):
            await infer_chunked(backend, settings.embedder_model, crops[first : first + batch])

    async def whole() -> None:
        for chunk in batches(images, batch):
            await pipeline.process(chunk)

    return {"detector": detector, "embedder": embedder, "pipeline": whole}


def opencv_calls(loop: OpenCvLoop, images: list[np.ndarray], crops: np.ndarray) -> dict[str, Call]:
    async def detector() -> None:
        for image in images:
            loop.detect(image)

    async def embedder() -> None:
        for crop in crops:
            loop.embed(crop)

    async def whole() -> None:
        for image in images:
            loop.process(image)

    return {"detector": detector, "embedder": embedder, "pipeline": whole}


async def measure(calls: dict[str, Call], repeats: int) -> dict[str, float]:
    """Median seconds per peer; peers alternate call by call."""
    for call in calls.values():
        await call()  # warm-up
    samples: dict[str, list[float]] = {peer: [] for peer in calls}
    for _ in range(repeats):
        for peer, call in calls.items():
            start = time.perf_counter()
            await call()
            samples[peer].append(time.perf_counter() - start)
    return {peer: statistics.median(s) for peer, s in samples.items()}


async def bench(settings: Settings, triton_url: str | None, n: int, batch: int, repeats: int) -> dict:
    images = photo_set(n)
    peers = {"facestream": settings.replace(backend="onnx")}
    if triton_url:
        peers["triton"] = settings.replace(backend="triton", triton_url=triton_url)
    pipelines = {}
    for peer, peer_settings in peers.items():
        pipelines[peer] = FacePipeline(create_backend(peer_settings), peer_settings.replace(emit_aligned=True))
        await pipelines[peer].start()
    try:
        loop = OpenCvLoop(settings)
        found = [f for result in await pipelines["facestream"].process(images) for f in result.faces]
        crops = np.stack([f.aligned for f in found])  # the embedder stage's input, for every peer
        faces = {peer: len(found) for peer in pipelines} | {"opencv": sum(len(loop.detect(im)) for im in images)}
        calls = {peer: await facestream_calls(p, images, crops, batch) for peer, p in pipelines.items()}
        calls["opencv"] = opencv_calls(loop, images, crops)
        seconds = {}
        for stage in ("detector", "embedder", "pipeline"):
            seconds[stage] = await measure({peer: c[stage] for peer, c in calls.items()}, repeats)
            print(f"  {stage:8}: " + "  ".join(f"{p} {s:.3f} s" for p, s in seconds[stage].items()), flush=True)
        return {"images": len(images), "crops": len(crops), "faces": faces, "seconds": seconds}
    finally:
        for p in pipelines.values():
            await p.close()


def ratios(result: dict) -> dict[str, float]:
    """facestream over OpenCV (throughput), Triton time over ONNX Runtime time."""
    s, faces = result["seconds"], result["faces"]
    out = {
        "detector images/s, facestream / opencv": s["detector"]["opencv"] / s["detector"]["facestream"],
        "embedder faces/s, facestream / opencv": s["embedder"]["opencv"] / s["embedder"]["facestream"],
        "pipeline images/s, facestream / opencv": s["pipeline"]["opencv"] / s["pipeline"]["facestream"],
        "pipeline faces/s, facestream / opencv": (faces["facestream"] / s["pipeline"]["facestream"])
        / (faces["opencv"] / s["pipeline"]["opencv"]),
    }
    if "triton" in s["pipeline"]:
        for stage in s:
            out[f"{stage} time, triton / onnx"] = s[stage]["triton"] / s[stage]["facestream"]
    return out


def print_table(result: dict) -> None:
    s, faces, n = result["seconds"], result["faces"], result["images"]
    print(f"\n{result['images']} images, {result['crops']} crops; faces found: "
          + ", ".join(f"{p} {k}" for p, k in faces.items()))
    print(f"{'peer':11} {'detector img/s':>15} {'embedder faces/s':>17} {'pipeline img/s':>15} {'pipeline faces/s':>17}")
    for peer in s["pipeline"]:
        print(f"{peer:11} {n / s['detector'][peer]:15.1f} {result['crops'] / s['embedder'][peer]:17.1f} "
              f"{n / s['pipeline'][peer]:15.1f} {faces[peer] / s['pipeline'][peer]:17.1f}")


async def main(argv: list[str] | None = None) -> int:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--images", type=int, default=64)
    parser.add_argument("--batch", type=int, default=16, help="images per FacePipeline.process call")
    parser.add_argument("--repeats", type=int, default=5, help="timed passes per stage (median reported)")
    parser.add_argument("--triton-url", help="also measure the triton backend at this gRPC address")
    parser.add_argument("--out", type=Path, default=RESULTS)
    args = parser.parse_args(argv)

    settings = Settings.from_env()
    result = await bench(settings, args.triton_url, args.images, args.batch, args.repeats)
    print_table(result)
    report = {
        "benchmark": "bench_inference",
        "when": time.strftime("%Y-%m-%dT%H:%M:%SZ", time.gmtime()),
        "machine": {
            "platform": platform.platform(),
            "cpus": os.cpu_count(),
            "python": platform.python_version(),
            "onnxruntime": onnxruntime.__version__,
            "opencv": cv2.__version__,
        },
        "inputs": {"images": args.images, "batch": args.batch, "canvas": settings.canvas_size,
                   "embedder_model": settings.embedder_model, "repeats": args.repeats, "interleaved": True},
        "result": result,
        "ratios": ratios(result),
    }
    write_report(args.out, report)
    for name, value in report["ratios"].items():
        print(f"{name}: {value:.2f}")
    return 0


if __name__ == "__main__":
    sys.exit(asyncio.run(main()))
