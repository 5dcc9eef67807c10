"""Avro framing: single-object encoding, the Confluent wire format, and schema evolution."""

from __future__ import annotations

import copy
import json
import struct

import numpy as np
import pytest

from streams import schemas
from streams.avro_arrays import only_float_arrays
from streams.codecs import AvroCodec, schema_fingerprint
from streams.errors import ErrorCode, TooManyItems, UndecodableRecord

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
    return raw


def test_adding_an_optional_field_keeps_old_readers_and_old_records_working():
    v1 = schemas.load_json("ImageEvent")
    v2 = _with_optional_field("ImageEvent")
    old = AvroCodec(readers={"ImageEvent": v1})
    new = AvroCodec(readers={"ImageEvent": v2})
    old.know(schemas.parse(v2))  # single-object encoding: a reader must know the writer's schema by fingerprint
    new.know(schemas.parse(v1))

    # An old record read by the new code: the new field takes its default.
    from_old = new.decode(old.encode("ImageEvent", EVENT))
    assert from_old["tenant"] is None and from_old["id"] == "a.jpg"
    # A new record read by old code: the unknown field is skipped, the rest intact.
    from_new = old.decode(new.encode("ImageEvent", {**EVENT, "tenant": "acme"}))
    assert "tenant" not in from_new and from_new["image"] == EVENT["image"]


# --- bodies fastavro would read wrong -----------------------------------------
def _long(value: int) -> bytes:
    """Avro's zig-zag varint, written by hand so tests can say exactly which bytes they send."""
    n = (value << 1) ^ (value >> 63)
    out = bytearray()
    while n >= 0x80:
        out.append(n & 0x7F | 0x80)
        n >>= 7
    return bytes(out + bytes([n]))


def _str(text: str) -> bytes:
    return _long(len(text.encode())) + text.encode()


def _framed(name: str, body: bytes) -> bytes:
    return b"\xc3\x01" + schema_fingerprint(schemas.load(name)) + body


def _image_event_body(image_branch: int) -> bytes:
    # id, image (union branch, then bytes), uri null, content_type null, produced_at, attributes {}
    return _str("a.jpg") + _long(image_branch) + _str("jpeg") + _long(0) + _long(0) + _long(1) + _long(0)


def _gallery_entry_body(op: int, dim: int = 512) -> bytes:
    # gallery_id, subject_id, op, embedding [], model (branch 1: detector, embedder, dim, version), produced_at,
    # template_id, quality and match_threshold null
    model = _long(1) + _str("yunet") + _str("arcface") + _long(dim) + _str("1")
    return _str("g") + _str("s") + _long(op) + _long(0) + model + _long(1) + _long(0) * 3


def _decode(codec: AvroCodec, data: bytes, name: str) -> dict:
    return codec.decode(data, expect=name)


def _decode_arrays(codec: AvroCodec, data: bytes, name: str) -> dict:
    return codec.decode_arrays(data, name)


def test_hand_written_bodies_decode_as_written():
    codec = AvroCodec()
    assert codec.decode(_framed("ImageEvent", _image_event_body(1)))["image"] == b"jpeg"
    assert codec.decode(_framed("GalleryEntry", _gallery_entry_body(1)))["op"] == "DELETE"


@pytest.mark.parametrize(
    "name, body, fragment",
    [
        # fastavro would pick branches[-1] (bytes), symbols[-1] (DELETE): both from the end.
        ("ImageEvent", _image_event_body(-1), "union branch index -1 out of range 0..1"),
        ("ImageEvent", _image_event_body(2), "union branch index 2 out of range"),
        ("GalleryEntry", _gallery_entry_body(-1), "enum symbol index -1 out of range 0..1"),
        ("GalleryEntry", _gallery_entry_body(0, dim=1 << 31), "int 2147483648 beyond 32 bits"),
        ("ImageEvent", _image_event_body(1) + b"\x00", "1 bytes after the record"),
        ("ImageEvent", _image_event_body(1) + b"junk", "4 bytes after the record"),
        ("ImageEvent", _str("a.jpg") + _long(1) + _long(-2), "negative length -2"),
        ("ImageEvent", _str("a.jpg") + b"\xff" * 11, "longer than 10 bytes"),
        ("ImageEvent", _image_event_body(1)[:-3], "truncated"),
    ],
    ids=[
        "negative-union-index",
        "union-index-past-the-end",
        "negative-enum-index",
        "int-beyond-32-bits",
        "trailing-zero-byte",
        "trailing-junk",
        "negative-length",
        "eleven-byte-varint",
        "truncated",
    ],
)
@pytest.mark.parametrize("decode", [_decode, _decode_arrays])
def test_bodies_fastavro_would_accept_or_misread_are_bad_events(name, body, fragment, decode):
    with pytest.raises(UndecodableRecord) as info:
        decode(AvroCodec(), _framed(name, body), name)
    assert info.value.code is ErrorCode.BAD_EVENT
    assert f"corrupt {name} body" in info.value.message and fragment in info.value.message


@pytest.mark.parametrize("decode", [_decode, _decode_arrays])
def test_every_block_layout_the_specification_allows_is_read(decode):
    """Other writers (Java's blocking encoder, Go's hamba/avro) split arrays and maps into sized blocks."""
    floats = [struct.pack("<f", x) for x in (0.5, 0.25, 0.125)]
    split = _long(2) + floats[0] + floats[1] + _long(-1) + _long(4) + floats[2] + _long(0)
    attributes = _long(-1) + _long(4) + _str("k") + _str("v") + _long(0)
    codec = AvroCodec()
    body = _str("g") + _str("s") + _long(0) + split + _long(0) + _long(1) + _long(0) * 3
    entry = decode(codec, _framed("GalleryEntry", body), "GalleryEntry")
    assert list(entry["embedding"]) == [0.5, 0.25, 0.125]
    event = decode(codec, _framed("ImageEvent", _image_event_body(1)[:-1] + attributes), "ImageEvent")
    assert event["attributes"] == {"k": "v"}


@pytest.mark.parametrize(
    "blocks, fragment",
    [
        (_long(-1) + _long(9) + struct.pack("<f", 1.0) + _long(0), "declares 9 bytes but its items take 4"),
        (_long(1 << 40) + _long(0), "a block of 1099511627776 items in"),
    ],
    ids=["wrong-block-size", "count-beyond-the-body"],
)
@pytest.mark.parametrize("decode", [_decode, _decode_arrays])
def test_array_blocks_that_lie_about_their_size_or_count_are_bad_events(blocks, fragment, decode):
    body = _str("g") + _str("s") + _long(0) + blocks + _long(0) + _long(1)
    with pytest.raises(UndecodableRecord, match=fragment):
        decode(AvroCodec(), _framed("GalleryEntry", body), "GalleryEntry")


def test_booleans_and_recursive_named_types_are_walked():
    node = {
        "type": "record",
        "name": "Node",
        "fields": [{"name": "flag", "type": "boolean"}, {"name": "next", "type": ["null", "Node"]}],
    }
    codec = AvroCodec(readers={"Node": node})
    data = b"\xc3\x01" + schema_fingerprint(schemas.parse(node))
    assert codec.decode(data + b"\x01" + _long(1) + b"\x00" + _long(0)) == {
        "flag": True,
        "next": {"flag": False, "next": None},
    }
    with pytest.raises(UndecodableRecord, match="boolean byte 2"):
        codec.decode(data + b"\x01" + _long(1) + b"\x02" + _long(0))


def test_an_array_over_max_items_is_refused_before_decoding():
    codec = AvroCodec(max_items=100)
    query = {"query_id": "q", "gallery_id": "g", "embedding": [1.0], "top_k": 3, "threshold": None,
             "method": "cosine", "params": {}, "produced_at": 0}
    many = codec.encode("RerankQuery", {**query, "candidates": [{"id": "c", "embedding": [1.0]}] * 101})
    with pytest.raises(TooManyItems, match="more than 100 items"):
        codec.decode(many)
    fits = codec.encode("RerankQuery", {**query, "candidates": [{"id": "c", "embedding": [1.0]}] * 100})
    assert len(codec.decode(fits)["candidates"]) == 100


# --- bulk reads: float arrays as numpy ------------------------------------------
def _plain(value):
    """A decoded value with numpy arrays as lists and datetimes as milliseconds, for comparing the two decoders."""
    if isinstance(value, dict):
        return {k: _plain(v) for k, v in value.items()}
    if isinstance(value, (list, np.ndarray)):
        return [_plain(v) for v in list(value)]
    if hasattr(value, "timestamp"):
        return round(value.timestamp() * 1000)
    return float(value) if isinstance(value, np.floating) else value


RECORDS = {
    "GalleryEntry": {
        "gallery_id": "g\u00e9", "subject_id": "s" * 200, "op": "UPSERT", "embedding": [0.1, -2.5, 3e-39, 1e30],
        "model": {"detector": "d", "embedder": "e", "dim": 4, "version": "1"}, "produced_at": 1_700_000_000_123,
        "template_id": "t", "quality": 0.75, "match_threshold": -0.25,
    },
    "ImageEvent": {**EVENT, "attributes": {"camera": "3", "": "\u2603" * 70}},
    "RerankQuery": {
        "query_id": "q", "gallery_id": "g", "embedding": [1.0, 0.5], "top_k": 3, "threshold": 0.5,
        "method": "k_reciprocal", "params": {"k1": 20.0}, "produced_at": 0,
        "candidates": [{"id": "c", "embedding": [0.25, 0.125]}, {"id": "d", "embedding": []}],
    },
}


@pytest.mark.parametrize("name", sorted(RECORDS))
def test_the_array_reader_reads_what_fastavro_reads(name):
    codec = AvroCodec()
    data = codec.encode(name, RECORDS[name])
    fast = codec.decode_arrays(data, name)
    assert _plain(fast) == _plain(codec.decode(data, expect=name))
    if name == "GalleryEntry":
        assert fast["embedding"].dtype == np.float32 and fast["produced_at"] == 1_700_000_000_123


def test_records_of_another_writer_schema_are_resolved_as_decode_does():
    v1 = schemas.load_json("GalleryEntry")
    v2 = _with_optional_field("GalleryEntry")
    new, old = AvroCodec(readers={"GalleryEntry": v2}), AvroCodec(readers={"GalleryEntry": v1})
    new.know(schemas.parse(v1))
    from_old = new.decode_arrays(old.encode("GalleryEntry", RECORDS["GalleryEntry"]), "GalleryEntry")
    assert from_old["tenant"] is None and from_old["subject_id"] == "s" * 200
    assert np.array_equal(np.float32(from_old["embedding"]), np.float32(RECORDS["GalleryEntry"]["embedding"]))
    with pytest.raises(UndecodableRecord, match="expected a RerankQuery"):
        new.decode_arrays(new.encode("GalleryEntry", {**RECORDS["GalleryEntry"], "tenant": None}), "RerankQuery")


def test_only_a_schema_whose_arrays_are_all_floats_is_read_without_the_walk_first():
    """Its float arrays are views of the body and all else takes a byte of it: memory follows the body's size."""
    names = ("GalleryEntry", "RerankQuery", "ImageEvent", "FaceEmbeddings")
    assert {name: only_float_arrays(schemas.load(name)) for name in names} == {
        "GalleryEntry": True, "RerankQuery": False, "ImageEvent": False, "FaceEmbeddings": False}
    node = {"type": "record", "name": "Node", "fields": [{"name": "next", "type": ["null", "Node"]}]}
    assert only_float_arrays(node)
    nested = {"type": "record", "name": "R", "fields": [{"name": "a", "type": ["null", {"type": "array", "items": "int"}]}]}
    assert not only_float_arrays(nested)
