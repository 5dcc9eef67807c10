"""``facestream enroll PATH... --gallery G``: embed photos and publish them as ``GalleryEntry`` upserts.

Each photo gives one subject, the largest face in it (the person the photo is
of, not a face in the background), embedded in-process with the ONNX pipeline.
A directory stands for the images under it (by extension). A photo that cannot be read or
holds no face is reported and skipped; the others are still enrolled. One JSON
object per photo is printed; the exit status is 0 only when every photo was
enrolled and acknowledged by Kafka.
"""

from __future__ import annotations

import argparse
import json
import time

from ._common import IMAGE_SUFFIXES, NO_FACE, KafkaCommand, embed_photos, error, files_under, largest_face


def register(sub: argparse._SubParsersAction) -> None:
    parser = sub.add_parser("enroll", help="embed photos and publish them to a gallery")
    parser.add_argument("paths", nargs="+", metavar="PATH", help="photos, one subject each, or folders (recursed)")
    parser.add_argument("--gallery", required=True, help="gallery id (the record key)")
    parser.add_argument(
        "--subject-from",
        choices=["stem", "filename"],
        default="stem",
        help="subject id: the file name without extension (stem, default) or with it (filename)",
    )
    parser.set_defaults(func=run)


def run(args: argparse.Namespace) -> int:
    command = KafkaCommand("enroll")
    topic = command.topics.gallery
    reports = []
    producer = command.producer(flush_s=30)
    photos = files_under(args.paths, IMAGE_SUFFIXES)  # a folder's notes and thumbnails are not subjects
    for path, result in zip(photos, embed_photos([str(p) for p in photos]), strict=True):
        subject = path.stem if args.subject_from == "stem" else path.name
        face = None if "error" in result else largest_face(result)
        if face is None:
            reason = result["error"] if "error" in result else error(NO_FACE, "no face found")
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
        # The gallery id is the key: the producer's murmur2 partitioner puts the entry where its queries go.
        value = command.codec.encode("GalleryEntry", record, topic=topic)
        producer.produce(topic, key=args.gallery.encode(), value=value)
        faces, score = len(result["faces"]), face["score"]
        reports.append({"image": str(path), "subject": subject, "enrolled": True, "faces": faces, "score": score})
    producer.flush()
    for report in reports:
        print(json.dumps({"gallery": args.gallery, **report}), flush=True)
    all_enrolled = all(r["enrolled"] for r in reports)
    return 0 if all_enrolled and not producer.failed and producer.unsent == 0 else 1
