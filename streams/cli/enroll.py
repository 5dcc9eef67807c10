"""``facestream enroll PATH... --gallery G``: embed photos and publish them as ``GalleryEntry`` upserts.

Each photo gives one subject, the largest face in it (the person the photo is
of, not a face in the background), embedded in-process with the ONNX pipeline.
A photo that cannot be read or holds no face is reported and skipped; the
others are still enrolled. One JSON object per photo is printed; the exit
status is 0 only when every photo was enrolled and acknowledged by Kafka.
"""

from __future__ import annotations

import argparse
import asyncio
import json
import sys
import time
from pathlib import Path
from typing import Any

from ..config import Settings
from ..kafka import Producer, TopicNames, verify_kafka_credentials


# Java clients and faust (aiokafka) place keys with murmur2; confluent-kafka defaults to CRC32.
# Gallery entries and queries must land on the partition of their gallery id whoever produces them.
def register(sub: argparse._SubParsersAction) -> None:
    parser = sub.add_parser("enroll", help="embed photos and publish them to a gallery")
    parser.add_argument("paths", nargs="+", metavar="PATH", help="photos, one subject each")
    parser.add_argument("--gallery", required=True, help="gallery id (the record key)")
    parser.add_argument(
        "--subject-from",
        choices=["stem", "filename"],
        default="stem",
        help="subject id: the file name without extension (stem, default) or with it (filename)",
    )
    parser.set_defaults(func=run)


def largest_face(result: dict[str, Any]) -> dict[str, Any] | None:
    """The face with the largest box in one ``embed_files`` result; None when it has none."""
    faces = result.get("faces") or []
    return max(faces, key=lambda f: (f["bbox"][2] - f["bbox"][0]) * (f["bbox"][3] - f["bbox"][1]), default=None)


def embed_photos(paths: list[str]) -> list[dict[str, Any]]:
    """``embed_files`` results of ``paths`` with the in-process ONNX pipeline."""
    from .embed import embed_files

    return asyncio.run(embed_files(paths, Settings.from_env(backend="onnx")))


def run(args: argparse.Namespace) -> int:
    from ..codecs import AvroCodec

    settings = Settings.from_env()
    verify_kafka_credentials(settings)  # refused credentials: one clear line, not a stalled flush
    topic = TopicNames.from_settings(settings).gallery
    codec = AvroCodec(settings.schema_registry_url)

    def delivered(err, _msg) -> None:
        if err:
            print(f"facestream enroll: delivery failed: {err}", file=sys.stderr)

    reports = []
    producer = Producer(settings, flush_s=30, on_delivery=delivered)
    for result in embed_photos([str(p) for p in args.paths]):
        path = Path(result["image"])
        subject = path.stem if args.subject_from == "stem" else path.name
        face = None if "error" in result else largest_face(result)
        if face is None:
            reason = result["error"] if "error" in result else {"code": "NO_FACE", "message": "no face found"}
            reports.append({"image": str(path), "subject": subject, "enrolled": False, "error": reason})
            continue
        record = {
            "gallery_id": args.gallery,
            "subject_id": subject,
            "op": "UPSERT",
            "embedding": face["embedding"],
            "model": result["model"],
            "produced_at": int(time.time() * 1000),
        }
        value = codec.encode("GalleryEntry", record, topic=topic)
        producer.produce(topic, key=args.gallery.encode(), value=value)
        faces = len(result["faces"])
        reports.append({"image": str(path), "subject": subject, "enrolled": True, "faces": faces, "score": face["score"]})
    producer.flush()
    for report in reports:
        print(json.dumps({"gallery": args.gallery, **report}), flush=True)
    all_enrolled = all(r["enrolled"] for r in reports)
    return 0 if all_enrolled and not producer.failed and producer.unsent == 0 else 1
