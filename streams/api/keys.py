"""Optional API keys: with ``FACESTREAM_API_KEYS`` set, every ``/v1`` route needs one in ``X-API-Key``.

Keys are compared in constant time (each configured key, every time), and a
key is never logged or echoed: a refusal says only that the key is missing or
not valid.
"""

from __future__ import annotations

import hmac

from fastapi import Security
from fastapi.security import APIKeyHeader

from ..config import Settings
from .problems import UNAUTHORIZED, Problem

HEADER = "X-API-Key"
_header = APIKeyHeader(name=HEADER, auto_error=False, description="One of FACESTREAM_API_KEYS, when it is set.")


def configured_keys(settings: Settings) -> tuple[bytes, ...]:
    return tuple(k.strip().encode() for k in settings.api_keys.split(",") if k.strip())


def key_check(keys: tuple[bytes, ...]):
    """A route dependency: passes when the request's key is one of ``keys``, else 401."""

    def check(given: str | None = Security(_header)) -> None:
        if given is None:
            raise Problem(UNAUTHORIZED, f"this route needs an {HEADER} header")
        offered = given.encode("utf-8", "surrogateescape")
        matches = [hmac.compare_digest(offered, key) for key in keys]  # all compared: no early exit
        if not any(matches):
            raise Problem(UNAUTHORIZED, f"the {HEADER} is not valid")

    return check
