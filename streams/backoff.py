"""Retry delays: exponential from the configured first delay, capped, for loops that must not give up."""

from __future__ import annotations

import itertools
from collections.abc import Iterator

from .config import Settings

#: Longest wait between two tries of a backend that is down: long enough not to hammer it,
#: short enough that a recovered backend is back in use within half a minute.
MAX_BACKOFF_S = 30.0


def backoff_delays(settings: Settings) -> Iterator[float]:
    """``retry_backoff_ms``, doubled on each retry, capped at :data:`MAX_BACKOFF_S`; endless."""
    first = settings.retry_backoff_ms / 1000.0
    return (min(first * 2**n, MAX_BACKOFF_S) for n in itertools.count())
