"""Structured logs: context ids on every line, traceparent read from and copied to Kafka headers."""

from __future__ import annotations

import asyncio
import io
import json
import logging
import subprocess
import sys

import pytest

from streams.config import Settings
from streams.logs import (
    ContextFilter,
    configure_logging,
    log_context,
    parse_traceparent,
    trace_headers,
    traceparent_from_headers,
)
from tests.support import REPO

TP = "00-4bf92f3577b34da6a3ce929d0e0e4736-00f067aa0ba902b7-01"


@pytest.fixture
def captured():
    """The root logger sent to a buffer by configure_logging; restored afterwards."""
    root = logging.getLogger()
    saved_level, saved_handlers = root.level, list(root.handlers)

    def configure(fmt: str) -> io.StringIO:
        buffer = io.StringIO()
        configure_logging(Settings(log_format=fmt, log_level="DEBUG"), stream=buffer)
        return buffer

    yield configure
    root.handlers[:] = saved_handlers
    root.setLevel(saved_level)


def test_valid_traceparent_is_read_from_faust_style_headers():
    assert traceparent_from_headers({"traceparent": TP.encode()}) == TP
    assert traceparent_from_headers([("content-type", b"image/jpeg"), ("Traceparent", TP.encode())]) == TP
    assert traceparent_from_headers(None) is None
    assert traceparent_from_headers({}) is None


@pytest.mark.parametrize(
    "bad",
    [
        b"not-a-trace",
        "00-00000000000000000000000000000000-00f067aa0ba902b7-01",  # all-zero trace id
        "00-4bf92f3577b34da6a3ce929d0e0e4736-0000000000000000-01",  # all-zero parent id
        "ff-4bf92f3577b34da6a3ce929d0e0e4736-00f067aa0ba902b7-01",  # forbidden version
        TP.upper(),
        b"\xff\xfe",
    ],
)
def test_invalid_traceparent_is_dropped(bad):
    assert parse_traceparent(bad) is None


def test_output_headers_carry_the_traceparent_of_the_context():
    assert trace_headers() == {}
    with log_context(traceparent=TP):
        assert trace_headers() == {"traceparent": TP.encode()}
    assert trace_headers() == {}
    assert trace_headers(TP) == {"traceparent": TP.encode()}


def test_json_lines_carry_ids_trace_id_and_extra_fields(captured):
    buffer = captured("json")
    log = logging.getLogger("facestream.test")
    with log_context(batch_id="b1"):
        with log_context(image_id="img-7", traceparent=TP):
            log.warning("no face in %s", "img-7", extra={"error_code": "NO_FACE"})
        log.info("batch done")
    first, second = (json.loads(line) for line in buffer.getvalue().splitlines())
    assert first["message"] == "no face in img-7"
    assert first["level"] == "WARNING" and first["logger"] == "facestream.test"
    assert (first["image_id"], first["batch_id"], first["traceparent"]) == ("img-7", "b1", TP)
    assert first["trace_id"] == "4bf92f3577b34da6a3ce929d0e0e4736"
    assert first["error_code"] == "NO_FACE"
    assert second["batch_id"] == "b1" and "image_id" not in second and "traceparent" not in second


def test_plain_lines_show_only_the_ids_that_are_set(captured):
    buffer = captured("plain")
    log = logging.getLogger("facestream.test")
    log.info("starting")
    with log_context(image_id="img-1", batch_id="b2"):
        log.info("decoded")
    start, decoded = buffer.getvalue().splitlines()
    assert start.endswith("facestream.test: starting") and "[" not in start
    assert "[image_id=img-1 batch_id=b2]" in decoded and decoded.endswith("decoded")


def test_exceptions_are_one_json_line(captured):
    buffer = captured("json")
    try:
        raise RuntimeError("boom")
    except RuntimeError:
        logging.getLogger("facestream.test").exception("failed")
    (line,) = buffer.getvalue().splitlines()
    assert "RuntimeError: boom" in json.loads(line)["exception"]


async def test_context_does_not_leak_between_concurrent_tasks():
    async def handle(image_id: str) -> str | None:
        with log_context(image_id=image_id):
            await asyncio.sleep(0.01)
            record = logging.LogRecord("t", logging.INFO, "", 0, "", None, None)
            ContextFilter().filter(record)
            return record.image_id

    assert await asyncio.gather(handle("a"), handle("b")) == ["a", "b"]


def test_unknown_log_format_is_refused():
    with pytest.raises(ValueError, match="FACESTREAM_LOG_FORMAT"):
        configure_logging(Settings(log_format="xml"))


def test_worker_logging_config_makes_json_lines_in_a_fresh_process():
    # dictConfig replaces every root handler, so it runs where it cannot disturb pytest's own logging.
    program = (
        "import logging, logging.config\n"
        "from streams.config import Settings\n"
        "from streams.logs import log_context, logging_config\n"
        "logging.config.dictConfig(logging_config(Settings(log_format='json', log_level='info')))\n"
        f"with log_context(image_id='img-3', traceparent='{TP}'):\n"
        "    logging.getLogger('faust.worker').info('batch %d done', 7)\n"
        "logging.getLogger('x').debug('below the level')\n"
    )
    done = subprocess.run([sys.executable, "-c", program], cwd=REPO, capture_output=True, text=True, timeout=60, check=False)
    assert done.returncode == 0, done.stderr
    (line,) = done.stderr.splitlines()
    record = json.loads(line)
    assert record["message"] == "batch 7 done" and record["logger"] == "faust.worker"
    assert record["image_id"] == "img-3" and record["trace_id"] == TP.split("-")[1]
