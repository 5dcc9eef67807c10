"""pytest plugin: a real Triton server serving the repository's models, one per test session.

``triton_url`` is ``TRITON_GRPC_URL`` when set (a server someone runs, e.g. the
GPU image); otherwise the fixture starts ``scripts/triton_serve.py`` (PyTriton,
CPU) from ``.venv-triton`` on free local ports and stops it after the session.
Prerequisites, both made by ``make setup``: ``scripts/triton-venv`` and
``facestream models fetch``.
"""

from __future__ import annotations

import os
import signal
import socket
import subprocess
import time
from collections.abc import Iterator
from pathlib import Path

import pytest

from streams.config import Settings
from streams.models.catalog import SERVING_VERSION

ROOT = Path(__file__).resolve().parents[1]
TRITON_PYTHON = ROOT / ".venv-triton" / "bin" / "python"
SERVE = ROOT / "scripts" / "triton_serve.py"
STARTUP_TIMEOUT_S = 180.0
STOP_TIMEOUT_S = 60.0


@pytest.fixture(scope="session")
def triton_url(tmp_path_factory: pytest.TempPathFactory) -> Iterator[str]:
    """gRPC address (host:port) of a live Triton server whose models are ready."""
    external = os.environ.get("TRITON_GRPC_URL")
    if external:
        yield external
        return
    repository = ROOT / Settings.from_env().model_repository
    _check_prerequisites(repository)
    workdir = tmp_path_factory.mktemp("triton")
    grpc_port, http_port, metrics_port = _free_ports(3)
    ready_file, log_path = workdir / "ready", workdir / "server.log"
    with log_path.open("wb") as log:
        server = subprocess.Popen(
            [
                str(TRITON_PYTHON), str(SERVE), "--model-repository", str(repository),
                "--grpc-port", str(grpc_port), "--http-port", str(http_port), "--metrics-port", str(metrics_port),
                "--ready-file", str(ready_file),
            ],
            cwd=ROOT, stdout=log, stderr=subprocess.STDOUT, start_new_session=True,
        )
    try:
        _wait_ready(server, ready_file, log_path)
        yield f"127.0.0.1:{grpc_port}"
    finally:
        _stop(server)


def _check_prerequisites(repository: Path) -> None:
    if not TRITON_PYTHON.exists():
        pytest.fail(f"{TRITON_PYTHON} is missing: run scripts/triton-venv (or set TRITON_GRPC_URL)", pytrace=False)
    for config in repository.glob("*/config.pbtxt"):
        path = config.parent / SERVING_VERSION / "model.onnx"
        if not path.exists():
            pytest.fail(f"{path} is missing: run `facestream models fetch`", pytrace=False)


def _free_ports(count: int) -> list[int]:
    sockets = [socket.socket() for _ in range(count)]
    try:
        for s in sockets:
            s.bind(("127.0.0.1", 0))
        return [s.getsockname()[1] for s in sockets]
    finally:
        for s in sockets:
            s.close()


def _wait_ready(server: subprocess.Popen, ready_file: Path, log_path: Path) -> None:
    deadline = time.monotonic() + STARTUP_TIMEOUT_S
    while not ready_file.exists():
        if server.poll() is not None:
            pytest.fail(f"Triton server exited with {server.returncode}:\n{_tail(log_path)}", pytrace=False)
        if time.monotonic() > deadline:
            pytest.fail(f"Triton server not ready after {STARTUP_TIMEOUT_S:.0f}s:\n{_tail(log_path)}", pytrace=False)
        time.sleep(0.2)


def _stop(server: subprocess.Popen) -> None:
    """SIGTERM lets PyTriton stop tritonserver and clean its workspace; the whole group is killed if it hangs."""
    if server.poll() is None:
        server.send_signal(signal.SIGTERM)
        try:
            server.wait(STOP_TIMEOUT_S)
        except subprocess.TimeoutExpired:
            os.killpg(server.pid, signal.SIGKILL)
            server.wait()


def _tail(path: Path, lines: int = 40) -> str:
    return "\n".join(path.read_text(errors="replace").splitlines()[-lines:])
