"""Retry delays double from the configured first delay and stop growing at the cap."""

import itertools

from streams.backoff import MAX_BACKOFF_S, backoff_delays
from streams.config import Settings


def test_delays_double_then_stay_at_the_cap():
    delays = list(itertools.islice(backoff_delays(Settings.from_env({}, retry_backoff_ms=500)), 10))
    assert delays[:4] == [0.5, 1.0, 2.0, 4.0]
    assert delays[-1] == MAX_BACKOFF_S and max(delays) == MAX_BACKOFF_S
