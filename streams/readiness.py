"""Whether this worker can do useful work now: the six checks behind ``/readyz``.

A worker is ready when its inference backend can serve (Triton live with both
models ready, or the ONNX Runtime sessions loaded), the C++ re-ranker module
imports, the Schema Registry (when one is configured) answers and holds the
subjects the worker writes, the consumer holds at least one partition, a broker has answered
recently, and no input topic with a backlog has gone unanswered for long (a
stuck agent: a hung decode thread, a batch retried forever). Each check
reports a name, a verdict and a short reason, so an operator reading
``/readyz`` sees which one failed without opening the logs. Reasons never
carry settings, so secrets cannot leak through them.

Only the backend and registry checks wait (at most ``backend_timeout_s``); the broker and
progress checks read what the lag monitor and the agents last recorded, so
``/readyz`` never blocks on a dead broker.
"""

from __future__ import annotations

import asyncio
import importlib
from collections.abc import Callable
from dataclasses import asdict, dataclass
from typing import Any

import faust
from faust.exceptions import ConsumerNotStarted

from streams import metrics
from streams.config import Settings
from streams.inference.backend import InferenceBackend
from streams.kafka.lag import LagMonitor
from streams.progress import Progress
from streams.registry import RegistryUnavailable, SchemaRegistry

RERANK_MODULE = "streams._rerank"


@dataclass(frozen=True)
class CheckResult:
    name: str
    ok: bool
    detail: str

    def as_dict(self) -> dict[str, Any]:
        return asdict(self)


class Readiness:
    """Runs the readiness checks of one worker.

    ``backend`` may be set after construction (the agent creates it at start-up);
    until then the backend check fails with "not started". Times are read on
    the lag monitor's clock, which ``progress`` must share.
    """

    def __init__(
        self,
        app: faust.App,
        settings: Settings,
        lag: LagMonitor,
        progress: Progress,
        backend: InferenceBackend | None = None,
        *,
        registry: SchemaRegistry | None = None,
        schemas_pending: Callable[[], str | None] = lambda: None,
        backend_timeout_s: float = 2.0,
        rerank_module: str = RERANK_MODULE,
    ) -> None:
        """``schemas_pending``: why the worker's subjects are not registered yet, None once they are."""
        self.app = app
        self.settings = settings
        self.lag = lag
        self.progress = progress
        self.backend = backend
        self.registry = registry
        self.schemas_pending = schemas_pending
        self.backend_timeout_s = backend_timeout_s
        self.rerank_module = rerank_module
        self._rerank_imported = False

    async def check(self) -> list[CheckResult]:
        return [
            await self.check_backend(),
            self.check_reranker(),
            await self.check_registry(),
            self.check_partitions(),
            self.check_broker(),
            self.check_progress(),
        ]

    async def check_backend(self) -> CheckResult:
        backend = self.backend
        if backend is None:
            return CheckResult("backend", False, "not started")
        try:
            ok = await asyncio.wait_for(backend.is_ready(), self.backend_timeout_s)
            detail = f"{backend.kind} ready" if ok else f"{backend.kind} not ready"
        except TimeoutError:
            ok, detail = False, f"{backend.kind} did not answer within {self.backend_timeout_s:g} s"
        except Exception as exc:  # noqa: BLE001 -- any failure of the probe means "not ready", with its reason
            ok, detail = False, f"{backend.kind}: {type(exc).__name__}: {str(exc)[:200]}"
        metrics.BACKEND_UP.labels(backend=backend.kind).set(1 if ok else 0)
        return CheckResult("backend", ok, detail)

    def check_reranker(self) -> CheckResult:
        # Imported lazily: a worker without the built extension still starts and says why it is not ready.
        if not self._rerank_imported:
            try:
                importlib.import_module(self.rerank_module)
            except ImportError as exc:
                return CheckResult("reranker", False, f"cannot import {self.rerank_module}: {exc}")
            self._rerank_imported = True
        return CheckResult("reranker", True, f"{self.rerank_module} imported")

    async def check_registry(self) -> CheckResult:
        if self.registry is None:
            return CheckResult("registry", True, "none configured: single-object encoding")
        try:
            detail = await asyncio.wait_for(asyncio.to_thread(self.registry.check), self.backend_timeout_s)
        except TimeoutError:
            return CheckResult("registry", False, f"did not answer within {self.backend_timeout_s:g} s")
        except RegistryUnavailable as exc:
            return CheckResult("registry", False, str(exc))
        pending = self.schemas_pending()
        return CheckResult("registry", pending is None, pending or detail)

    def check_partitions(self) -> CheckResult:
        try:
            assigned = self.app.consumer.assignment()
        except ConsumerNotStarted:
            return CheckResult("partitions", False, "consumer not started")
        if not assigned:
            return CheckResult("partitions", False, "no partitions assigned")
        return CheckResult("partitions", True, f"{len(assigned)} partitions assigned")

    def check_broker(self) -> CheckResult:
        answered_at = self.lag.broker_answered_at
        if answered_at is None:
            return CheckResult("broker", False, "lag monitor not started")
        silent_s = self.lag.clock() - answered_at
        if silent_s > self.settings.broker_stale_s:
            return CheckResult("broker", False, f"no broker answered for {silent_s:.0f} s")
        return CheckResult("broker", True, f"broker answered {silent_s:.0f} s ago")

    def check_progress(self) -> CheckResult:
        # Waiting counts from the later of the last answer and the backlog's start: an idle worker just handed
        # work is not stalled, and neither is a busy one whose committed offsets trail its answers.
        now, stalled = self.lag.clock(), []
        for topic in sorted(self.lag.topics):
            backlog_since = self.lag.backlog_since(topic)
            if backlog_since is None:
                continue
            answered = self.progress.last_answered(topic)
            waiting_s = now - (backlog_since if answered is None else max(backlog_since, answered))
            if waiting_s > self.settings.stall_timeout_s:
                stalled.append(f"{topic}: lag {self.lag.topic_lag(topic)} unanswered for {waiting_s:.0f} s")
        if stalled:
            return CheckResult("progress", False, "; ".join(stalled))
        return CheckResult("progress", True, "no input waits unanswered")
