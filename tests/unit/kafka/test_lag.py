"""The lag arithmetic; tests/integration/test_operations.py checks the gauge against a real broker."""

from __future__ import annotations

from streams.kafka.lag import partition_lag


def test_lag_is_high_watermark_minus_committed_offset():
    assert partition_lag(low=0, high=120, committed=100) == 20
    assert partition_lag(low=0, high=120, committed=120) == 0


def test_without_a_committed_offset_every_retained_record_counts():
    # committed < 0 is librdkafka's OFFSET_INVALID: the group never committed on this partition
    assert partition_lag(low=30, high=120, committed=-1001) == 90


def test_lag_never_goes_negative_when_the_log_is_behind_the_committed_offset():
    # e.g. a topic deleted and recreated under the same group
    assert partition_lag(low=0, high=400, committed=450) == 0
