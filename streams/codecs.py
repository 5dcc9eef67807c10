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

Before fastavro reads a body, :func:`body_check` walks it by the writer schema
and refuses what fastavro would take silently and read wrong: a negative union
or enum index (Python indexing picks a branch or symbol from the end), bytes
after the record, an ``int`` beyond 32 bits, a boolean byte other than 0 or 1,
a negative length, an array or map block whose byte size disagrees with its
items or that promises more items than bytes remain. Every encoding the Avro
specification allows passes, multi-block arrays and maps included.
"""

from __future__ import annotations

import io
import json
import struct
from collections.abc import Callable, Mapping
from dataclasses import dataclass
from typing import Any

import fastavro
from fastavro.schema import fingerprint, to_parsing_canonical_form

from . import schemas
from .errors import ErrorCode, RecordError

SINGLE_OBJECT_MAGIC = b"\xc3\x01"
CONFLUENT_MAGIC = b"\x00"


class UndecodableRecord(RecordError):
    """The bytes are not a facestream Avro record (wrong frame, unknown schema, corrupt body)."""

    def __init__(self, message: str) -> None:
        super().__init__(ErrorCode.BAD_EVENT, message)


class MalformedBody(ValueError):
    """A body breaks the Avro binary encoding in a way fastavro would not notice."""


class TooManyItems(UndecodableRecord):
    """An array or map holds more items than the codec's ``max_items``: refused before any is decoded."""


BodyCheck = Callable[[bytes, int], int]
"""Walks one encoded value starting at a position; returns the position after it."""


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


# --- strict body walk ------------------------------------------------------
def body_check(schema: Any, max_items: int | None = None) -> BodyCheck:
    """The walk of bodies written with the parsed ``schema``, built once per writer schema."""
    return _compile(schema, {}, max_items)


def _compile(schema: Any, named: dict[str, BodyCheck], max_items: int | None = None) -> BodyCheck:
    if isinstance(schema, list):
        return _union([_compile(branch, named, max_items) for branch in schema])
    if isinstance(schema, str):
        if schema in _PRIMITIVES:
            return _PRIMITIVES[schema]
        # A named type defined elsewhere in the schema, perhaps around this very reference.
        return lambda buf, pos: named[schema](buf, pos)
    kind = schema["type"]
    if kind in ("record", "error"):
        check = _record([_compile(field["type"], named, max_items) for field in schema["fields"]])
    elif kind == "enum":
        check = _enum(len(schema["symbols"]))
    elif kind == "fixed":
        check = _fixed(schema["size"])
    elif kind == "array":
        check = _blocks(_compile(schema["items"], named, max_items), _width(schema["items"]), max_items)
    elif kind == "map":
        check = _blocks(_entry(_compile(schema["values"], named, max_items)), None, max_items)
    else:  # a primitive with a logical type
        return _compile(kind, named, max_items)
    if "name" in schema:
        named[schema["name"]] = check
    return check


def _varint(buf: bytes, pos: int) -> tuple[int, int]:
    """(value, next position) of one zig-zag varint, at most 64 bits as the specification says."""
    if pos < len(buf) and buf[pos] < 0x80:  # the common one-byte case, without the loop
        return (buf[pos] >> 1) ^ -(buf[pos] & 1), pos + 1
    value = shift = 0
    while True:
        if pos >= len(buf):
            raise MalformedBody("truncated")
        byte = buf[pos]
        pos += 1
        value |= (byte & 0x7F) << shift
        if byte < 0x80:
            break
        shift += 7
        if shift > 63:
            raise MalformedBody("a varint longer than 10 bytes")
    if value >> 64:
        raise MalformedBody("a varint beyond 64 bits")
    return (value >> 1) ^ -(value & 1), pos


def _null(buf: bytes, pos: int) -> int:
    return pos


def _boolean(buf: bytes, pos: int) -> int:
    if pos >= len(buf):
        raise MalformedBody("truncated")
    if buf[pos] > 1:
        raise MalformedBody(f"boolean byte {buf[pos]} (only 0 or 1)")
    return pos + 1


def _int(buf: bytes, pos: int) -> int:
    value, pos = _varint(buf, pos)
    if not -(1 << 31) <= value < 1 << 31:
        raise MalformedBody(f"int {value} beyond 32 bits")
    return pos


def _long(buf: bytes, pos: int) -> int:
    return _varint(buf, pos)[1]


def _string(buf: bytes, pos: int) -> int:
    """bytes and string alike (fastavro checks the UTF-8); the walk's hot spot, so the short length is inline."""
    if pos < len(buf) and buf[pos] < 0x80:
        size = (buf[pos] >> 1) ^ -(buf[pos] & 1)
        pos += 1
    else:
        size, pos = _varint(buf, pos)
    if size < 0:
        raise MalformedBody(f"negative length {size}")
    return _skip(buf, pos, size)


def _skip(buf: bytes, pos: int, size: int) -> int:
    if pos + size > len(buf):
        raise MalformedBody("truncated")
    return pos + size


def _fixed(size: int) -> BodyCheck:
    return lambda buf, pos: _skip(buf, pos, size)


_PRIMITIVES: dict[str, BodyCheck] = {
    "null": _null,
    "boolean": _boolean,
    "int": _int,
    "long": _long,
    "float": _fixed(4),
    "double": _fixed(8),
    "bytes": _string,
    "string": _string,
}
_WIDTHS = {"null": 0, "float": 4, "double": 8}


def _width(schema: Any) -> int | None:
    """Encoded size of every value of ``schema`` when it is fixed: such array blocks are skipped whole."""
    if isinstance(schema, dict) and schema["type"] == "fixed":
        return schema["size"]
    return _WIDTHS.get(schema) if isinstance(schema, str) else None


def _record(fields: list[BodyCheck]) -> BodyCheck:
    def check(buf: bytes, pos: int) -> int:
        for field in fields:
            pos = field(buf, pos)
        return pos

    return check


def _entry(value: BodyCheck) -> BodyCheck:
    """One map entry: a string key, then the value."""
    return lambda buf, pos: value(buf, _string(buf, pos))


def _enum(count: int) -> BodyCheck:
    def check(buf: bytes, pos: int) -> int:
        return _in_range("enum symbol", *_varint(buf, pos), count)[1]

    return check


def _union(branches: list[BodyCheck]) -> BodyCheck:
    def check(buf: bytes, pos: int) -> int:
        index, pos = _in_range("union branch", *_varint(buf, pos), len(branches))
        return branches[index](buf, pos)

    return check


def _in_range(what: str, index: int, pos: int, count: int) -> tuple[int, int]:
    if not 0 <= index < count:
        raise MalformedBody(f"{what} index {index} out of range 0..{count - 1}")
    return index, pos


def _blocks(item: BodyCheck, width: int | None, max_items: int | None = None) -> BodyCheck:
    """Array or map blocks; ``width``: the fixed size of every item, if it has one."""

    def check(buf: bytes, pos: int) -> int:
        total = 0
        while True:
            count, pos = _varint(buf, pos)
            if count == 0:
                return pos
            size = None
            if count < 0:  # a negative count is followed by the block's size in bytes
                count = -count
                size, pos = _varint(buf, pos)
            total += count
            if max_items is not None and total > max_items:
                raise TooManyItems(f"an array or map of more than {max_items} items")
            if count > len(buf) - pos:
                raise MalformedBody(f"a block of {count} items in {len(buf) - pos} bytes")
            start = pos
            if width is not None:
                pos = _skip(buf, pos, count * width)
            else:
                for _ in range(count):
                    pos = item(buf, pos)
            if size is not None and pos - start != size:
                raise MalformedBody(f"a block declares {size} bytes but its items take {pos - start}")

    return check
