"""A real Confluent-compatible Schema Registry for integration tests, found or started in this order:

1. ``FACESTREAM_TEST_SCHEMA_REGISTRY_URL`` when set (a registry someone else runs);
2. Confluent's registry image through testcontainers when a Docker engine answers;
3. Karapace built from ``../shared/tools/karapace`` into ``.cache/karapace`` (``make setup`` builds it),
   run on a free port against the session's broker, stopped when the session ends;
4. none: the registry tests skip, saying why.

Only a registry this module started can be stopped and started again (the outage test needs that).
"""

from __future__ import annotations

import contextlib
import json
import os
import subprocess
import time
import urllib.error
import urllib.request
from collections.abc import Iterator
from pathlib import Path

from tests.support import REPO
from tests.support.broker import docker_answers
from tests.support.ports import free_port

KARAPACE_SOURCE = REPO.parent / "shared" / "tools" / "karapace"
KARAPACE_BUILD = REPO / ".cache" / "karapace"
REGISTRY_IMAGE = "confluentinc/cp-schema-registry:7.7.1"
START_TIMEOUT_S = 90.0


class RegistryNotAvailable(RuntimeError):
    """No registry can be had here; the message says which options were tried."""


class KarapaceProcess:
    """One Karapace registry process, stoppable and restartable on the same port and schema topic."""

    def __init__(self, bootstrap: str, log_path: Path, *, env: dict[str, str] | None = None) -> None:
        self.bootstrap = bootstrap
        self.port = free_port()
        self.topic = f"_schemas_{self.port}"
        self.log_path = log_path
        self.extra_env = env or {}
        self.process: subprocess.Popen | None = None

    @property
    def url(self) -> str:
        return f"http://127.0.0.1:{self.port}"

    def start(self) -> float:
        """Start it and wait until it accepts writes; returns the seconds that took."""
        started = time.monotonic()
        with open(self.log_path, "ab") as log:
            self.process = subprocess.Popen(
                [str(KARAPACE_SOURCE / "run"), str(KARAPACE_BUILD), self.bootstrap, str(self.port), self.topic],
                env={**os.environ, **self.extra_env}, stdout=log, stderr=subprocess.STDOUT,
            )
        wait_until_primary(self.url, self.process)
        return time.monotonic() - started

    def stop(self) -> None:
        if self.process is not None and self.process.poll() is None:
            self.process.terminate()
            try:
                self.process.wait(timeout=20)
            except subprocess.TimeoutExpired:
                self.process.kill()
                self.process.wait()
        self.process = None


def wait_until_primary(url: str, process: subprocess.Popen | None = None, timeout_s: float = START_TIMEOUT_S) -> None:
    """Return once the registry says it is primary (before that it refuses writes with error 50003)."""
    deadline = time.monotonic() + timeout_s
    while time.monotonic() < deadline:
        if process is not None and process.poll() is not None:
            raise RuntimeError(f"the registry exited with status {process.returncode}")
        try:
            if _accepts_writes(url):
                return
        except (OSError, ValueError):
            pass
        time.sleep(0.3)
    raise TimeoutError(f"the registry at {url} was not primary within {timeout_s:g} s")


def _accepts_writes(url: str) -> bool:
    """Karapace: its health says primary and ready; a registry without /_health (Confluent's): it lists subjects."""
    try:
        with urllib.request.urlopen(f"{url}/_health", timeout=2) as reply:
            status = json.loads(reply.read()).get("status", {})
        return bool(status.get("schema_registry_is_primary") and status.get("schema_registry_ready"))
    except urllib.error.HTTPError as exc:
        if exc.code != 404:
            return False
    with urllib.request.urlopen(f"{url}/subjects", timeout=2):
        return True


@contextlib.contextmanager
def schema_registry(bootstrap: str, log_path: Path) -> Iterator[tuple[str, KarapaceProcess | None]]:
    """(URL, the process when started here) of a real registry; RegistryNotAvailable when there is none."""
    configured = os.environ.get("FACESTREAM_TEST_SCHEMA_REGISTRY_URL")
    if configured:
        yield configured, None
        return
    if docker_answers():
        from testcontainers.core.container import DockerContainer

        # The host's network: the registry reaches a broker on 127.0.0.1 (ours, or a container's mapped port).
        port = free_port()
        container = (
            DockerContainer(REGISTRY_IMAGE)
            .with_kwargs(network_mode="host")
            .with_env("SCHEMA_REGISTRY_HOST_NAME", "127.0.0.1")
            .with_env("SCHEMA_REGISTRY_LISTENERS", f"http://127.0.0.1:{port}")
            .with_env("SCHEMA_REGISTRY_KAFKASTORE_BOOTSTRAP_SERVERS", bootstrap)
        )
        with container:
            url = f"http://127.0.0.1:{port}"
            wait_until_primary(url)
            yield url, None
        return
    if not (KARAPACE_BUILD / ".done").exists():
        raise RegistryNotAvailable(
            "no FACESTREAM_TEST_SCHEMA_REGISTRY_URL, no Docker engine, and Karapace is not built in .cache/karapace "
            f"(`make setup` builds it from {KARAPACE_SOURCE})"
        )
    registry = KarapaceProcess(bootstrap, log_path)
    registry.start()
    try:
        yield registry.url, registry
    finally:
        registry.stop()
