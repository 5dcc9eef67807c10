"""Builder threads lower their own priority, not the worker's."""

from __future__ import annotations

import os
import threading

import pytest

from streams.background import BUILDER_NICENESS, yield_to_the_stream


@pytest.mark.skipif(not hasattr(os, "setpriority"), reason="per-thread nice values are Linux's")
def test_a_builder_thread_yields_and_the_rest_of_the_process_does_not():
    ours = os.getpriority(os.PRIO_PROCESS, threading.get_native_id())
    seen = []

    def builder():
        yield_to_the_stream()
        seen.append(os.getpriority(os.PRIO_PROCESS, threading.get_native_id()))

    thread = threading.Thread(target=builder)
    thread.start()
    thread.join()
    assert seen == [min(19, ours + BUILDER_NICENESS)]
    assert os.getpriority(os.PRIO_PROCESS, threading.get_native_id()) == ours
