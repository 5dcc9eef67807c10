"""Avro bodies decoded with their float arrays as numpy float32, for reading a million records at once.

fastavro turns every float of an array into a Python float in a list: a
128-value embedding costs about 30 us, and a rebuild of a million gallery
entries half a minute before the first row is stored. An embedding's floats are
already little-endian float32 in the body, so here a ``float`` array is one
``numpy.frombuffer`` view of its bytes, and the rest of the record (a few
strings and numbers) is read by closures compiled once per writer schema:
about 5 us a record.

It is as strict as :mod:`streams.avro_walk` (whose varint and range checks it
uses): a truncated body, a negative length, an index out of range, invalid
UTF-8 or bytes after the record raise :class:`~streams.avro_walk.MalformedBody`.
It reads by the writer schema alone: logical types stay their underlying
values (a ``timestamp-millis`` is an int) and nothing is resolved against a
reader schema, so a caller uses it only where writer and reader are one schema.
"""

from __future__ import annotations

import struct
from collections.abc import Callable
from typing import Any

import numpy as np

from .avro_walk import MalformedBody, in_range, varint

Read = Callable[[bytes, int], tuple[Any, int]]
"""Reads one value at a position; returns it and the position after it."""

_FLOAT32 = np.dtype("<f4")


def array_reader(schema: Any) -> Read:
    """The reader of bodies written with the parsed ``schema``, built once per writer schema."""
    return _compile(schema, {})


def only_float_arrays(schema: Any) -> bool:
    """Whether the parsed ``schema`` holds no map and no array but of floats: then what :func:`array_reader` reads
    takes memory in proportion to the body (a float array is a view of it, anything else at least a byte of it)."""
    def flat(node: Any, seen: set[str]) -> bool:
        if isinstance(node, list):
            return all(flat(branch, seen) for branch in node)
        if not isinstance(node, dict):
            return True  # a primitive, or a named type checked where it is defined
        name = node.get("name")
        if name in seen:  # a recursive type, met again inside itself
            return True
        if name is not None:
            seen.add(name)
        kind = node["type"]
        if kind == "map" or (kind == "array" and node["items"] != "float"):
            return False
        return all(flat(field["type"], seen) for field in node.get("fields", []))

    return flat(schema, set())


def read_body(read: Read, buf: bytes, pos: int) -> Any:
    """One whole body from ``pos``: nothing may follow the value."""
    value, end = read(buf, pos)
    if end != len(buf):
        raise MalformedBody(f"{len(buf) - end} bytes after the record")
    return value


def _compile(schema: Any, named: dict[str, Read]) -> Read:
    if isinstance(schema, list):
        return _union([_compile(branch, named) for branch in schema])
    if isinstance(schema, str):
        if schema in _PRIMITIVES:
            return _PRIMITIVES[schema]
        return lambda buf, pos: named[schema](buf, pos)  # a named type, perhaps around this very reference
    kind = schema["type"]
    if kind in ("record", "error"):
        read = _record([(field["name"], _compile(field["type"], named)) for field in schema["fields"]])
    elif kind == "enum":
        read = _enum(schema["symbols"])
    elif kind == "fixed":
        read = _fixed(schema["size"])
    elif kind == "array":
        read = _float_array if schema["items"] == "float" else _blocks(_compile(schema["items"], named), list)
    elif kind == "map":
        read = _blocks(_entry(_compile(schema["values"], named)), dict)
    else:  # a primitive with a logical type: its underlying value
        return _compile(kind, named)
    if "name" in schema:
        named[schema["name"]] = read
    return read


def _take(buf: bytes, pos: int, size: int) -> int:
    if size < 0 or pos + size > len(buf):
        raise MalformedBody(f"negative length {size}" if size < 0 else "truncated")
    return pos + size


def _null(buf: bytes, pos: int) -> tuple[None, int]:
    return None, pos


def _boolean(buf: bytes, pos: int) -> tuple[bool, int]:
    if pos >= len(buf):
        raise MalformedBody("truncated")
    if buf[pos] > 1:
        raise MalformedBody(f"boolean byte {buf[pos]} (only 0 or 1)")
    return buf[pos] == 1, pos + 1


def _int(buf: bytes, pos: int) -> tuple[int, int]:
    value, pos = _small(buf, pos)
    if not -(1 << 31) <= value < 1 << 31:
        raise MalformedBody(f"int {value} beyond 32 bits")
    return value, pos


def _number(code: str) -> Read:
    width = struct.calcsize(code)

    def read(buf: bytes, pos: int) -> tuple[float, int]:
        end = _take(buf, pos, width)
        return struct.unpack_from(code, buf, pos)[0], end

    return read


def _bytes(buf: bytes, pos: int) -> tuple[bytes, int]:
    size, pos = varint(buf, pos)
    end = _take(buf, pos, size)
    return bytes(buf[pos:end]), end


def _small(buf: bytes, pos: int) -> tuple[int, int]:
    """:func:`varint`, with its one- and two-byte cases (a union branch, an enum symbol, a short string or array
    length, a small int) inline."""
    if pos + 1 < len(buf):
        first = buf[pos]
        if first < 0x80:
            return (first >> 1) ^ -(first & 1), pos + 1
        if buf[pos + 1] < 0x80:
            value = (first & 0x7F) | buf[pos + 1] << 7
            return (value >> 1) ^ -(value & 1), pos + 2
    return varint(buf, pos)


def _string(buf: bytes, pos: int) -> tuple[str, int]:
    if pos < len(buf) and not buf[pos] & 0x81:  # the usual case inline: a length below 64, one even byte
        size, pos = buf[pos] >> 1, pos + 1
    else:
        size, pos = varint(buf, pos)
    end = pos + size
    if size < 0 or end > len(buf):
        _take(buf, pos, size)  # raises what is wrong
    try:
        return str(buf[pos:end], "utf-8"), end
    except UnicodeDecodeError as exc:
        raise MalformedBody(f"a string that is not UTF-8: {exc}") from None


def _fixed(size: int) -> Read:
    def read(buf: bytes, pos: int) -> tuple[bytes, int]:
        end = _take(buf, pos, size)
        return bytes(buf[pos:end]), end

    return read


_PRIMITIVES: dict[str, Read] = {
    "null": _null,
    "boolean": _boolean,
    "int": _int,
    "long": varint,
    "float": _number("<f"),
    "double": _number("<d"),
    "bytes": _bytes,
    "string": _string,
}


def _record(fields: list[tuple[str, Read]]) -> Read:
    def read(buf: bytes, pos: int) -> tuple[dict[str, Any], int]:
        record = {}
        for name, field in fields:
            record[name], pos = field(buf, pos)
        return record, pos

    return read


def _enum(symbols: list[str]) -> Read:
    def read(buf: bytes, pos: int) -> tuple[str, int]:
        index, pos = in_range("enum symbol", *_small(buf, pos), len(symbols))
        return symbols[index], pos

    return read


def _union(branches: list[Read]) -> Read:
    if len(branches) == 2 and branches[0] is _null:
        return _optional(branches[1])

    def read(buf: bytes, pos: int) -> tuple[Any, int]:
        index, pos = in_range("union branch", *_small(buf, pos), len(branches))
        return branches[index](buf, pos)

    return read


def _optional(value: Read) -> Read:
    """``["null", T]``, most unions of a record: its branch byte read inline."""

    def read(buf: bytes, pos: int) -> tuple[Any, int]:
        branch = buf[pos] if pos < len(buf) else None
        if branch == 0:
            return None, pos + 1
        if branch == 2:
            return value(buf, pos + 1)
        index, pos = in_range("union branch", *varint(buf, pos), 2)
        return (None, pos) if index == 0 else value(buf, pos)

    return read


def _entry(value: Read) -> Read:
    """One map entry, as a (key, value) pair."""

    def read(buf: bytes, pos: int) -> tuple[tuple[str, Any], int]:
        key, pos = _string(buf, pos)
        item, pos = value(buf, pos)
        return (key, item), pos

    return read


def _block_count(buf: bytes, pos: int) -> tuple[int, int | None, int]:
    """(items, declared byte size or None, position after the header) of one array or map block."""
    count, pos = _small(buf, pos)
    size = None
    if count < 0:  # a negative count is followed by the block's size in bytes
        count = -count
        size, pos = varint(buf, pos)
    if count > len(buf) - pos:
        raise MalformedBody(f"a block of {count} items in {len(buf) - pos} bytes")
    return count, size, pos


def _blocks(item: Read, container: type) -> Read:
    def read(buf: bytes, pos: int) -> tuple[Any, int]:
        items: list[Any] = []
        while True:
            count, size, pos = _block_count(buf, pos)
            if count == 0:
                return container(items), pos
            start = pos
            for _ in range(count):
                value, pos = item(buf, pos)
                items.append(value)
            if size is not None and pos - start != size:
                raise MalformedBody(f"a block declares {size} bytes but its items take {pos - start}")

    return read


def _float_array(buf: bytes, pos: int) -> tuple[np.ndarray, int]:
    """Every block's floats as one float32 array: a view of the body when it has one block (the usual case)."""
    parts: list[np.ndarray] = []
    while True:
        count, size, pos = _block_count(buf, pos)
        if count == 0:
            break
        if size is not None and size != 4 * count:
            raise MalformedBody(f"a block declares {size} bytes but its items take {4 * count}")
        end = _take(buf, pos, 4 * count)
        parts.append(np.frombuffer(buf, _FLOAT32, count, pos))
        pos = end
    if len(parts) == 1:
        return parts[0], pos
    return (np.concatenate(parts) if parts else np.empty(0, _FLOAT32)), pos
