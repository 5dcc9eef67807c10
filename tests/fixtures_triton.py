"""pytest plugin: a real Triton server serving the repository's models, one per test session.

``triton_url`` is ``TRITON_GRPC_URL`` when set (a server someone runs, e.g. the
GPU image); otherwise :func:`triton_server` starts ``scripts/triton_serve.py``
(PyTriton, CPU) from ``.venv-triton`` on free local ports and stops it after the
session. Benchmarks may use :func:`triton_server` directly. Prerequisites, both
made by ``make setup``: ``scripts/triton-venv`` and ``facestream models fetch``.
"""

from __future__ import annotations

import contextlib
import os
import signal
import subprocess
import tempfile
import time
from collections.abc import Iterator
from pathlib import Path

import pytest

from streams.config import Settings
from streams.models.catalog import SERVING_VERSION
from tests.ports import free_ports

ROOT = Path(__file__).resolve().parents[1]
TRITON_PYTHON = ROOT / ".venv-triton" / "bin" / "python"
SERVE = ROOT / "scripts" / "triton_serve.py"
STARTUP_TIMEOUT_S = 180.0
STOP_TIMEOUT_S = 60.0


class TritonServerError(RuntimeError):
    """The local test server could not be started; the message carries the reason or the server's log tail."""


@pytest.fixture(scope="session")
def triton_url() -> Iterator[str]:
    """gRPC address (host:port) of a live Triton server whose models are ready."""
    external = os.environ.get("TRITON_GRPC_URL")
    if external:
        yield external
        return
    try:
        with triton_server() as url:
            yield url
    except TritonServerError as exc:  # raised only while starting: pytest does not throw test failures in here
        pytest.fail(str(exc), pytrace=False)


@contextlib.contextmanager
def triton_server(repository: Path | None = None) -> Iterator[str]:
    """Run ``scripts/triton_serve.py`` on free local ports until the block ends; yields the gRPC address."""
    repository = repository or ROOT / Settings.from_env().model_repository
    _check_prerequisites(repository)
    grpc_port, http_port, metrics_port = free_ports(3)
    with tempfile.TemporaryDirectory(prefix="facestream-triton-") as workdir:
        ready_file, log_path = Path(workdir) / "ready", Path(workdir) / "server.log"
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
        raise TritonServerError(f"{TRITON_PYTHON} is missing: run scripts/triton-venv (or set TRITON_GRPC_URL)")
    for config in repository.glob("*/config.pbtxt"):
        path = config.parent / SERVING_VERSION / "model.onnx"
        if not path.exists():
            raise TritonServerError(f"{path} is missing: run `facestream models fetch`")


def _wait_ready(server: subprocess.Popen, ready_file: Path, log_path: Path) -> None:
    deadline = time.monotonic() + STARTUP_TIMEOUT_S
    while not ready_file.exists():
        if server.poll() is not None:
            raise TritonServerError(f"Triton server exited with {server.returncode}:\n{_tail(log_path)}")
        if time.monotonic() > deadline:
            raise TritonServerError(f"Triton server not ready after {STARTUP_TIMEOUT_S:.0f}s:\n{_tail(log_path)}")
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
