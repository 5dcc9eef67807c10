"""``facestream query PATH --gallery G``: rank a photo's face against a gallery and print the ``RerankResult``.

The photo's largest face is embedded in-process, published as a
``RerankQuery`` keyed by the gallery id, and the answer with the same query id
is awaited on the results topic. A query the worker dead-letters (unknown
gallery, wrong dimension, bad parameters) is answered on the dead-letter
topic instead: it is printed as an error object and the exit status is 1.
"""

from __future__ import annotations

import argparse
import json
import time
import uuid
from typing import Any

from confluent_kafka import Consumer

from ..errors import RecordError
from ..kafka import Producer, confluent_consumer, end_offsets, messages
from ..ranking import METHODS as RANKING_METHODS
from ._common import NO_FACE, NOT_SENT, TIMEOUT, KafkaCommand, embed_photos, error, largest_face, printable

METHODS = tuple(RANKING_METHODS)
#: How long Kafka has to acknowledge the query before the command gives up on it.
SEND_TIMEOUT_S = 10


def register(sub: argparse._SubParsersAction) -> None:
    parser = sub.add_parser("query", help="rank a photo's face against a gallery")
    parser.add_argument("path", metavar="PATH", help="photo of the face to look up")
    parser.add_argument("--gallery", required=True, help="gallery id")
    parser.add_argument("--top-k", type=int, default=5, help="most matches (default 5)")
    parser.add_argument("--method", choices=METHODS, default="cosine", help="ranking method (default cosine)")
    parser.add_argument("--threshold", type=float, help="drop matches scoring below this")
    parser.add_argument(
        "--param", action="append", default=[], metavar="NAME=VALUE", help="method parameter, e.g. k1=20 (repeatable)"
    )
    parser.add_argument("--timeout", type=float, default=30.0, help="seconds to wait for the answer (default 30)")
    parser.set_defaults(func=run)


def parse_params(items: list[str]) -> dict[str, float]:
    params = {}
    for item in items:
        name, sep, value = item.partition("=")
        try:
            params[name] = float(value)
        except ValueError:
            sep = ""
        if not sep or not name:
            raise SystemExit(f"facestream query: --param expects NAME=NUMBER, got {item!r}")
    return params


def fail(reason: dict[str, Any]) -> int:
    print(json.dumps({"error": reason}), flush=True)
    return 1


def run(args: argparse.Namespace) -> int:
    params = parse_params(args.param)
    (result,) = embed_photos([args.path])
    if "error" in result:
        return fail(result["error"])
    face = largest_face(result)
    if face is None:
        return fail(error(NO_FACE, f"no face found in {args.path}"))
    command = KafkaCommand("query")
    query = {
        "query_id": uuid.uuid4().hex,
        "gallery_id": args.gallery,
        "candidates": None,
        "embedding": face["embedding"],
        "top_k": args.top_k,
        "threshold": args.threshold,
        "method": args.method,
        "params": params,
        "produced_at": int(time.time() * 1000),
    }
    return ask(command, query, args.timeout)


def dead_query_id(codec: Any, dead_letter: dict[str, Any]) -> str:
    """The query id of a dead-lettered record; raises RecordError when it is not a RerankQuery."""
    return codec.decode(dead_letter["value"] or b"", expect="RerankQuery")["query_id"]


def ask(command: KafkaCommand, query: dict[str, Any], timeout_s: float) -> int:
    """Publish ``query``, then print its result (exit 0) or its dead letter or a timeout (exit 1)."""
    settings, topics, codec = command.settings, command.topics, command.codec
    consumer = Consumer(confluent_consumer(settings, group_id=f"facestream-query-{query['query_id'][:8]}"))
    try:
        # Start at today's ends, fixed before the query is sent: the answer cannot slip in before we listen.
        consumer.assign(end_offsets(consumer, [topics.rerank_results, topics.dlq]))
        with Producer(settings, flush_s=SEND_TIMEOUT_S) as producer:
            value = codec.encode("RerankQuery", query, topic=topics.queries)
            producer.produce(topics.queries, key=query["gallery_id"].encode(), value=value)
        if producer.unsent:
            return fail(error(NOT_SENT, f"the query was not acknowledged by Kafka within {SEND_TIMEOUT_S} s"))
        for msg in messages(consumer, timeout_s=timeout_s, poll_s=0.2):
            try:
                name, record = codec.decode_named(msg.value())
                if name == "RerankResult" and record["query_id"] == query["query_id"]:
                    print(json.dumps(printable(record, full=True)), flush=True)
                    return 0
                if name == "DeadLetter" and dead_query_id(codec, record) == query["query_id"]:
                    return fail(error(record["error_code"], record["message"]))
            except RecordError:
                continue  # someone else's record
        return fail(error(TIMEOUT, f"no answer to query {query['query_id']} within {timeout_s:g} s"))
    finally:
        consumer.close()
