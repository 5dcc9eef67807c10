"""The Avro schemas of every topic, loaded from ``schemas/*.avsc``.

The ``.avsc`` files are the public contract; this module only finds and parses
them. In a wheel they are installed as ``streams/schemas``; in a source checkout
they sit at the repository root.
"""

from __future__ import annotations

import functools
import json
from pathlib import Path
from typing import Any

import fastavro

_CANDIDATES = (Path(__file__).parent / "schemas", Path(__file__).resolve().parents[1] / "schemas")


def schema_dir() -> Path:
    for path in _CANDIDATES:
        if path.is_dir():
            return path
    raise FileNotFoundError(f"no Avro schema directory among {[str(p) for p in _CANDIDATES]}")


@functools.cache
def load_json(name: str) -> dict[str, Any]:
    """The schema ``name`` (e.g. ``"ImageEvent"``) as written, docs included: what a registry gets."""
    return json.loads((schema_dir() / f"{name}.avsc").read_text())


@functools.cache
def load(name: str) -> dict[str, Any]:
    """The parsed schema ``name``, ready for fastavro."""
    return parse(load_json(name))


def parse(schema: dict[str, Any]) -> dict[str, Any]:
    """Parse a self-contained schema; each schema gets its own namespace of named types."""
    return fastavro.parse_schema(schema, named_schemas={})


@functools.cache
def names() -> frozenset[str]:
    return frozenset(p.stem for p in schema_dir().glob("*.avsc"))
