"""``facestream query PATH --gallery G``: who is in a photo? Rank its face(s) against a gallery and decide.

The photo's largest face (``--all-faces``: every face) is embedded in-process,
published as a ``RerankQuery`` keyed by the gallery id with its model and
quality, and the answer with the same query id is awaited on the results
topic. Each answer carries the worker's decision (MATCH / UNKNOWN /
AMBIGUOUS); with several faces, one photo cannot hold one person twice, so
subjects are then given to faces by :func:`streams.identity.assign_faces` and a
face that loses its subject gets its next one or UNKNOWN. A query the worker
dead-letters (unknown gallery, another model, a face too poor to match, bad
parameters) is answered on the dead-letter topic instead and shown as an error.

One line per face: a summary, or with ``--json`` the ``RerankResult`` (plus the
face it is about). The exit status is 0 only when every face was answered.
"""

from __future__ import annotations

import argparse
import json
import time
import uuid
from typing import Any

from confluent_kafka import Consumer

from ..errors import RecordError
from ..identity import one_identity_per_face
from ..kafka import Producer, confluent_consumer, end_offsets, messages
from ..ranking import METHODS as RANKING_METHODS
from ._common import NO_FACE, NOT_SENT, TIMEOUT, KafkaCommand, embed_photos, error, faces_by_size, printable

METHODS = tuple(RANKING_METHODS)
#: How long Kafka has to acknowledge the queries before the command gives up on them.
SEND_TIMEOUT_S = 10


def register(sub: argparse._SubParsersAction) -> None:
    parser = sub.add_parser("query", help="rank a photo's face(s) against a gallery and decide who it is")
    parser.add_argument("path", metavar="PATH", help="photo of the face to look up")
    parser.add_argument("--gallery", required=True, help="gallery id")
    parser.add_argument("--top-k", type=int, default=5, help="most subjects per face (default 5)")
    parser.add_argument("--method", choices=METHODS, default="cosine", help="ranking method (default cosine)")
    parser.add_argument("--threshold", type=float, help="drop matches scoring below this")
    parser.add_argument(
        "--match-threshold", type=float, help="similarity from which a subject is a MATCH (default: the gallery's)"
    )
    parser.add_argument("--all-faces", action="store_true", help="every face of the photo, one subject at most once")
    parser.add_argument("--json", action="store_true", help="print each RerankResult as one JSON line")
    parser.add_argument(
        "--param", action="append", default=[], metavar="NAME=VALUE", help="method parameter, e.g. k1=20 (repeatable)"
    )
    parser.add_argument("--timeout", type=float, default=30.0, help="seconds to wait for the answers (default 30)")
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
    faces = faces_by_size(result)
    if not faces:
        return fail(error(NO_FACE, f"no face found in {args.path}"))
    faces = faces if args.all_faces else faces[:1]
    command = KafkaCommand("query")
    batch = uuid.uuid4().hex
    queries = [
        {
            "query_id": f"{batch}-{i}",
            "gallery_id": args.gallery,
            "candidates": None,
            "embedding": face["embedding"],
            "top_k": args.top_k,
            "threshold": args.threshold,
            "method": args.method,
            "params": params,
            "produced_at": int(time.time() * 1000),
            "model": result["model"],
            "match_threshold": args.match_threshold,
            "quality": face["quality"]["quality"] if face.get("quality") else None,
        }
        for i, face in enumerate(faces)
    ]
    answers = ask(command, queries, args.timeout)
    if answers is None:
        return fail(error(NOT_SENT, f"the queries were not acknowledged by Kafka within {SEND_TIMEOUT_S} s"))
    answers = one_identity_per_face(answers, command.settings.ambiguity_margin)
    for i, (face, answer) in enumerate(zip(faces, answers, strict=True)):
        shown = {**answer, "face": {"index": i, "bbox": face["bbox"], "quality": face.get("quality")}}
        print(json.dumps(shown) if args.json else summary(shown), flush=True)
    return 0 if all("error" not in a for a in answers) else 1


def summary(answer: dict[str, Any]) -> str:
    face = answer["face"]
    where = f"face {face['index'] + 1} {[round(v) for v in face['bbox']]}"
    if "error" in answer:
        return f"{where}: {answer['error']['code']}: {answer['error']['message']}"
    decision, subject, score = answer["decision"], answer["subject_id"], answer["best_score"]
    if subject is None:
        return f"{where}: {decision} (the gallery is empty)"
    margin = "" if answer["margin"] is None else f", margin {answer['margin']:.3f}"
    name = subject if decision != "UNKNOWN" else f"nearest {subject}"
    return f"{where}: {decision} {name} (similarity {score:.3f}{margin}, threshold {answer['match_threshold']:.3f})"


def dead_query_id(codec: Any, dead_letter: dict[str, Any]) -> str:
    """The query id of a dead-lettered record; raises RecordError when it is not a RerankQuery."""
    return codec.decode(dead_letter["value"] or b"", expect="RerankQuery")["query_id"]


def ask(command: KafkaCommand, queries: list[dict[str, Any]], timeout_s: float) -> list[dict[str, Any]] | None:
    """Publish ``queries``, then each one's result, dead letter (``error``) or timeout, in order; None when unsent."""
    settings, topics, codec = command.settings, command.topics, command.codec
    waiting = {q["query_id"]: i for i, q in enumerate(queries)}
    answers: dict[int, dict[str, Any]] = {}
    consumer = Consumer(confluent_consumer(settings, group_id=f"facestream-query-{queries[0]['query_id'][:8]}"))
    try:
        # Start at today's ends, fixed before the queries are sent: no answer can slip in before we listen.
        consumer.assign(end_offsets(consumer, [topics.rerank_results, topics.dlq]))
        with Producer(settings, flush_s=SEND_TIMEOUT_S) as producer:
            for query in queries:
                value = codec.encode("RerankQuery", query, topic=topics.queries)
                producer.produce(topics.queries, key=query["gallery_id"].encode(), value=value)
        if producer.unsent:
            return None
        for msg in messages(consumer, timeout_s=timeout_s, poll_s=0.2, until=lambda: len(answers) == len(queries)):
            try:
                name, record = codec.decode_named(msg.value())
                if name == "RerankResult" and record["query_id"] in waiting:
                    answers[waiting[record["query_id"]]] = printable(record, full=True)
                elif name == "DeadLetter" and (query_id := dead_query_id(codec, record)) in waiting:
                    answers[waiting[query_id]] = {"error": error(record["error_code"], record["message"])}
            except RecordError:
                continue  # someone else's record
    finally:
        consumer.close()
    late = error(TIMEOUT, f"no answer within {timeout_s:g} s")
    return [answers.get(i, {"error": late}) for i in range(len(queries))]
