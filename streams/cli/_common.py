"""What the commands share: their Kafka set-up, the photos they are given, and how they print.

A command that talks to Kafka starts from :class:`KafkaCommand` (settings, the
credential check, topic names, the codec); a command that is given photos
walks its arguments with :func:`files_under` and embeds them in-process with
:func:`embed_photos`. Records read back are shown through :func:`printable`.
The ``error`` objects commands print carry a dead-letter code
(:class:`~streams.errors.ErrorCode`) or one of the codes below, which only a
command can meet.
"""

from __future__ import annotations

import asyncio
import base64
import datetime as dt
import sys
import time
from collections.abc import Iterable
from pathlib import Path
from typing import Any

from confluent_kafka import KafkaError, Message

from ..codecs import AvroCodec
from ..config import Settings
from ..errors import BackendError, ErrorCode, RecordError
from ..face_records import face_record, model_record
from ..inference import create_backend
from ..kafka import Producer, TopicNames, verify_kafka_credentials
from ..pipeline import FacePipeline, ImageFaces, ModelIdentity

#: The photo holds no face.
NO_FACE = "NO_FACE"
#: Kafka did not acknowledge the record in time.
NOT_SENT = "NOT_SENT"
#: No answer came in time.
TIMEOUT = "TIMEOUT"

#: The formats the pipeline decodes, by their usual file extensions.
IMAGE_SUFFIXES = frozenset({".jpg", ".jpeg", ".png", ".webp", ".bmp"})
#: Values of an embedding :func:`printable` shows unless asked for all.
SHORT_EMBEDDING = 4


class KafkaCommand:
    """The set-up of a command that talks to Kafka, named ``name`` in what it reports.

    The credential check comes first, so refused credentials are one clear
    line (exit status 2), not a flush that stalls until it times out.
    """

    def __init__(self, name: str) -> None:
        self.name = name
        self.settings = Settings.from_env()
        verify_kafka_credentials(self.settings)
        self.topics = TopicNames.from_settings(self.settings)
        self.codec = AvroCodec.from_settings(self.settings)

    def producer(self, *, flush_s: float) -> Producer:
        """A producer for publishing many records: each failed delivery is reported on stderr as it happens."""
        return Producer(self.settings, flush_s=flush_s, on_delivery=self._delivered)

    def _delivered(self, error: KafkaError | None, _message: Message) -> None:
        if error:
            print(f"facestream {self.name}: delivery failed: {error}", file=sys.stderr)


def error(code: ErrorCode | str, message: str) -> dict[str, str]:
    """The ``error`` object of a command's output: a stable code and a human message."""
    return {"code": code.value if isinstance(code, ErrorCode) else code, "message": message}


def printable(value: Any, full: bool) -> Any:
    """JSON-friendly view of a decoded record: bytes as base64 (or their size), times as ISO 8601."""
    if isinstance(value, dict):
        return {k: _field(k, v, full) for k, v in value.items()}
    if isinstance(value, list):
        return [printable(v, full) for v in value]
    if isinstance(value, bytes):
        return base64.b64encode(value).decode() if full else f"<{len(value)} bytes>"
    if isinstance(value, dt.datetime):
        return value.isoformat()
    return value


def _field(name: str, value: Any, full: bool) -> Any:
    if name == "embedding" and not full and isinstance(value, list) and len(value) > SHORT_EMBEDDING:
        return [round(v, 4) for v in value[:SHORT_EMBEDDING]] + [f"... {len(value)} values"]
    return printable(value, full)


def files_under(paths: Iterable[Path | str], suffixes: frozenset[str] | None = None) -> list[Path]:
    """The paths as given, each directory replaced by the files under it, at any depth, sorted.

    With ``suffixes``, a directory contributes only the files with one of
    them (in any case); a file named on the command line is always taken.
    """
    files: list[Path] = []
    for path in map(Path, paths):
        if path.is_dir():
            wanted = (p for p in path.rglob("*") if suffixes is None or p.suffix.lower() in suffixes)
            files += sorted(p for p in wanted if p.is_file())
        else:
            files.append(path)
    return files


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
            results[i] = _failed(path, ErrorCode.URI_UNREADABLE, f"cannot read {path}: {exc.strerror or exc}")
        except RecordError as exc:
            results[i] = _failed(path, exc.code, exc.message)
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
                        results[i] = _found(paths[i], image_faces, pipeline.identity, decode_ms)
            finally:
                await pipeline.close()
        except BackendError as exc:
            for i, _, _ in decoded:
                results.setdefault(i, _failed(paths[i], ErrorCode.BACKEND_ERROR, str(exc)))
    return [results[i] for i in range(len(paths))]


def embed_photos(paths: list[str]) -> list[dict[str, Any]]:
    """:func:`embed_files` results of ``paths`` with the in-process ONNX pipeline, whatever backend the worker uses."""
    return asyncio.run(embed_files(paths, Settings.from_env(backend="onnx")))


def faces_by_size(result: dict[str, Any]) -> list[dict[str, Any]]:
    """The faces of one :func:`embed_files` result, largest box first (the first is the person the photo is of)."""
    faces = result.get("faces") or []
    return sorted(faces, key=lambda f: -(f["bbox"][2] - f["bbox"][0]) * (f["bbox"][3] - f["bbox"][1]))


def largest_face(result: dict[str, Any]) -> dict[str, Any] | None:
    """The face with the largest box in one :func:`embed_files` result (the person the photo is of); None when none."""
    return next(iter(faces_by_size(result)), None)


def _found(path: str, found: ImageFaces, model: ModelIdentity, decode_ms: float) -> dict[str, Any]:
    return {
        "image": path,
        "faces": [_readable(face_record(face)) for face in found.faces],
        "model": model_record(model),
        "timings_ms": {"decode": round(decode_ms, 3), **{k: round(v, 3) for k, v in found.timings_ms.items()}},
    }


def _readable(face: dict[str, Any]) -> dict[str, Any]:
    """A face record rounded for reading, its landmarks as (x, y) pairs; the embedding stays exact."""
    points = face["landmarks"]
    return {
        **face,
        "bbox": [round(v, 2) for v in face["bbox"]],
        "score": round(face["score"], 5),
        "landmarks": [[round(x, 2), round(y, 2)] for x, y in zip(points[0::2], points[1::2], strict=True)],
    }


def _failed(path: str, code: ErrorCode, message: str) -> dict[str, Any]:
    return {"image": path, "error": error(code, message)}
