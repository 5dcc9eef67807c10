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
