"""Structured logs that say which image, which batch and which trace a line is about.

The image id, the batch id and the W3C ``traceparent`` of the event being
handled live in context variables, set by :func:`log_context` around the work,
and every log record picks them up through :class:`ContextFilter`; so code deep
in the pipeline logs plainly and still lands in the right trace. The
``traceparent`` arrives in the input record's Kafka headers and is copied onto
the output records' headers (:func:`trace_headers`), so a trace crosses the
worker unbroken.
"""

from __future__ import annotations

import contextlib
import contextvars
import json
import logging
import re
import sys
import uuid
from collections.abc import Iterator, Mapping, Sequence
from datetime import UTC, datetime
from typing import Any

from streams.config import Settings

TRACEPARENT = "traceparent"
CONTEXT_FIELDS = ("image_id", "batch_id", "traceparent")

_image_id: contextvars.ContextVar[str | None] = contextvars.ContextVar("image_id", default=None)
_batch_id: contextvars.ContextVar[str | None] = contextvars.ContextVar("batch_id", default=None)
_traceparent: contextvars.ContextVar[str | None] = contextvars.ContextVar("traceparent", default=None)
_VARS = {"image_id": _image_id, "batch_id": _batch_id, "traceparent": _traceparent}

# version-traceid-parentid-flags, lower-case hex (W3C Trace Context, level 1)
_TRACEPARENT_RE = re.compile(r"^([0-9a-f]{2})-([0-9a-f]{32})-([0-9a-f]{16})-([0-9a-f]{2})$")
# Attributes every LogRecord has; anything else on a record came from ``extra=`` and is worth printing.
_STANDARD_ATTRS = frozenset(vars(logging.LogRecord("", 0, "", 0, "", None, None))) | {"message", "asctime"}


def parse_traceparent(value: str | bytes | None) -> str | None:
    """The header value if it is a valid W3C ``traceparent``, else None (a bad header is dropped, not passed on)."""
    if value is None:
        return None
    if isinstance(value, bytes):
        try:
            value = value.decode("ascii")
        except UnicodeDecodeError:
            return None
    match = _TRACEPARENT_RE.match(value.strip())
    if match is None:
        return None
    version, trace_id, parent_id, _ = match.groups()
    if version == "ff" or trace_id == "0" * 32 or parent_id == "0" * 16:
        return None
    return match.group(0)


def traceparent_from_headers(headers: Mapping[str, Any] | Sequence[tuple[str, Any]] | None) -> str | None:
    """The valid ``traceparent`` of a Kafka record's headers (a faust event's ``headers``: mapping or pairs)."""
    if not headers:
        return None
    pairs = headers.items() if isinstance(headers, Mapping) else headers
    for key, value in pairs:
        if key.lower() == TRACEPARENT:
            return parse_traceparent(value)
    return None


def trace_headers(traceparent: str | None = None) -> dict[str, bytes]:
    """Headers to put on an output record: the given ``traceparent``, else the current context's, else none."""
    value = traceparent if traceparent is not None else _traceparent.get()
    return {TRACEPARENT: value.encode("ascii")} if value else {}


def new_batch_id() -> str:
    return uuid.uuid4().hex[:16]


@contextlib.contextmanager
def log_context(
    *, image_id: str | None = None, batch_id: str | None = None, traceparent: str | None = None
) -> Iterator[None]:
    """Within the block, log records carry the given ids; fields not given keep their outer values."""
    given = {"image_id": image_id, "batch_id": batch_id, "traceparent": traceparent}
    tokens = [(_VARS[name], _VARS[name].set(value)) for name, value in given.items() if value is not None]
    try:
        yield
    finally:
        for var, token in reversed(tokens):
            var.reset(token)


class ContextFilter(logging.Filter):
    """Copies the current image id, batch id and traceparent onto each record (None when unset)."""

    def filter(self, record: logging.LogRecord) -> bool:
        for name, var in _VARS.items():
            if not hasattr(record, name):
                setattr(record, name, var.get())
        return True


class JsonFormatter(logging.Formatter):
    """One JSON object per line: time, level, logger, message, the context ids, ``extra=`` fields, exception."""

    def format(self, record: logging.LogRecord) -> str:
        out: dict[str, Any] = {
            "ts": datetime.fromtimestamp(record.created, UTC).isoformat(timespec="milliseconds"),
            "level": record.levelname,
            "logger": record.name,
            "message": record.getMessage(),
        }
        for key, value in vars(record).items():
            if key not in _STANDARD_ATTRS and value is not None:
                out[key] = value
        if out.get("traceparent"):
            out["trace_id"] = out["traceparent"].split("-")[1]
        if record.exc_info:
            out["exception"] = self.formatException(record.exc_info)
        return json.dumps(out, default=str)


class PlainFormatter(logging.Formatter):
    """Human-readable lines; the context ids appear only when set."""

    def __init__(self) -> None:
        super().__init__("%(asctime)s %(levelname)-7s %(name)s%(context)s: %(message)s")

    def format(self, record: logging.LogRecord) -> str:
        ids = [f"{name}={getattr(record, name)}" for name in CONTEXT_FIELDS if getattr(record, name, None)]
        record.context = f" [{' '.join(ids)}]" if ids else ""
        return super().format(record)


def log_handler(log_format: str, stream: Any = None) -> logging.Handler:
    """A handler writing ``log_format`` (plain or json) lines with the context ids to ``stream`` (stderr)."""
    if log_format not in {"plain", "json"}:
        raise ValueError(f"FACESTREAM_LOG_FORMAT={log_format!r}: expected plain or json")
    handler = logging.StreamHandler(stream or sys.stderr)
    handler.setFormatter(JsonFormatter() if log_format == "json" else PlainFormatter())
    handler.addFilter(ContextFilter())
    handler.set_name("facestream")
    return handler


def logging_config(settings: Settings) -> dict[str, Any]:
    """A :func:`logging.config.dictConfig` for faust's ``Worker(logging_config=...)``, which replaces its own."""
    return {
        "version": 1,
        "disable_existing_loggers": False,
        "handlers": {"facestream": {"()": f"{__name__}.log_handler", "log_format": settings.log_format}},
        "root": {"level": settings.log_level.upper(), "handlers": ["facestream"]},
    }


def configure_logging(settings: Settings, stream: Any = None) -> logging.Handler:
    """Send the root logger to ``stream`` (stderr) in ``settings.log_format`` at ``settings.log_level``.

    For entry points that run no faust worker. Replaces the handler a previous call installed, and only that one.
    """
    handler = log_handler(settings.log_format, stream)
    root = logging.getLogger()
    for old in [h for h in root.handlers if h.get_name() == "facestream"]:
        root.removeHandler(old)
    root.addHandler(handler)
    root.setLevel(settings.log_level.upper())
    return handler
