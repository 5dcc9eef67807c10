"""The Avro schemas are the public contract: complete, documented, consistent with the code."""

from __future__ import annotations

import pytest

from streams import schemas
from streams.errors import ErrorCode


@pytest.mark.parametrize("name", sorted(schemas.names()))
def test_every_field_is_documented(name):
    def fields(record: dict):
        for field in record.get("fields", []):
            yield field
            kind = field["type"]
            for candidate in kind if isinstance(kind, list) else [kind]:
                if isinstance(candidate, dict):
                    yield from fields(candidate)
                    if isinstance(candidate.get("items"), dict):
                        yield from fields(candidate["items"])

    raw = schemas.load_json(name)
    assert raw.get("doc"), f"{name} has no doc"
    undocumented = [f["name"] for f in fields(raw) if not f.get("doc")]
    assert undocumented == [], f"{name}: undocumented fields {undocumented}"


def test_dead_letter_codes_are_exactly_the_error_codes():
    enum = next(f["type"] for f in schemas.load_json("DeadLetter")["fields"] if f["name"] == "error_code")
    assert enum["symbols"] == [c.value for c in ErrorCode]
    assert enum["default"] in enum["symbols"]


def _enums(node):
    """Every enum type defined anywhere in a schema."""
    if isinstance(node, dict):
        if node.get("type") == "enum":
            yield node
        for value in node.values():
            yield from _enums(value)
    elif isinstance(node, list):
        for value in node:
            yield from _enums(value)


@pytest.mark.parametrize("name", sorted(schemas.names()))
def test_every_enum_is_open_with_a_default_or_written_down_as_closed(name):
    """A symbol added to an enum without a default breaks every older reader; schemas/README.md says which are closed."""
    rules = (schemas.schema_dir() / "README.md").read_text()
    closed = rules[rules.index("Closed enums"):]
    for enum in _enums(schemas.load_json(name)):
        if "default" in enum:
            assert enum["default"] in enum["symbols"], f"{name}.{enum['name']}: default is not a symbol"
            assert f"`{enum['name']}`" in rules, f"{name}.{enum['name']} is open but schemas/README.md does not say so"
        else:
            assert f"`{enum['name']}`" in closed, f"{name}.{enum['name']} has no default and is not listed as closed"
