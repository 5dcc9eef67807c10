"""A worker that ends within ``shutdown_grace_s`` of SIGTERM or SIGINT, whatever it is doing.

faust's graceful stop waits for every agent, task and thread: with the backend
down or a decode thread stuck that takes minutes, and an orchestrator then
SIGKILLs the worker anyway. So the first stop signal also arms a watchdog
thread that ends the process when the grace period runs out. Forcing the exit
loses nothing: only offsets of answered events are ever committed, so the
events still in flight are processed again by whoever takes the partitions.
"""

from __future__ import annotations

import logging
import os
import threading
from collections.abc import Callable

import faust

log = logging.getLogger(__name__)

#: Exit status of a worker that had to stop at once: its graceful shutdown did not finish in time, or a
#: batch could not be answered (EX_SOFTWARE).
FORCED_EXIT_STATUS = 70


def arm_watchdog(grace_s: float, exit_process: Callable[[int], object] = os._exit) -> threading.Thread:
    """Start a daemon thread that calls ``exit_process(FORCED_EXIT_STATUS)`` after ``grace_s`` unless the process ended.

    ``os._exit``: no atexit handlers, no joins of threads that may be the very ones stuck.
    """

    def expire() -> None:
        log.error("graceful shutdown did not finish within %g s: exiting now (status %d)", grace_s, FORCED_EXIT_STATUS)
        exit_process(FORCED_EXIT_STATUS)

    timer = threading.Timer(grace_s, expire)
    timer.name = "shutdown-watchdog"
    timer.daemon = True  # a finished shutdown must not wait for it
    timer.start()
    return timer


class Worker(faust.Worker):
    """faust's worker, whose stop signals also arm the shutdown watchdog (once).

    mode installs its loop signal handlers to call ``_on_sigterm`` and ``_on_sigint``
    (faust.Worker extends them the same way), so the watchdog starts as the stop begins.
    """

    def __init__(self, *args, shutdown_grace_s: float, **kwargs) -> None:
        super().__init__(*args, **kwargs)
        self.shutdown_grace_s = shutdown_grace_s
        self._watchdog: threading.Thread | None = None

    def _on_sigterm(self) -> None:
        self._arm()
        super()._on_sigterm()

    def _on_sigint(self) -> None:
        self._arm()
        super()._on_sigint()

    def _arm(self) -> None:
        if self._watchdog is None:
            self._watchdog = arm_watchdog(self.shutdown_grace_s)
