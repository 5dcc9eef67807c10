"""Threads that build what a gallery keeps beside its rows (an HNSW index, a neighbour graph) yield the CPU.

Those builds take minutes of every core they are given, while the same worker
applies gallery entries and answers queries on its event loop, often on a
machine it shares with a broker. Linux gives each thread its own nice value, so
a builder thread raises its own: the scheduler then serves the stream first and
the build with whatever is left, and nothing changes on an idle machine.
"""

from __future__ import annotations

import logging
import os
import threading

log = logging.getLogger(__name__)

#: Nice steps a builder thread takes above the worker's own (19 is the lowest priority there is).
BUILDER_NICENESS = 10


def yield_to_the_stream() -> None:
    """Lower the calling thread's scheduling priority by :data:`BUILDER_NICENESS` (where the OS allows it)."""
    thread = threading.get_native_id()
    try:
        os.setpriority(os.PRIO_PROCESS, thread, min(19, os.getpriority(os.PRIO_PROCESS, thread) + BUILDER_NICENESS))
    except (AttributeError, OSError) as exc:  # not Linux, or a sandbox that refuses it: the build just competes
        log.debug("builder thread keeps its priority: %s", exc)
