"""What both rerank agents do with a record they read: decode it (off the event loop when large) and check the
quality fields a gallery entry and a query share."""

from __future__ import annotations

import asyncio
from functools import partial
from typing import Any

from ..context import WorkerContext
from ..errors import ErrorCode, RecordError

# A record this large takes milliseconds to parse: done in a thread so the event loop keeps serving.
INLINE_MAX_PARSE_BYTES = 64 * 1024


async def parse(ctx: WorkerContext, value: bytes | None, expect: str, *, arrays: bool = False) -> dict[str, Any]:
    """Decode one record, in a thread when it is large enough to hold up the event loop; ``arrays``: its float
    arrays as numpy float32 (:meth:`~streams.codecs.AvroCodec.decode_arrays`: half the time)."""
    decode = partial(ctx.codec.decode_arrays, value, expect) if arrays else partial(ctx.codec.decode, value, expect)
    if value is not None and len(value) > INLINE_MAX_PARSE_BYTES:
        return await asyncio.get_running_loop().run_in_executor(None, decode)
    return decode()


def check_range(value: float | None, name: str, low: float, high: float, code: ErrorCode) -> None:
    """An optional number a record may carry: absent, or finite within [low, high] (NaN is neither)."""
    if value is not None and not low <= value <= high:
        raise RecordError(code, f"{name} must be within [{low:g}, {high:g}], got {value}")


def check_quality_fields(record: dict[str, Any], malformed: ErrorCode, what: str, gate: float, setting: str) -> None:
    """A gallery entry's or query's ``quality`` and ``match_threshold``: in range (else ``malformed``), and a
    known quality at least ``gate``, the value of ``setting`` (else LOW_QUALITY)."""
    check_range(record["quality"], "quality", 0.0, 1.0, malformed)
    check_range(record["match_threshold"], "match_threshold", -1.0, 1.0, malformed)
    if record["quality"] is not None and record["quality"] < gate:
        raise RecordError(ErrorCode.LOW_QUALITY, f"{what} {record['quality']:.3f} is below {setting} {gate:g}")
