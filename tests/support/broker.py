"""A real Kafka broker for integration tests, found or started in this order:

1. ``KAFKA_BOOTSTRAP_SERVERS`` when set (a broker someone else runs);
2. testcontainers' Kafka (KRaft) when a Docker engine answers;
3. the project's local KRaft broker (``scripts/kafka-local``) on free ports in a
   throw-away directory, started here and stopped when the session ends.
"""

from __future__ import annotations

import contextlib
import os
import subprocess
import tempfile
from collections.abc import Iterator

from tests.support import REPO
from tests.support.ports import free_ports

KAFKA_LOCAL = REPO / "scripts" / "kafka-local"
KAFKA_IMAGE = "apache/kafka:4.1.1"


def docker_answers() -> bool:
    try:
        import docker

        docker.from_env(timeout=3).ping()
        return True
    except Exception:
        return False


@contextlib.contextmanager
def local_broker(**env_overrides: str) -> Iterator[str]:
    """Run ``scripts/kafka-local`` on free ports in a temporary directory; yield its bootstrap address."""
    with tempfile.TemporaryDirectory(prefix="facestream-kafka-") as workdir:
        port, controller_port = free_ports(2)
        env = {
            **os.environ,
            "KAFKA_LOCAL_PORT": str(port),
            "KAFKA_LOCAL_CONTROLLER_PORT": str(controller_port),
            "KAFKA_LOCAL_DIR": workdir,
            "KAFKA_LOCAL_HEAP": "768m",
            **env_overrides,
        }
        subprocess.run([str(KAFKA_LOCAL), "start"], env=env, check=True, timeout=300)
        try:
            yield f"127.0.0.1:{port}"
        finally:
            subprocess.run([str(KAFKA_LOCAL), "stop"], env=env, check=False, timeout=120)


@contextlib.contextmanager
def kafka_broker() -> Iterator[str]:
    configured = os.environ.get("KAFKA_BOOTSTRAP_SERVERS")
    if configured:
        yield configured
        return
    if docker_answers():
        from testcontainers.kafka import KafkaContainer

        with KafkaContainer(KAFKA_IMAGE).with_kraft() as container:
            yield container.get_bootstrap_server()
        return
    with local_broker() as bootstrap:
        yield bootstrap
