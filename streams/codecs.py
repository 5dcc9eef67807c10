"""Avro framing of every facestream record value.

Two frames, chosen by ``FACESTREAM_SCHEMA_REGISTRY_URL``:

* no registry: Avro single-object encoding — ``C3 01``, the 8-byte
  little-endian CRC-64-AVRO fingerprint of the writer schema's canonical form,
  then the binary body;
* a registry: the Confluent wire format — byte ``0``, the 4-byte big-endian
  schema id, then the body — so Kafka Connect, ksqlDB, Flink and Spark read it.
  The schema registered is the ``.avsc`` as written (see :mod:`streams.registry`).

Decoding always resolves the writer schema against the current reader schema
(fastavro schema resolution), so records written by older schema versions stay
readable after a compatible change.

Encoding and decoding never wait on the network in a worker: the worker asks
the registry for everything a batch needs first (:meth:`AvroCodec.needs_registry`,
:meth:`AvroCodec.ask_registry`, off the event loop, retried while the registry is
down); a command-line tool simply asks on first use.

Before fastavro reads a body, :mod:`streams.avro_walk` walks it by the writer
schema and refuses what fastavro would take silently and read wrong.
"""

from __future__ import annotations

import io
import struct
from collections.abc import Iterable, Mapping
from dataclasses import dataclass
from typing import Any

import fastavro
from fastavro.schema import fingerprint, to_parsing_canonical_form

from . import schemas
from .avro_arrays import Read, array_reader, only_float_arrays, read_body
from .avro_walk import BodyCheck, MalformedBody, body_check
from .config import Settings
from .errors import TooManyItems, UndecodableRecord
from .registry import SchemaRegistry

SINGLE_OBJECT_MAGIC = b"\xc3\x01"
CONFLUENT_MAGIC = b"\x00"


@dataclass(frozen=True)
class _Writer:
    """A writer schema, parsed, and its body walk, built together once rather than on every decode."""

    schema: dict[str, Any]
    check: BodyCheck
    arrays: Read | None = None  # its numpy-array reader, when it is a schema this process reads by (nothing to resolve)
    flat: bool = False  # its only arrays are of floats and it has no maps: the numpy reader needs no walk first


def short_name(schema: dict[str, Any]) -> str:
    return schema["name"].rsplit(".", 1)[-1]


def schema_fingerprint(schema: dict[str, Any]) -> bytes:
    """CRC-64-AVRO of the parsing canonical form: what the Avro specification defines the single-object frame with."""
    return bytes.fromhex(fingerprint(to_parsing_canonical_form(schema), "CRC-64-AVRO"))


def confluent_id(data: bytes | None) -> int | None:
    """The schema id of a Confluent-framed value, else None."""
    if data is not None and data[:1] == CONFLUENT_MAGIC and len(data) >= 5:
        return struct.unpack(">I", data[1:5])[0]
    return None


class AvroCodec:
    """Encodes and decodes the records of the facestream schemas."""

    def __init__(
        self,
        registry: SchemaRegistry | None = None,
        *,
        readers: Mapping[str, dict[str, Any]] | None = None,
        max_items: int | None = None,
    ) -> None:
        """``readers``: the schemas this process writes and reads, as written, by name (default: ``schemas/``).

        ``max_items``: most items one array or map of a decoded record may hold (None: no limit); a
        worker sets it so a record of a million tiny items costs no decoding time (fastavro holds the
        GIL while it decodes, so a thread does not keep the event loop free).
        """
        self._max_items = max_items
        self._registry = registry
        self._written = dict(readers) if readers is not None else {n: schemas.load_json(n) for n in schemas.names()}
        self._readers = {name: schemas.parse(raw) for name, raw in self._written.items()}
        # Each reader's single-object header, computed once: a fingerprint takes longer than encoding a record.
        self._headers = {name: SINGLE_OBJECT_MAGIC + schema_fingerprint(s) for name, s in self._readers.items()}
        self._reader_prints = {header[2:] for header in self._headers.values()}
        self._writers: dict[bytes, _Writer] = {}
        self._by_id: dict[int, _Writer] = {}
        self._schema_ids: dict[tuple[str, str], int] = {}  # (schema name, topic) -> registry id, once per process
        for schema in self._readers.values():
            self.know(schema)

    @classmethod
    def from_settings(cls, settings: Settings, *, max_items: int | None = None) -> AvroCodec:
        registry = SchemaRegistry.from_settings(settings) if settings.schema_registry_url else None
        return cls(registry, max_items=max_items)

    @property
    def registry(self) -> SchemaRegistry | None:
        return self._registry

    def know(self, writer_schema: dict[str, Any]) -> None:
        """Make single-object records written with the parsed ``writer_schema`` (e.g. an older version) decodable."""
        self._writers[schema_fingerprint(writer_schema)] = self._new_writer(writer_schema)

    def _new_writer(self, schema: dict[str, Any]) -> _Writer:
        same = schema_fingerprint(schema) in self._reader_prints
        return _Writer(schema, body_check(schema, self._max_items), array_reader(schema) if same else None,
                       flat=only_float_arrays(schema))

    # --- the registry, asked ahead ------------------------------------------
    def needs_registry(self, values: Iterable[bytes | None], writes: Iterable[tuple[str, str]]) -> bool:
        """Whether decoding ``values`` or encoding (schema name, topic) ``writes`` would ask the registry."""
        if self._registry is None:
            return False
        return any(write not in self._schema_ids for write in writes) or any(
            (i := confluent_id(v)) is not None and not self._registry.knows(i) for v in values
        )

    def ask_registry(self, values: Iterable[bytes | None], writes: Iterable[tuple[str, str]]) -> None:
        """Ask the registry now for what :meth:`needs_registry` found; raises RegistryUnavailable (blocking I/O)."""
        if self._registry is None:
            return
        for name, topic in writes:
            self._schema_id(name, topic)
        for value in values:
            schema_id = confluent_id(value)
            if schema_id is not None and not self._registry.knows(schema_id):
                try:
                    self._registry.schema_of(schema_id)
                except UndecodableRecord:
                    pass  # remembered as unknown: that record's decode says so

    # --- encoding --------------------------------------------------------
    def encode(self, name: str, record: dict[str, Any], *, topic: str = "") -> bytes:
        schema = self._readers[name]
        body = io.BytesIO()
        if self._registry is None:
            body.write(self._headers[name])
        else:
            body.write(CONFLUENT_MAGIC + struct.pack(">I", self._schema_id(name, topic)))
        fastavro.schemaless_writer(body, schema, record)
        return body.getvalue()

    def _schema_id(self, name: str, topic: str) -> int:
        if (name, topic) not in self._schema_ids:
            self._schema_ids[name, topic] = self._registry.id_of(self._written[name], topic)
        return self._schema_ids[name, topic]

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
        end = _walked(writer, name, data, offset)
        try:
            if end != len(data):
                raise MalformedBody(f"{len(data) - end} bytes after the record")
            body = io.BytesIO(data)  # shares the buffer: no copy of a large image
            body.seek(offset)
            return name, fastavro.schemaless_reader(body, writer.schema, reader)
        except Exception as exc:  # fastavro raises many types on a corrupt body
            raise UndecodableRecord(f"corrupt {name} body: {exc}") from None

    def decode_arrays(self, data: bytes, expect: str, *, walked: bool = False) -> dict[str, Any]:
        """:meth:`decode` for many records (gallery entries): float arrays come as float32 numpy arrays and logical
        types as their underlying values, about 5 us a record where fastavro takes 35 (:mod:`streams.avro_arrays`).
        Item counts are bounded first as :meth:`decode` bounds them, unless ``walked``: bytes decoded before (a
        changelog the workers wrote, read back in a rebuild), or a schema whose only arrays are of floats (a
        ``GalleryEntry``): these are views of the body, and the caller bounds their length (a walk first took as
        long as the read).

        A record written with another schema than this process reads by is decoded, and resolved, by :meth:`decode`.
        """
        writer = self._writer(data) if data else None
        if writer is None or writer.arrays is None or short_name(writer.schema) != expect:
            return self.decode(data, expect=expect)
        offset = 10 if data[:2] == SINGLE_OBJECT_MAGIC else 5
        if not (walked or writer.flat):
            _walked(writer, expect, data, offset)
        try:
            return read_body(writer.arrays, data, offset)
        except MalformedBody as exc:
            raise UndecodableRecord(f"corrupt {expect} body: {exc}") from None

    def _writer(self, data: bytes) -> _Writer:
        if data[:2] == SINGLE_OBJECT_MAGIC and len(data) >= 10:
            writer = self._writers.get(data[2:10])
            if writer is None:
                raise UndecodableRecord(f"unknown schema fingerprint {data[2:10].hex()}")
            return writer
        schema_id = confluent_id(data)
        if schema_id is not None:
            if self._registry is None:
                raise UndecodableRecord("Confluent-framed record but FACESTREAM_SCHEMA_REGISTRY_URL is not set")
            return self._registry_writer(schema_id)
        raise UndecodableRecord("not an Avro single-object or Confluent frame")

    def _registry_writer(self, schema_id: int) -> _Writer:
        if schema_id not in self._by_id:
            raw = self._registry.schema_of(schema_id)
            try:
                schema = schemas.parse(raw)
            except Exception as exc:  # noqa: BLE001 -- the registry holds something fastavro cannot use
                raise UndecodableRecord(f"schema id {schema_id} is not a usable Avro schema: {exc}") from None
            self._by_id[schema_id] = self._new_writer(schema)
        return self._by_id[schema_id]


def _walked(writer: _Writer, name: str, data: bytes, offset: int) -> int:
    """Where the body at ``offset`` ends, once walked and bounded by ``writer``'s limits; typed errors if not."""
    try:
        return writer.check(data, offset)
    except TooManyItems as exc:
        raise TooManyItems(f"{name}: {exc.message}") from None
    except Exception as exc:
        raise UndecodableRecord(f"corrupt {name} body: {exc}") from None
