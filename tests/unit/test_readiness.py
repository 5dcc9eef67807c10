"""The broker and progress verdicts of /readyz, on a hand-driven clock.

The lag monitor is fed what a broker would have answered (``observed``), so
each verdict is checked at the exact second it must turn; the integration
tests show the same checks on a real worker.
"""

from __future__ import annotations

import faust
import pytest

from streams.config import Settings
from streams.kafka.lag import LagMonitor
from streams.progress import Progress
from streams.readiness import Readiness
from streams.registry import SchemaRegistry
from tests.support.ports import free_port

SETTINGS = Settings(kafka_bootstrap_servers="127.0.0.1:1", broker_stale_s=30.0, stall_timeout_s=60.0)
IMAGES, QUERIES = SETTINGS.topic("images"), SETTINGS.topic("queries")


class Clock:
    def __init__(self) -> None:
        self.now = 1000.0

    def __call__(self) -> float:
        return self.now

    def advance(self, seconds: float) -> None:
        self.now += seconds


@pytest.fixture
def clock() -> Clock:
    return Clock()


@pytest.fixture
async def readiness(clock) -> Readiness:
    app = faust.App("readiness-test", broker="kafka://127.0.0.1:1")
    lag = LagMonitor(app, SETTINGS, [IMAGES, QUERIES], clock=clock)
    return Readiness(app, SETTINGS, lag, Progress(clock))


async def test_broker_check_counts_from_the_monitors_start_then_from_each_answer(readiness, clock):
    await readiness.lag.on_start()  # no broker answers at 127.0.0.1:1
    try:
        clock.advance(30)
        assert readiness.check_broker().ok
        clock.advance(1)
        check = readiness.check_broker()
        assert (check.ok, check.detail) == (False, "no broker answered for 31 s")

        readiness.lag.observed({})  # answered, holding no partition
        assert readiness.check_broker().ok
        clock.advance(45)
        assert readiness.check_broker().detail == "no broker answered for 45 s"
    finally:
        await readiness.lag.on_stop()


def test_an_idle_worker_handed_work_is_not_stalled_until_the_timeout(readiness, clock):
    readiness.progress.answered(IMAGES)
    clock.advance(3600)  # idle for an hour
    readiness.lag.observed({(IMAGES, 0): 0, (IMAGES, 1): 0})
    assert readiness.check_progress().ok
    readiness.lag.observed({(IMAGES, 0): 2, (IMAGES, 1): 1})  # work arrives
    clock.advance(60)
    readiness.lag.observed({(IMAGES, 0): 2, (IMAGES, 1): 1})
    assert readiness.check_progress().ok
    clock.advance(1)
    check = readiness.check_progress()
    assert (check.ok, check.detail) == (False, f"{IMAGES}: lag 3 unanswered for 61 s")


def test_answers_keep_a_topic_with_lag_progressing(readiness, clock):
    readiness.lag.observed({(IMAGES, 0): 5})
    for _ in range(10):  # busy: the lag never reaches 0, but events keep being answered
        clock.advance(30)
        readiness.progress.answered(IMAGES)
        readiness.lag.observed({(IMAGES, 0): 5})
        assert readiness.check_progress().ok
    clock.advance(61)
    assert not readiness.check_progress().ok


def test_a_cleared_backlog_resets_the_count_and_topics_are_judged_apart(readiness, clock):
    readiness.lag.observed({(IMAGES, 0): 1, (QUERIES, 0): 1})
    clock.advance(50)
    readiness.lag.observed({(IMAGES, 0): 0, (QUERIES, 0): 1})  # images caught up, queries did not
    clock.advance(50)
    readiness.lag.observed({(IMAGES, 0): 1, (QUERIES, 0): 1})  # new images: counted from now
    check = readiness.check_progress()
    assert (check.ok, check.detail) == (False, f"{QUERIES}: lag 1 unanswered for 100 s")
    assert readiness.lag.backlog_since(IMAGES) == clock.now


def test_a_partition_no_longer_held_no_longer_counts(readiness, clock):
    readiness.lag.observed({(IMAGES, 0): 4})
    clock.advance(120)
    assert not readiness.check_progress().ok
    readiness.lag.observed({(IMAGES, 1): 0})  # a rebalance moved partition 0 away
    assert readiness.check_progress().ok and readiness.lag.topic_lag(IMAGES) == 0


async def test_a_registry_nobody_answers_at_is_named_and_no_registry_is_fine(clock):
    app = faust.App("readiness-registry-test", broker="kafka://127.0.0.1:1")
    lag = LagMonitor(app, SETTINGS, [IMAGES], clock=clock)
    down = SETTINGS.replace(schema_registry_url=f"http://127.0.0.1:{free_port()}")
    check = await Readiness(app, down, lag, Progress(clock), registry=SchemaRegistry.from_settings(down)).check_registry()
    assert not check.ok and check.name == "registry" and "ConnectError" in check.detail
    assert (await Readiness(app, SETTINGS, lag, Progress(clock)).check_registry()).ok
