"""``facestream embed PATH...``: faces and embeddings of image files, one result per image.

A file that cannot be read or is rejected yields an ``error`` object with the
same stable code the dead-letter topic would carry, and the run goes on; the
exit status is non-zero only for usage errors (argparse's own).
"""

from __future__ import annotations

import argparse
import asyncio
import json
import time
from typing import Any

from streams.config import Settings
from streams.errors import BackendError, ErrorCode, RecordError
from streams.inference import create_backend
from streams.pipeline import FacePipeline, ImageFaces, ModelIdentity


def register(subparsers: argparse._SubParsersAction) -> None:
    parser = subparsers.add_parser("embed", help="Detect faces in image files and print their embeddings.")
    parser.add_argument("paths", nargs="+", metavar="PATH", help="image files (JPEG, PNG, WebP, BMP)")
    parser.add_argument("--backend", choices=["onnx", "triton"], help="inference backend (default: FACESTREAM_BACKEND)")
    parser.add_argument("--json", action="store_true", help="one JSON object per line instead of a summary")
    parser.set_defaults(func=_embed)


def _embed(args: argparse.Namespace) -> int:
    overrides = {"backend": args.backend} if args.backend else {}
    settings = Settings.from_env(**overrides)
    show = _print_json if args.json else _print_summary
    for result in asyncio.run(embed_files(args.paths, settings)):
        show(result)
    return 0


async def embed_files(paths: list[str], settings: Settings) -> list[dict[str, Any]]:
    """One result dict per path, in order: faces, model and timings, or an error."""
    results: dict[int, dict[str, Any]] = {}
    decoded: list[tuple[int, Any, float]] = []
    pipeline = FacePipeline(create_backend(settings), settings)
    for i, path in enumerate(paths):
        started = time.perf_counter()
        try:
            with open(path, "rb") as f:
                image = pipeline.decode(f.read())
        except OSError as exc:
            results[i] = _error(path, ErrorCode.URI_UNREADABLE, f"cannot read {path}: {exc.strerror or exc}")
        except RecordError as exc:
            results[i] = _error(path, exc.code, exc.message)
        else:
            decoded.append((i, image, (time.perf_counter() - started) * 1000.0))
    if decoded:
        try:
            await pipeline.start()
            try:
                for chunk_start in range(0, len(decoded), settings.max_batch):
                    chunk = decoded[chunk_start : chunk_start + settings.max_batch]
                    faces = await pipeline.process([image for _, image, _ in chunk])
                    for (i, _, decode_ms), image_faces in zip(chunk, faces, strict=True):
                        results[i] = _faces(paths[i], image_faces, pipeline.identity, decode_ms)
            finally:
                await pipeline.close()
        except BackendError as exc:
            for i, _, _ in decoded:
                results.setdefault(i, _error(paths[i], ErrorCode.BACKEND_ERROR, str(exc)))
    return [results[i] for i in range(len(paths))]


def _faces(path: str, found: ImageFaces, model: ModelIdentity, decode_ms: float) -> dict[str, Any]:
    return {
        "image": path,
        "faces": [
            {
                "bbox": [round(float(v), 2) for v in face.bbox],
                "score": round(face.score, 5),
                "landmarks": [[round(float(x), 2), round(float(y), 2)] for x, y in face.landmarks],
                "embedding": [float(v) for v in face.embedding],
            }
            for face in found.faces
        ],
        "model": {"detector": model.detector, "embedder": model.embedder, "dim": model.dim, "version": model.version},
        "timings_ms": {"decode": round(decode_ms, 3), **{k: round(v, 3) for k, v in found.timings_ms.items()}},
    }


def _error(path: str, code: ErrorCode, message: str) -> dict[str, Any]:
    return {"image": path, "error": {"code": code.value, "message": message}}


def _print_json(result: dict[str, Any]) -> None:
    print(json.dumps(result), flush=True)


def _print_summary(result: dict[str, Any]) -> None:
    if "error" in result:
        print(f"{result['image']}: {result['error']['code']}: {result['error']['message']}")
        return
    faces = result["faces"]
    boxes = ", ".join(f"{[round(v) for v in f['bbox']]} score {f['score']:.3f}" for f in faces)
    print(f"{result['image']}: {len(faces)} face(s){': ' + boxes if faces else ''}")
