"""A strict walk of an Avro binary body by its writer schema, before fastavro decodes it.

The walk refuses what fastavro would take silently and read wrong: a negative
union or enum index (Python indexing picks a branch or symbol from the end),
bytes after the record, an ``int`` beyond 32 bits, a boolean byte other than 0
or 1, a negative length, an array or map block whose byte size disagrees with
its items or that promises more items than bytes remain. Every encoding the Avro
specification allows passes, multi-block arrays and maps included.

Arrays and maps may also be capped (``max_items``), so a record of a million tiny
items is refused before fastavro spends seconds on it holding the GIL.
"""

from __future__ import annotations

from collections.abc import Callable
from typing import Any

from .errors import TooManyItems


class MalformedBody(ValueError):
    """A body breaks the Avro binary encoding in a way fastavro would not notice."""


BodyCheck = Callable[[bytes, int], int]
"""Walks one encoded value starting at a position; returns the position after it."""


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


def varint(buf: bytes, pos: int) -> tuple[int, int]:
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
    value, pos = varint(buf, pos)
    if not -(1 << 31) <= value < 1 << 31:
        raise MalformedBody(f"int {value} beyond 32 bits")
    return pos


def _long(buf: bytes, pos: int) -> int:
    return varint(buf, pos)[1]


def _string(buf: bytes, pos: int) -> int:
    """bytes and string alike (fastavro checks the UTF-8); the walk's hot spot, so the short length is inline."""
    if pos < len(buf) and buf[pos] < 0x80:
        size = (buf[pos] >> 1) ^ -(buf[pos] & 1)
        pos += 1
    else:
        size, pos = varint(buf, pos)
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
        return in_range("enum symbol", *varint(buf, pos), count)[1]

    return check


def _union(branches: list[BodyCheck]) -> BodyCheck:
    def check(buf: bytes, pos: int) -> int:
        index, pos = in_range("union branch", *varint(buf, pos), len(branches))
        return branches[index](buf, pos)

    return check


def in_range(what: str, index: int, pos: int, count: int) -> tuple[int, int]:
    if not 0 <= index < count:
        raise MalformedBody(f"{what} index {index} out of range 0..{count - 1}")
    return index, pos


def _blocks(item: BodyCheck, width: int | None, max_items: int | None = None) -> BodyCheck:
    """Array or map blocks; ``width``: the fixed size of every item, if it has one."""

    def check(buf: bytes, pos: int) -> int:
        total = 0
        while True:
            count, pos = varint(buf, pos)
            if count == 0:
                return pos
            size = None
            if count < 0:  # a negative count is followed by the block's size in bytes
                count = -count
                size, pos = varint(buf, pos)
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
