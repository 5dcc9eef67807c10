"""Shared fixtures: a real Kafka broker per test session, isolated topic names per test."""

from __future__ import annotations

import uuid
from collections.abc import Iterator

import pytest

from streams.config import Settings
from tests.kafka_broker import kafka_broker

pytest_plugins = ["tests.fixtures_photos", "tests.fixtures_triton"]


@pytest.fixture(scope="session")
def kafka_bootstrap() -> Iterator[str]:
    """Bootstrap address of a real broker (see :mod:`tests.kafka_broker`)."""
    with kafka_broker() as bootstrap:
        yield bootstrap


@pytest.fixture
def stream_settings(kafka_bootstrap: str, tmp_path) -> Settings:
    """Settings for one test: its own topics and consumer group on the session broker."""
    run = uuid.uuid4().hex[:8]
    return Settings.from_env(
        None,
        kafka_bootstrap_servers=kafka_bootstrap,
        app_id=f"facestream-test-{run}",
        topic_prefix=f"t{run}.",
        topic_partitions=2,
        data_dir=str(tmp_path / "worker"),
    )
