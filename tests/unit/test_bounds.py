"""Limits on what a record may hold, and dead letters that stay within a Kafka record."""

from __future__ import annotations

import hashlib

import pytest

from streams.bounds import (
    MAX_EMBEDDING_DIM,
    RECORD_OVERHEAD_BYTES,
    check_attributes,
    check_embedding,
    check_id,
    check_key,
    clipped,
    fits,
)
from streams.errors import ErrorCode, RecordError


def test_ids_and_keys_longer_than_the_limit_are_bad_events():
    check_id("é" * 512, "image id", 1024)  # 1024 UTF-8 bytes: at the limit
    with pytest.raises(RecordError) as refused:
        check_id("é" * 513, "image id", 1024)
    assert refused.value.code is ErrorCode.BAD_EVENT and "image id of 1026 bytes" in refused.value.message
    with pytest.raises(RecordError, match="is empty"):
        check_id("", "subject id", 1024)
    check_key(None, 4)
    check_key(b"abcd", 4)
    with pytest.raises(RecordError, match="record key of 5 bytes"):
        check_key(b"abcde", 4)


def test_attributes_are_bounded_by_their_total_size():
    check_attributes({"a": "b" * 9}, 10)
    with pytest.raises(RecordError, match="attributes of 11 bytes"):
        check_attributes({"a": "b" * 5, "c": "d" * 4}, 10)


def test_clipped_keeps_small_data_whole_and_large_data_as_prefix_length_and_digest():
    assert clipped(b"abc", 3) == (b"abc", None, None)
    assert clipped(None, 3) == (None, None, None)
    data = bytes(range(256)) * 10
    prefix, size, digest = clipped(data, 100)
    assert prefix == data[:100] and size == 2560 and digest == hashlib.sha256(data).hexdigest()


def test_fits_leaves_room_for_headers_and_framing():
    assert fits(1000 - RECORD_OVERHEAD_BYTES, 1000)
    assert not fits(1001 - RECORD_OVERHEAD_BYTES, 1000)


def test_embeddings_longer_than_any_model_are_bad_events():
    check_embedding([0.0] * MAX_EMBEDDING_DIM, "the embedding")
    with pytest.raises(RecordError, match=f"4097 values, over the limit of {MAX_EMBEDDING_DIM}"):
        check_embedding([0.0] * (MAX_EMBEDDING_DIM + 1), "the embedding")


def test_any_exception_becomes_the_record_error_it_means():
    typed = RecordError(ErrorCode.BAD_EVENT, "no")
    assert RecordError.of(typed) is typed
    failed = RecordError.of(ValueError("embedded null byte"))
    assert failed.code is ErrorCode.PROCESSING_FAILED and failed.message == "ValueError: embedded null byte"
