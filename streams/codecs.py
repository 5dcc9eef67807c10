"""Avro framing of every facestream record value.

Two frames, chosen by ``FACESTREAM_SCHEMA_REGISTRY_URL``:

* no registry: Avro single-object encoding — ``C3 01``, the 8-byte
  little-endian CRC-64-AVRO fingerprint of the writer schema's canonical form,
  then the binary body;
* a registry: the Confluent wire format — byte ``0``, the 4-byte big-endian
  schema id, then the body — so Kafka Connect, ksqlDB, Flink and Spark read it.

Decoding always resolves the writer schema against the current reader schema
(fastavro schema resolution), so records written by older schema versions stay
readable after a compatible change.

Before fastavro reads a body, :mod:`streams.avro_walk` walks it by the writer
schema and refuses what fastavro would take silently and read wrong.
"""

from __future__ import annotations

import io
import json
import struct
from collections.abc import Mapping
from dataclasses import dataclass
from typing import Any

import fastavro
from fastavro.schema import fingerprint, to_parsing_canonical_form

from . import schemas
from .avro_walk import BodyCheck, MalformedBody, body_check
from .errors import TooManyItems, UndecodableRecord

SINGLE_OBJECT_MAGIC = b"\xc3\x01"
CONFLUENT_MAGIC = b"\x00"


@dataclass(frozen=True)
class _Writer:
    """A writer schema and its body walk, built together once rather than on every decode."""

    schema: dict[str, Any]
    check: BodyCheck


def short_name(schema: dict[str, Any]) -> str:
    return schema["name"].rsplit(".", 1)[-1]


def schema_fingerprint(schema: dict[str, Any]) -> bytes:
    return bytes.fromhex(fingerprint(to_parsing_canonical_form(schema), "CRC-64-AVRO"))


class AvroCodec:
    """Encodes and decodes the records of the facestream schemas."""

    def __init__(
        self,
        registry_url: str = "",
        *,
        registry_client: Any = None,
        readers: Mapping[str, dict[str, Any]] | None = None,
        max_items: int | None = None,
    ) -> None:
        """``readers``: the schema versions this process writes and reads, by name (default: ``schemas/``).

        ``max_items``: most items one array or map of a decoded record may hold (None: no limit); a
        worker sets it so a record of a million tiny items costs no decoding time (fastavro holds the
        GIL while it decodes, so a thread does not keep the event loop free).
        """
        self._max_items = max_items
        if registry_client is None and registry_url:
            from confluent_kafka.schema_registry import SchemaRegistryClient

            registry_client = SchemaRegistryClient({"url": registry_url})
        self._registry = registry_client
        self._writers: dict[bytes, _Writer] = {}
        self._registered: dict[tuple[str, str], int] = {}
        self._by_id: dict[int, _Writer] = {}
        self._readers = dict(readers) if readers is not None else {n: schemas.load(n) for n in schemas.names()}
        for schema in self._readers.values():
            self.know(schema)

    def know(self, writer_schema: dict[str, Any]) -> None:
        """Make records written with ``writer_schema`` (e.g. an older version) decodable."""
        self._writers[schema_fingerprint(writer_schema)] = _Writer(writer_schema, body_check(writer_schema, self._max_items))

    # --- encoding --------------------------------------------------------
    def encode(self, name: str, record: dict[str, Any], *, topic: str = "") -> bytes:
        schema = self._readers[name]
        body = io.BytesIO()
        if self._registry is None:
            body.write(SINGLE_OBJECT_MAGIC + schema_fingerprint(schema))
        else:
            body.write(CONFLUENT_MAGIC + struct.pack(">I", self._schema_id(name, topic)))
        fastavro.schemaless_writer(body, schema, record)
        return body.getvalue()

    def _schema_id(self, name: str, topic: str) -> int:
        key = (name, topic)
        if key not in self._registered:
            from confluent_kafka.schema_registry import Schema

            text = to_parsing_canonical_form(self._readers[name])
            # TopicNameStrategy: the subject every Confluent-aware consumer looks up.
            self._registered[key] = self._registry.register_schema(f"{topic}-value", Schema(text, "AVRO"))
        return self._registered[key]

    # --- decoding --------------------------------------------------------
    def decode(self, data: bytes, expect: str | None = None) -> dict[str, Any]:
        """Decode one value; ``expect`` names the schema the caller needs (else any facestream schema)."""
        return self.decode_named(data, expect)[1]

    def decode_named(self, data: bytes, expect: str | None = None) -> tuple[str, dict[str, Any]]:
        """(schema name, record) of one value."""
        if not data:
            raise UndecodableRecord("empty value")
        writer = self._writer(data)
        name = short_name(writer.schema)
        if expect is not None and name != expect:
            raise UndecodableRecord(f"expected a {expect} record, got {name}")
        reader = self._readers.get(name, writer.schema)
        offset = 10 if data[:2] == SINGLE_OBJECT_MAGIC else 5
        try:
            end = writer.check(data, offset)
        except TooManyItems as exc:
            raise TooManyItems(f"{name}: {exc.message}") from None
        except Exception as exc:
            raise UndecodableRecord(f"corrupt {name} body: {exc}") from None
        try:
            if end != len(data):
                raise MalformedBody(f"{len(data) - end} bytes after the record")
            body = io.BytesIO(data)  # shares the buffer: no copy of a large image
            body.seek(offset)
            return name, fastavro.schemaless_reader(body, writer.schema, reader)
        except Exception as exc:  # fastavro raises many types on a corrupt body
            raise UndecodableRecord(f"corrupt {name} body: {exc}") from None

    def _writer(self, data: bytes) -> _Writer:
        if data[:2] == SINGLE_OBJECT_MAGIC and len(data) >= 10:
            writer = self._writers.get(data[2:10])
            if writer is None:
                raise UndecodableRecord(f"unknown schema fingerprint {data[2:10].hex()}")
            return writer
        if data[:1] == CONFLUENT_MAGIC and len(data) >= 5:
            if self._registry is None:
                raise UndecodableRecord("Confluent-framed record but FACESTREAM_SCHEMA_REGISTRY_URL is not set")
            return self._registry_schema(struct.unpack(">I", data[1:5])[0])
        raise UndecodableRecord("not an Avro single-object or Confluent frame")

    def _registry_schema(self, schema_id: int) -> _Writer:
        if schema_id not in self._by_id:
            try:
                text = self._registry.get_schema(schema_id).schema_str
            except Exception as exc:
                raise UndecodableRecord(f"schema id {schema_id} not found in the registry: {exc}") from None
            schema = schemas.parse(json.loads(text))
            self._by_id[schema_id] = _Writer(schema, body_check(schema, self._max_items))
        return self._by_id[schema_id]
