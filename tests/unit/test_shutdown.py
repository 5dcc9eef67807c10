"""The shutdown watchdog; tests/integration/test_operations.py SIGTERMs a real stuck worker."""

from __future__ import annotations

import logging
import threading

from streams.shutdown import FORCED_EXIT_STATUS, arm_watchdog


def test_the_watchdog_exits_non_zero_after_the_grace_period_saying_why(caplog):
    exited: list[int] = []
    done = threading.Event()

    def exit_process(status: int) -> None:
        exited.append(status)
        done.set()

    with caplog.at_level(logging.ERROR, logger="streams.shutdown"):
        watchdog = arm_watchdog(0.2, exit_process)
        assert watchdog.daemon and not done.wait(0.1)  # not before the grace period
        assert done.wait(5)
    assert exited == [FORCED_EXIT_STATUS] and FORCED_EXIT_STATUS != 0
    (line,) = caplog.messages
    assert "did not finish within 0.2 s" in line
