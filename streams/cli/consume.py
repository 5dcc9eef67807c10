"""``facestream consume TOPIC``: print the records of any facestream topic, decoded."""

from __future__ import annotations

import argparse
import json
import uuid

from confluent_kafka import Consumer

from ..errors import RecordError
from ..kafka import confluent_consumer, messages
from ._common import KafkaCommand, printable


def register(sub: argparse._SubParsersAction) -> None:
    parser = sub.add_parser("consume", help="print decoded records of a facestream topic")
    parser.add_argument("topic", help="topic name; a name without the prefix gets it (e.g. embeddings)")
    parser.add_argument("--max", type=int, default=0, help="stop after N records (default: no limit)")
    parser.add_argument("--timeout", type=float, default=10.0, help="stop after S seconds without a record")
    parser.add_argument("--from-beginning", action="store_true", help="start at the earliest offset")
    parser.add_argument("--json", action="store_true", help="one JSON object per line")
    parser.add_argument("--full", action="store_true", help="print whole embeddings and byte fields")
    parser.set_defaults(func=run)


def resolve_topic(command: KafkaCommand, name: str) -> str:
    known, prefixed = set(command.topics.all()), command.settings.topic(name)
    return name if name in known or prefixed not in known else prefixed


def run(args: argparse.Namespace) -> int:
    command = KafkaCommand("consume")
    codec = command.codec
    topic = resolve_topic(command, args.topic)
    consumer = Consumer(
        confluent_consumer(
            command.settings,
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
