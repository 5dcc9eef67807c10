"""When each agent last answered an event: the evidence /readyz needs to tell a stuck consumer from an idle one."""

from __future__ import annotations

import time
from collections.abc import Callable


class Progress:
    """Monotonic time of the last answered event, per input topic."""

    def __init__(self, clock: Callable[[], float] = time.monotonic) -> None:
        self._clock = clock
        self._last: dict[str, float] = {}

    def answered(self, topic: str) -> None:
        """Events of ``topic`` got their outputs acknowledged just now."""
        self._last[topic] = self._clock()

    def last_answered(self, topic: str) -> float | None:
        """When ``topic`` last had an event answered; None when never."""
        return self._last.get(topic)
