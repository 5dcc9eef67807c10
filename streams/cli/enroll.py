"""``facestream enroll PATH... --gallery G``: embed photos and publish them as ``GalleryEntry`` upserts.

Each photo gives one template of a subject, the largest face in it (the person
the photo is of, not a face in the background), embedded in-process with the
ONNX pipeline. The subject is the file's name, or with ``--subject-from folder``
its folder's (one folder per person, every photo a template of that subject).
A directory stands for the images under it (by extension). A photo that cannot
be read, holds no face, or whose face is below ``FACESTREAM_ENROL_MIN_QUALITY``
(blurred, tiny, turned away) is reported and skipped; the others are still
enrolled. One JSON
object per photo is printed; progress and throughput (entries/s) go to stderr
every few seconds and at the end, so a long enrolment shows it is moving. The exit status is 0 only when every photo was
enrolled and acknowledged by Kafka.
"""

from __future__ import annotations

import argparse
import json
import sys
import time
from typing import Any

from ..errors import ErrorCode
from ..vision.quality import FaceQuality, below_enrolment_gate
from ._common import IMAGE_SUFFIXES, NO_FACE, KafkaCommand, embed_photos, error, files_under, largest_face


def register(sub: argparse._SubParsersAction) -> None:
    parser = sub.add_parser("enroll", help="embed photos and publish them to a gallery")
    parser.add_argument("paths", nargs="+", metavar="PATH", help="photos, one subject each, or folders (recursed)")
    parser.add_argument("--gallery", required=True, help="gallery id (the record key)")
    parser.add_argument(
        "--subject-from",
        choices=["stem", "filename", "folder"],
        default="stem",
        help="subject id: the file name without extension (stem, default), with it (filename), or the folder's "
        "name (folder: each photo a template named by its stem)",
    )
    parser.add_argument(
        "--match-threshold",
        type=float,
        help="similarity from which a query matches in this gallery (default: the model's)",
    )
    parser.set_defaults(func=run)


def run(args: argparse.Namespace) -> int:
    command = KafkaCommand("enroll")
    topic = command.topics.gallery
    reports = []
    producer = command.producer(flush_s=30)
    photos = files_under(args.paths, IMAGE_SUFFIXES)  # a folder's notes and thumbnails are not subjects
    progress = Progress(len(photos))
    for path, result in zip(photos, embed_photos([str(p) for p in photos]), strict=True):
        subject = {"stem": path.stem, "filename": path.name, "folder": path.parent.name}[args.subject_from]
        template = path.stem if args.subject_from == "folder" else None
        face = None if "error" in result else largest_face(result)
        reason = result["error"] if "error" in result else refusal(face, command.settings.enrol_min_quality)
        progress.step(enrolled=not reason)
        if reason:
            reports.append({"image": str(path), "subject": subject, "enrolled": False, "error": reason})
            continue
        record = {
            "gallery_id": args.gallery,
            "subject_id": subject,
            "op": "UPSERT",
            "embedding": face["embedding"],
            "model": result["model"],
            "produced_at": int(time.time() * 1000),
            "template_id": template,
            "quality": face["quality"]["quality"],
            "match_threshold": args.match_threshold,
        }
        # The gallery id is the key: the producer's murmur2 partitioner puts the entry where its queries go.
        value = command.codec.encode("GalleryEntry", record, topic=topic)
        producer.produce(topic, key=args.gallery.encode(), value=value)
        faces, score, quality = len(result["faces"]), face["score"], round(face["quality"]["quality"], 3)
        reports.append(
            {"image": str(path), "subject": subject, "template": template, "enrolled": True, "faces": faces,
             "score": score, "quality": quality}
        )
    producer.flush()
    progress.report(final=True)
    for report in reports:
        print(json.dumps({"gallery": args.gallery, **report}), flush=True)
    all_enrolled = all(r["enrolled"] for r in reports)
    return 0 if all_enrolled and not producer.failed and producer.unsent == 0 else 1


class Progress:
    """Photos read and entries published so far, and entries/s, on stderr every ``every_s`` seconds."""

    def __init__(self, total: int, every_s: float = 2.0) -> None:
        self.total, self.every_s = total, every_s
        self.read = self.enrolled = 0
        self.started = self.shown = time.monotonic()

    def step(self, *, enrolled: bool) -> None:
        self.read += 1
        self.enrolled += enrolled
        if time.monotonic() - self.shown >= self.every_s:
            self.report()

    def report(self, *, final: bool = False) -> None:
        self.shown = time.monotonic()
        elapsed = max(self.shown - self.started, 1e-9)
        what = "enrolled" if final else "enrolling"
        print(f"{what}: {self.read}/{self.total} photos read, {self.enrolled} entries published in {elapsed:.1f} s "
              f"({self.enrolled / elapsed:.1f} entries/s)", file=sys.stderr, flush=True)


def refusal(face: dict[str, Any] | None, gate: float) -> dict[str, str] | None:
    """Why a photo's face is not enrolled (none found, or too poor to recognise anyone by), or None."""
    if face is None:
        return error(NO_FACE, "no face found")
    reason = below_enrolment_gate(FaceQuality(**face["quality"]), gate)
    return None if reason is None else error(ErrorCode.LOW_QUALITY, reason)
