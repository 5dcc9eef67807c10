"""Limits on what a record read from a topic may hold, checked before it costs memory, time or an output.

Outputs repeat ids and keys (an embedding record is keyed by its image id, a
dead letter carries the original key), so an unbounded id becomes an output
Kafka refuses, and a refused output is a lost event. Ids and keys are bounded
here; a dead letter of a record too large to repeat keeps a prefix of it with
the original length and SHA-256.
"""

from __future__ import annotations

import hashlib
from collections.abc import Mapping, Sequence

from .errors import ErrorCode, RecordError

#: Largest embedding dimension a gallery entry or query may carry (SFace 128, ArcFace 512).
MAX_EMBEDDING_DIM = 4096
#: Room left in a Kafka record for the output's own fields, headers and framing.
RECORD_OVERHEAD_BYTES = 16 * 1024


def check_key(key: bytes | None, limit: int) -> None:
    """``BAD_EVENT`` when a record key is longer than ``limit`` bytes."""
    if key is not None and len(key) > limit:
        raise RecordError(ErrorCode.BAD_EVENT, f"record key of {len(key)} bytes exceeds the limit of {limit}")


def check_id(value: str, what: str, limit: int) -> None:
    """``BAD_EVENT`` when an id (``what`` names it) is longer than ``limit`` UTF-8 bytes, or empty."""
    size = len(value.encode("utf-8", "surrogatepass"))
    if size > limit:
        raise RecordError(ErrorCode.BAD_EVENT, f"{what} of {size} bytes exceeds the limit of {limit}")
    if size == 0:
        raise RecordError(ErrorCode.BAD_EVENT, f"{what} is empty")


def check_embedding(values: Sequence[float], what: str) -> None:
    """``BAD_EVENT`` for an embedding longer than any model's, before it is stored or compared."""
    if len(values) > MAX_EMBEDDING_DIM:
        raise RecordError(ErrorCode.BAD_EVENT, f"{what} has {len(values)} values, over the limit of {MAX_EMBEDDING_DIM}")


def check_attributes(attributes: Mapping[str, str], limit: int) -> None:
    """``BAD_EVENT`` when free-form attributes (copied to the output) total more than ``limit`` bytes."""
    size = sum(len(k.encode("utf-8", "surrogatepass")) + len(v.encode("utf-8", "surrogatepass")) for k, v in attributes.items())
    if size > limit:
        raise RecordError(ErrorCode.BAD_EVENT, f"attributes of {size} bytes exceed the limit of {limit}")


def fits(size: int, max_message_bytes: int) -> bool:
    """Whether a record of ``size`` key and value bytes fits a Kafka record with room for headers and framing."""
    return size + RECORD_OVERHEAD_BYTES <= max_message_bytes


def clipped(data: bytes | None, limit: int) -> tuple[bytes | None, int | None, str | None]:
    """``data`` whole with no size or digest when it fits ``limit``, else (first ``limit`` bytes, length, SHA-256)."""
    if data is None or len(data) <= limit:
        return data, None, None
    return data[:limit], len(data), hashlib.sha256(data).hexdigest()
