"""Whole-request errors: an HTTP status and a JSON body ``{code, message}``.

Codes are the dead-letter topic's :class:`~streams.errors.ErrorCode`s where one
means the same thing (``PAYLOAD_TOO_LARGE``, ``BAD_QUERY``, ``UNKNOWN_GALLERY``,
...), else one of the codes below, which only an HTTP client can meet. An error
of one image of a multi-image request is not a problem of the request: that
image's entry in the answer carries it, and the other images still answer.
"""

from __future__ import annotations

from http import HTTPStatus

from starlette.responses import JSONResponse

from ..errors import ErrorCode, RecordError

#: The body is not JSON or multipart that parses.
BAD_REQUEST = "BAD_REQUEST"
#: The body parses but does not match the route's schema.
INVALID_REQUEST = "INVALID_REQUEST"
#: No valid X-API-Key.
UNAUTHORIZED = "UNAUTHORIZED"
#: No such route, or no such subject.
NOT_FOUND = "NOT_FOUND"
METHOD_NOT_ALLOWED = "METHOD_NOT_ALLOWED"
#: The model queue or the requests in flight are full: retry after Retry-After seconds.
OVERLOADED = "OVERLOADED"
#: Kafka did not take the record in time.
NOT_SENT = "NOT_SENT"
#: The request took longer than FACESTREAM_API_TIMEOUT_S (or its gallery query went unanswered).
TIMEOUT = "TIMEOUT"
#: The image holds no face (search, enrolment).
NO_FACE = "NO_FACE"

#: What a client should wait before retrying a 503, in seconds.
RETRY_AFTER_S = 1

STATUS_OF: dict[str, int] = {
    BAD_REQUEST: 400,
    INVALID_REQUEST: 422,
    UNAUTHORIZED: 401,
    NOT_FOUND: 404,
    METHOD_NOT_ALLOWED: 405,
    OVERLOADED: 503,
    NOT_SENT: 503,
    TIMEOUT: 504,
    NO_FACE: 422,
    ErrorCode.PAYLOAD_TOO_LARGE.value: 413,
    ErrorCode.UNSUPPORTED_CONTENT_TYPE.value: 415,
    ErrorCode.UNKNOWN_GALLERY.value: 404,
    ErrorCode.BACKEND_ERROR.value: 503,
}
#: Every other code (a query the ranker refused, an id too long): the request is well formed but cannot be served.
DEFAULT_STATUS = 422


class Problem(Exception):
    """One request cannot be served; raised anywhere below a route, rendered by :func:`response`."""

    def __init__(self, code: ErrorCode | str, message: str, *, status: int | None = None) -> None:
        self.code = code.value if isinstance(code, ErrorCode) else code
        super().__init__(f"{self.code}: {message}")
        self.message = message
        self.status = status or STATUS_OF.get(self.code, DEFAULT_STATUS)

    @classmethod
    def of(cls, error: RecordError) -> Problem:
        """A record error (the worker's or the ranker's) as the problem of the request that carried the record."""
        return cls(error.code, error.message)

    @property
    def headers(self) -> dict[str, str]:
        return {"Retry-After": str(RETRY_AFTER_S)} if self.status == HTTPStatus.SERVICE_UNAVAILABLE else {}

    def body(self) -> dict[str, str]:
        return {"code": self.code, "message": self.message}


def response(problem: Problem) -> JSONResponse:
    return JSONResponse(problem.body(), status_code=problem.status, headers=problem.headers)


#: The OpenAPI schema of every error body.
PROBLEM_SCHEMA = {
    "type": "object",
    "required": ["code", "message"],
    "properties": {
        "code": {"type": "string", "description": "Stable code: a dead-letter ErrorCode or an HTTP-only code."},
        "message": {"type": "string", "description": "Human-readable explanation."},
    },
}


def documented(*statuses: int) -> dict[int | str, dict]:
    """OpenAPI ``responses`` entries for error ``statuses``, each with the problem body."""
    return {
        status: {
            "description": HTTPStatus(status).phrase,
            "content": {"application/json": {"schema": {"$ref": "#/components/schemas/Problem"}}},
        }
        for status in statuses
    }
