"""``facestream consume TOPIC``: print the records of any facestream topic, decoded."""

from __future__ import annotations

import argparse
import base64
import datetime as dt
import json
import uuid
from typing import Any

from ..config import Settings
from ..kafka import TopicNames, confluent_consumer, messages, verify_kafka_credentials

SHORT_EMBEDDING = 4


def register(sub: argparse._SubParsersAction) -> None:
    parser = sub.add_parser("consume", help="print decoded records of a facestream topic")
    parser.add_argument("topic", help="topic name; a name without the prefix gets it (e.g. embeddings)")
    parser.add_argument("--max", type=int, default=0, help="stop after N records (default: no limit)")
    parser.add_argument("--timeout", type=float, default=10.0, help="stop after S seconds without a record")
    parser.add_argument("--from-beginning", action="store_true", help="start at the earliest offset")
    parser.add_argument("--json", action="store_true", help="one JSON object per line")
    parser.add_argument("--full", action="store_true", help="print whole embeddings and byte fields")
    parser.set_defaults(func=run)


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


def resolve_topic(settings: Settings, name: str) -> str:
    known = set(TopicNames.from_settings(settings).all())
    return name if name in known or settings.topic(name) not in known else settings.topic(name)


def run(args: argparse.Namespace) -> int:
    from confluent_kafka import Consumer

    from ..codecs import AvroCodec
    from ..errors import RecordError

    settings = Settings.from_env()
    verify_kafka_credentials(settings)  # refused credentials: one clear line, not a stalled flush
    topic = resolve_topic(settings, args.topic)
    codec = AvroCodec(settings.schema_registry_url)
    consumer = Consumer(
        confluent_consumer(
            settings,
            group_id=f"facestream-consume-{uuid.uuid4().hex[:8]}",
            **{"auto.offset.reset": "earliest" if args.from_beginning else "latest"},
        )
    )
    consumer.subscribe([topic])
    count = 0
    try:
        for msg in messages(
            consumer,
            idle_s=args.timeout,
            until=lambda: bool(args.max) and count >= args.max,
            on_error=lambda error: print(json.dumps({"error": str(error)})),
        ):
            count += 1
            try:
                name, record = codec.decode_named(msg.value())
            except RecordError as exc:
                name, record = "undecodable", {"error": exc.message}
            coordinates = {
                "topic": msg.topic(),
                "partition": msg.partition(),
                "offset": msg.offset(),
                "key": msg.key().decode(errors="replace") if msg.key() is not None else None,
            }
            view = printable(record, args.full)
            if args.json:
                print(json.dumps({**view, **coordinates, "schema": name}), flush=True)
            else:
                print(f"{name} {coordinates['topic']}[{coordinates['partition']}]@{coordinates['offset']} "
                      f"key={coordinates['key']} {json.dumps(view)}", flush=True)
    finally:
        consumer.close()
    return 0
