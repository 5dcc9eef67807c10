"""A real ``facestream worker`` (or ``facestream api``) in a subprocess, for integration tests, benchmarks and crash tests.

The worker gets its whole configuration through ``FACESTREAM_*`` variables built
from a :class:`Settings`, exactly as an operator would run it.
"""

from __future__ import annotations

import json
import os
import signal
import subprocess
import sys
import time
import urllib.error
import urllib.request
from pathlib import Path

from streams.config import Settings
from tests.support import REPO
from tests.support.ports import free_port


class WorkerProcess:
    """Start, wait for, stop or SIGKILL one worker; its output goes to ``log_path``."""

    def __init__(
        self,
        settings: Settings,
        log_path: Path,
        *,
        module: str = "streams",
        env: dict[str, str] | None = None,
        command: str = "worker",
    ) -> None:
        """``module`` is run as ``python -m module worker``: a test may name a wrapper that injects a fault.

        ``command="api"`` runs ``facestream api`` instead; its pages are then the API's, on its port.
        """
        if command == "api":
            settings = settings.replace(api_port=free_port()) if settings.api_port == Settings.api_port else settings
        elif settings.web_port == Settings.web_port:
            settings = settings.replace(web_port=free_port())
        self.settings = settings
        self.log_path = log_path
        self.module = module
        self.command = command
        #: Where /readyz, /metrics and the other pages answer.
        self.port = settings.api_port if command == "api" else settings.web_port
        self.extra_env = env or {}
        self.process: subprocess.Popen | None = None

    def start(self) -> WorkerProcess:
        env = {**os.environ, **self.settings.to_env(), "PYTHONUNBUFFERED": "1", **self.extra_env}
        log = open(self.log_path, "ab")
        self.process = subprocess.Popen(
            [sys.executable, "-m", self.module, self.command], cwd=REPO, env=env, stdout=log, stderr=subprocess.STDOUT
        )
        log.close()
        return self

    def readyz(self) -> tuple[int, dict]:
        """Status and JSON body of ``/readyz``; (0, {}) while nothing answers."""
        url = f"http://127.0.0.1:{self.port}/readyz"
        try:
            with urllib.request.urlopen(url, timeout=2) as reply:
                return reply.status, json.loads(reply.read())
        except urllib.error.HTTPError as exc:
            return exc.code, json.loads(exc.read() or b"{}")
        except (OSError, ValueError):
            return 0, {}

    def status_of(self, path: str) -> int:
        """HTTP status of ``GET path`` on the worker's web server."""
        try:
            with urllib.request.urlopen(f"http://127.0.0.1:{self.port}{path}", timeout=5) as reply:
                return reply.status
        except urllib.error.HTTPError as exc:
            return exc.code

    def metrics(self) -> str:
        """The Prometheus exposition served at ``/metrics``."""
        with urllib.request.urlopen(f"http://127.0.0.1:{self.port}/metrics", timeout=5) as reply:
            return reply.read().decode()

    def wait_ready(self, timeout_s: float = 120.0) -> None:
        deadline = time.monotonic() + timeout_s
        while time.monotonic() < deadline:
            if self.process is None or self.process.poll() is not None:
                raise RuntimeError(f"worker exited early; log:\n{self.tail()}")
            if self.readyz()[0] == 200:
                return
            time.sleep(0.5)
        raise TimeoutError(f"worker not ready after {timeout_s} s; /readyz={self.readyz()}; log:\n{self.tail()}")

    def alive(self) -> bool:
        return self.process is not None and self.process.poll() is None

    def stop(self, timeout_s: float = 30.0) -> None:
        """Graceful shutdown (SIGTERM), SIGKILL if it hangs."""
        if self.alive():
            self.process.send_signal(signal.SIGTERM)
            try:
                self.process.wait(timeout_s)
            except subprocess.TimeoutExpired:
                self.kill()

    def terminate(self, timeout_s: float = 30.0) -> tuple[int, float]:
        """SIGTERM and wait: (exit status, seconds from the signal to the exit); SIGKILL and raise if it hangs."""
        assert self.alive(), f"worker not running; log:\n{self.tail()}"
        signalled = time.monotonic()
        self.process.send_signal(signal.SIGTERM)
        try:
            status = self.process.wait(timeout_s)
        except subprocess.TimeoutExpired:
            self.kill()
            raise AssertionError(f"worker still running {timeout_s} s after SIGTERM; log:\n{self.tail()}") from None
        return status, time.monotonic() - signalled

    def kill(self) -> None:
        """SIGKILL: no shutdown hooks, no final commit — a crash."""
        if self.alive():
            self.process.kill()
            self.process.wait(10)

    def tail(self, lines: int = 40) -> str:
        try:
            return "\n".join(self.log_path.read_text(errors="replace").splitlines()[-lines:])
        except OSError:
            return ""

    def __enter__(self) -> WorkerProcess:
        self.start()
        try:
            self.wait_ready()
        except BaseException:
            self.kill()  # a worker that never got ready must not outlive its test
            raise
        return self

    def __exit__(self, *exc: object) -> None:
        self.stop()
