"""``python -m tests.support.slow_worker worker``: the real worker, with events keyed ``slow-*`` held in decoding.

Fault injection for the in-flight commit test: while one actor sits on a slow
event, the other answers the events after it, and nothing may commit past the
slow one. ``FACESTREAM_TEST_SLOW_S`` says how long a slow event takes.
"""

import os
import sys
import time

from streams.agents.embed import EmbedBatch
from streams.cli import main

SLOW_S = float(os.environ.get("FACESTREAM_TEST_SLOW_S", "0"))
prepare = EmbedBatch._prepare


def slow_prepare(self, event):
    if (event.message.key or b"").startswith(b"slow-"):
        time.sleep(SLOW_S)
    return prepare(self, event)


EmbedBatch._prepare = slow_prepare
sys.exit(main())
