"""The topic contract as an AsyncAPI 3.0 document: every topic, its key, its Avro value schema, who reads and writes it.

Consumers of the embedding topics (Connect, ksqlDB, Flink, plain clients) and
the teams producing images need one place that says what flows where. The
document is built from the same facts the worker runs on, topic names from
:class:`~streams.config.Settings` and value schemas from ``schemas/*.avsc``
as written, so it cannot drift from the code; ``docs/asyncapi.yaml`` is this
module's output for the default settings, and a test keeps it so and has the
official AsyncAPI parser validate it.
"""

from __future__ import annotations

from dataclasses import dataclass
from typing import Any

import yaml

from . import schemas
from .config import Settings
from .logs import TRACEPARENT

ASYNCAPI_VERSION = "3.0.0"
AVRO_FORMAT = "application/vnd.apache.avro+json;version=1.9.0"
KAFKA_BINDING_VERSION = "0.5.0"


@dataclass(frozen=True)
class Channel:
    """One topic of the contract."""

    role: str  # the suffix after the topic prefix (or the table name for a changelog)
    schema: str  # the value's Avro schema, a file of schemas/
    key: str  # what the record key is
    summary: str
    writers: tuple[str, ...] = ()  # the worker's agents that write it
    readers: tuple[str, ...] = ()  # the worker's agents that read it
    others: str = "downstream consumers"  # who else writes or reads it
    changelog: bool = False  # faust's changelog of a table: named from the app id, not the prefix


CHANNELS = (
    Channel("images", "ImageEvent", "the image id (UTF-8)",
            "Images to embed, inline or by claim-check URI.",
            readers=("embed",), others="written by producers (`facestream produce`)"),
    Channel("embeddings", "FaceEmbeddings", "the image id (UTF-8)",
            "One record per image answered: its faces, their embeddings and the models that made them.",
            writers=("embed",), others="read by downstream consumers"),
    Channel("dlq", "DeadLetter", "the refused input's key, bounded (see the DeadLetter schema)",
            "One record per input that got no other output, with a typed error code.",
            writers=("embed", "gallery", "rerank"), others="read by operators and the clients that wait on an answer"),
    Channel("gallery", "GalleryEntry", "the gallery id (UTF-8); a gallery and its queries share a partition",
            "Changes to galleries of known subjects.",
            readers=("gallery",), others="written by `facestream enroll`"),
    Channel("queries", "RerankQuery", "the gallery id (UTF-8), partitioned as the gallery topic",
            "Query embeddings to rank against a gallery or against inline candidates.",
            readers=("rerank",), others="written by `facestream query`"),
    Channel("rerank-results", "RerankResult", "the query id (UTF-8)",
            "One ranked answer per query.",
            writers=("rerank",), others="read by the clients that asked"),
    Channel("gallery", "GalleryEntry", "a JSON array: the gallery id, then the subject's ids within it",
            "The gallery table's changelog (compacted): each live subject's GalleryEntry bytes as they arrived, "
            "tombstones for deletes. Internal: workers recover their galleries from it.",
            writers=("gallery",), readers=("gallery",), others="nobody else", changelog=True),
)


def topic_name(channel: Channel, settings: Settings) -> str:
    return f"{settings.app_id}-{channel.role}-changelog" if channel.changelog else settings.topic(channel.role)


def channel_id(channel: Channel) -> str:
    return f"{channel.role.replace('-', '_')}{'_changelog' if channel.changelog else ''}"


def document(settings: Settings) -> dict[str, Any]:
    """The AsyncAPI document of the topics ``settings`` name."""
    channels, operations, messages = {}, {}, {}
    for channel in CHANNELS:
        cid, topic = channel_id(channel), topic_name(channel, settings)
        messages[cid] = _message(channel)
        channels[cid] = {
            "address": topic,
            "title": topic,
            "summary": channel.summary,
            "messages": {channel.schema: {"$ref": f"#/components/messages/{cid}"}},
            "bindings": {"kafka": {
                "topic": topic,
                "partitions": settings.topic_partitions,
                "replicas": settings.topic_replication,
                "topicConfiguration": {
                    "cleanup.policy": ["compact"] if channel.changelog else ["delete"],
                    "max.message.bytes": settings.max_message_bytes,
                },
                "bindingVersion": KAFKA_BINDING_VERSION,
            }},
        }
        for action, who in (("receive", channel.readers), ("send", channel.writers)):
            for agent in who:
                operations[f"{agent}_{action}s_{cid}"] = {
                    "action": action,
                    "channel": {"$ref": f"#/channels/{cid}"},
                    "summary": f"The `{agent}` agent {'reads' if action == 'receive' else 'writes'} {topic}.",
                    "tags": [{"name": f"agent:{agent}"}],
                    "messages": [{"$ref": f"#/channels/{cid}/messages/{channel.schema}"}],
                }
    return {
        "asyncapi": ASYNCAPI_VERSION,
        "info": {
            "title": "facestream topics",
            "version": "1.0.0",
            "description": (
                "The Kafka topics of a facestream deployment (face detection, alignment and embedding as a "
                "stream processor, and gallery re-ranking). Values are Avro: with a Schema Registry configured, "
                "in the Confluent wire format (byte 0, 4-byte schema id, body; subjects by "
                f"FACESTREAM_SCHEMA_REGISTRY_SUBJECT_STRATEGY, default <topic>-value); without one, in Avro "
                "single-object encoding (C3 01, the CRC-64-AVRO fingerprint of the schema's parsing canonical "
                "form, body). Every input gets exactly one output: its result or a DeadLetter. "
                f"Topic names here are for the default settings (prefix `{settings.topic_prefix}`, "
                f"app id `{settings.app_id}`)."
            ),
        },
        "defaultContentType": "avro/binary",
        "servers": {"kafka": {
            "host": settings.kafka_bootstrap_servers.split(",")[0],
            "protocol": "kafka",
            "description": "FACESTREAM_KAFKA_BOOTSTRAP_SERVERS",
        }},
        "channels": channels,
        "operations": operations,
        "components": {"messages": messages},
    }


def _message(channel: Channel) -> dict[str, Any]:
    agents = [f"written by the {', '.join(channel.writers)} agent{'s' if len(channel.writers) > 1 else ''}"] * bool(
        channel.writers) + [f"read by the {', '.join(channel.readers)} agent"] * bool(channel.readers)
    who = "; ".join([*agents, channel.others])
    return {
        "name": channel.schema,
        "title": channel.schema,
        "summary": f"Key: {channel.key}. {who[0].upper()}{who[1:]}.",
        "contentType": "avro/binary",
        "headers": {
            "type": "object",
            "properties": {TRACEPARENT: {
                "type": "string",
                "description": "W3C trace context of the input, copied to every output it causes (optional).",
            }},
        },
        "payload": {"schemaFormat": AVRO_FORMAT, "schema": schemas.load_json(channel.schema)},
        "bindings": {"kafka": {
            "key": {"type": "string", "description": channel.key},
            "schemaIdLocation": "payload",
            "bindingVersion": KAFKA_BINDING_VERSION,
        }},
    }


def render(settings: Settings) -> str:
    header = "# Generated by `facestream asyncapi` from streams/asyncapi.py and schemas/*.avsc: do not edit.\n"
    return header + yaml.safe_dump(document(settings), sort_keys=False, allow_unicode=True, width=120)
