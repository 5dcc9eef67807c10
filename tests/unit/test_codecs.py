"""Avro framing: single-object encoding, the Confluent wire format, and schema evolution."""

from __future__ import annotations

import copy
import json
import struct

import pytest
from confluent_kafka.schema_registry import Schema

from streams import schemas
from streams.codecs import AvroCodec, UndecodableRecord, schema_fingerprint
from streams.errors import ErrorCode

EVENT = {"id": "a.jpg", "image": b"\xff\xd8jpeg", "produced_at": 1_700_000_000_000, "attributes": {"camera": "3"}}


def test_single_object_frame_is_magic_fingerprint_body():
    data = AvroCodec().encode("ImageEvent", EVENT)
    assert data[:2] == b"\xc3\x01"
    assert data[2:10] == schema_fingerprint(schemas.load("ImageEvent"))
    record = AvroCodec().decode(data, expect="ImageEvent")
    assert record["id"] == "a.jpg" and record["image"] == EVENT["image"] and record["attributes"] == {"camera": "3"}
    assert int(record["produced_at"].timestamp() * 1000) == EVENT["produced_at"]


def test_crc64_avro_fingerprint_matches_the_spec_value_for_int():
    # The Avro specification's CRC-64-AVRO of the canonical form "int", written little-endian.
    assert schema_fingerprint(schemas.parse("int")) == (0x7275D51A3F395C8F).to_bytes(8, "little")


@pytest.mark.parametrize(
    "data, fragment",
    [
        (b"", "empty"),
        (b"\x7bjson?", "not an Avro"),
        (b"\xc3\x01" + b"\x00" * 8 + b"body", "unknown schema fingerprint"),
        (b"\x00\x00\x00\x00\x01body", "FACESTREAM_SCHEMA_REGISTRY_URL"),
    ],
)
def test_undecodable_values_raise_a_typed_error(data, fragment):
    with pytest.raises(UndecodableRecord) as info:
        AvroCodec().decode(data)
    assert info.value.code is ErrorCode.BAD_EVENT
    assert fragment in info.value.message


def test_wrong_record_type_and_corrupt_body_are_rejected():
    codec = AvroCodec()
    data = codec.encode("ImageEvent", EVENT)
    with pytest.raises(UndecodableRecord, match="expected a DeadLetter"):
        codec.decode(data, expect="DeadLetter")
    with pytest.raises(UndecodableRecord, match="corrupt ImageEvent"):
        codec.decode(data[:12])


def _with_optional_field(name: str) -> dict:
    raw = copy.deepcopy(schemas.load_json(name))
    raw["fields"].append({"name": "tenant", "type": ["null", "string"], "default": None, "doc": "added in v2"})
    return schemas.parse(raw)


def test_adding_an_optional_field_keeps_old_readers_and_old_records_working():
    v1 = schemas.load("ImageEvent")
    v2 = _with_optional_field("ImageEvent")
    old = AvroCodec(readers={"ImageEvent": v1})
    new = AvroCodec(readers={"ImageEvent": v2})
    old.know(v2)  # single-object encoding: a reader must know the writer's schema by fingerprint
    new.know(v1)

    # An old record read by the new code: the new field takes its default.
    from_old = new.decode(old.encode("ImageEvent", EVENT))
    assert from_old["tenant"] is None and from_old["id"] == "a.jpg"
    # A new record read by old code: the unknown field is skipped, the rest intact.
    from_new = old.decode(new.encode("ImageEvent", {**EVENT, "tenant": "acme"}))
    assert "tenant" not in from_new and from_new["image"] == EVENT["image"]


class InMemoryRegistry:
    """The two Schema Registry calls the codec makes, kept in a dict (no registry server runs here)."""

    def __init__(self) -> None:
        self.subjects: dict[str, list[int]] = {}
        self.by_id: dict[int, Schema] = {}

    def register_schema(self, subject: str, schema: Schema) -> int:
        schema_id = next((i for i, known in self.by_id.items() if known.schema_str == schema.schema_str), None)
        if schema_id is None:
            schema_id = len(self.by_id) + 1
            self.by_id[schema_id] = schema
        self.subjects.setdefault(subject, []).append(schema_id)
        return schema_id

    def get_schema(self, schema_id: int) -> Schema:
        return self.by_id[schema_id]


def test_confluent_wire_format_registers_under_the_topic_subject():
    registry = InMemoryRegistry()
    codec = AvroCodec(registry_client=registry)
    data = codec.encode("ImageEvent", EVENT, topic="face.images")
    assert data[0] == 0
    (schema_id,) = struct.unpack(">I", data[1:5])
    assert registry.subjects == {"face.images-value": [schema_id]}
    assert json.loads(registry.by_id[schema_id].schema_str)["name"] == "io.facestream.ImageEvent"
    # A second process (fresh cache) reads it through the registry.
    assert AvroCodec(registry_client=registry).decode(data)["id"] == "a.jpg"
    codec.encode("ImageEvent", EVENT, topic="face.images")
    assert registry.subjects["face.images-value"] == [schema_id]  # registered once per process
