"""Typed errors with stable codes.

A code is part of the public contract: it is the ``error_code`` enum of the
``DeadLetter`` schema and the ``error.code`` of ``facestream embed --json``.
Add codes at the end; never rename one.
"""

from __future__ import annotations

import enum


class ErrorCode(str, enum.Enum):
    EMPTY_IMAGE = "EMPTY_IMAGE"
    PAYLOAD_TOO_LARGE = "PAYLOAD_TOO_LARGE"
    UNSUPPORTED_CONTENT_TYPE = "UNSUPPORTED_CONTENT_TYPE"
    UNKNOWN_IMAGE_FORMAT = "UNKNOWN_IMAGE_FORMAT"
    TRUNCATED_IMAGE = "TRUNCATED_IMAGE"
    CORRUPT_IMAGE = "CORRUPT_IMAGE"
    IMAGE_TOO_LARGE = "IMAGE_TOO_LARGE"
    IMAGE_TOO_SMALL = "IMAGE_TOO_SMALL"
    URI_UNREADABLE = "URI_UNREADABLE"
    BAD_EVENT = "BAD_EVENT"
    BACKEND_ERROR = "BACKEND_ERROR"
    UNKNOWN_GALLERY = "UNKNOWN_GALLERY"
    DIMENSION_MISMATCH = "DIMENSION_MISMATCH"
    BAD_QUERY = "BAD_QUERY"
    PROCESSING_FAILED = "PROCESSING_FAILED"
    URI_NOT_ALLOWED = "URI_NOT_ALLOWED"
    LOW_QUALITY = "LOW_QUALITY"
    MODEL_MISMATCH = "MODEL_MISMATCH"


class FacestreamError(Exception):
    """Base of every error facestream raises on purpose."""


class RecordError(FacestreamError):
    """One input record cannot be processed; it goes to the dead-letter topic with ``code``."""

    def __init__(self, code: ErrorCode, message: str) -> None:
        super().__init__(f"{code.value}: {message}")
        self.code = code
        self.message = message

    @classmethod
    def of(cls, exc: Exception) -> RecordError:
        """``exc`` as the record error it means: itself when typed, else ``PROCESSING_FAILED`` naming it."""
        if isinstance(exc, RecordError):
            return exc
        return cls(ErrorCode.PROCESSING_FAILED, f"{type(exc).__name__}: {exc}")


class UndecodableRecord(RecordError):
    """The bytes are not a facestream Avro record (wrong frame, unknown schema, corrupt body)."""

    def __init__(self, message: str) -> None:
        super().__init__(ErrorCode.BAD_EVENT, message)


class TooManyItems(UndecodableRecord):
    """An array or map holds more items than the codec's ``max_items``: refused before any is decoded."""


class ImageRejected(RecordError):
    """An image payload failed validation or decoding."""


class BackendError(FacestreamError):
    """The inference backend failed (server down, model not ready, timeout) — retryable."""


class BackendNotReady(BackendError):
    """The backend cannot serve yet: Triton not live, a model not ready, or sessions not loaded."""


class KafkaAuthenticationFailed(FacestreamError):
    """The broker refused our credentials, or TLS failed either way: not retryable, stop and say so once.

    The message names the user, protocol and mechanism, never the password.
    """


class BadSetting(FacestreamError, ValueError):
    """A setting holds a value it does not take: a configuration to fix, told in one line, never a traceback."""
