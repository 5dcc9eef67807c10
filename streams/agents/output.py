"""One output record an agent sends in answer to one input event."""

from __future__ import annotations

from dataclasses import dataclass


@dataclass(frozen=True)
class Output:
    topic: str
    key: bytes | None
    value: bytes
