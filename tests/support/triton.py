"""A real Triton server serving the repository's models, started on free local ports.

:func:`triton_server` runs ``python -m scripts.triton_serve`` (PyTriton, CPU) from
``.venv-triton`` and stops it when the block ends; the ``triton_url`` fixture
(:mod:`tests.support.fixtures.triton`) and benchmarks use it. Prerequisites, both
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

from streams.config import Settings
from streams.models.catalog import SERVING_VERSION
from tests.support import REPO
from tests.support.ports import free_ports

TRITON_PYTHON = REPO / ".venv-triton" / "bin" / "python"
SERVE_MODULE = "scripts.triton_serve"
STARTUP_TIMEOUT_S = 180.0
STOP_TIMEOUT_S = 60.0


class TritonServerError(RuntimeError):
    """The local test server could not be started; the message carries the reason or the server's log tail."""


@contextlib.contextmanager
def triton_server(repository: Path | None = None) -> Iterator[str]:
    """Run ``scripts.triton_serve`` on free local ports until the block ends; yields the gRPC address."""
    repository = repository or REPO / Settings.from_env().model_repository
    _check_prerequisites(repository)
    grpc_port, http_port, metrics_port = free_ports(3)
    with tempfile.TemporaryDirectory(prefix="facestream-triton-") as workdir:
        ready_file, log_path = Path(workdir) / "ready", Path(workdir) / "server.log"
        with log_path.open("wb") as log:
            server = subprocess.Popen(
                [
                    str(TRITON_PYTHON), "-m", SERVE_MODULE, "--model-repository", str(repository),
                    "--grpc-port", str(grpc_port), "--http-port", str(http_port), "--metrics-port", str(metrics_port),
                    "--ready-file", str(ready_file),
                ],
                cwd=REPO, stdout=log, stderr=subprocess.STDOUT, start_new_session=True,
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
