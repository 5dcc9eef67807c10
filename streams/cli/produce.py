"""``facestream produce PATH...``: publish image files as ``ImageEvent``s.

Each file's base name is its event id (``-k`` appended for ``--repeat``), so
results can be matched back to files; it is also the record key. A directory
stands for every file under it: the worker answers each, a file that is not
an image with its dead letter.
"""

from __future__ import annotations

import argparse
import mimetypes
import sys
import time
from pathlib import Path
from typing import Any

from ._common import KafkaCommand, files_under


def register(sub: argparse._SubParsersAction) -> None:
    parser = sub.add_parser("produce", help="publish image files as ImageEvents")
    parser.add_argument("paths", nargs="+", type=Path, help="files, or folders (recursed)")
    parser.add_argument("--topic", help="target topic (default <prefix>images)")
    parser.add_argument("--rate", type=float, default=0.0, help="events per second (default: as fast as possible)")
    parser.add_argument("--repeat", type=int, default=1, help="publish each file K times, ids suffixed -1..-K")
    parser.add_argument("--no-progress", action="store_true", help="no progress bar")
    parser.set_defaults(func=run)


def image_event(event_id: str, data: bytes, content_type: str | None, filename: str) -> dict[str, Any]:
    """The ``ImageEvent`` record of one image file's bytes."""
    return {
        "id": event_id,
        "image": data,
        "content_type": content_type,
        "produced_at": int(time.time() * 1000),
        "attributes": {"filename": filename},
    }


def event_ids(path: Path, repeat: int) -> list[str]:
    return [path.name] if repeat == 1 else [f"{path.name}-{k}" for k in range(1, repeat + 1)]


def run(args: argparse.Namespace) -> int:
    from tqdm import tqdm

    if args.repeat < 1:
        print("facestream produce: --repeat must be at least 1", file=sys.stderr)
        return 2
    command = KafkaCommand("produce")
    topic = args.topic or command.topics.images
    files = files_under(args.paths)
    missing = [str(p) for p in files if not p.exists()]
    if missing:
        print(f"facestream produce: no such file: {', '.join(missing)}", file=sys.stderr)
        return 2

    total = len(files) * args.repeat
    interval = 1.0 / args.rate if args.rate > 0 else 0.0
    next_at = time.monotonic()
    with (
        tqdm(total=total, unit="img", disable=args.no_progress or not sys.stderr.isatty()) as bar,
        command.producer(flush_s=60) as producer,
    ):
        for path in files:
            data = path.read_bytes()
            content_type = mimetypes.guess_type(path.name)[0]
            for event_id in event_ids(path, args.repeat):
                record = image_event(event_id, data, content_type, path.name)
                value = command.codec.encode("ImageEvent", record, topic=topic)
                producer.produce(topic, key=event_id.encode(), value=value)
                bar.update(1)
                if interval:
                    next_at += interval
                    time.sleep(max(0.0, next_at - time.monotonic()))
    print(f"produced {total} events to {topic}: {producer.acked} acknowledged, {producer.failed} failed")
    return 0 if producer.failed == 0 and producer.acked == total else 1
