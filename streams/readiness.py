"""Whether this worker can do useful work now: the three checks behind ``/readyz``.

A worker is ready when its inference backend can serve (Triton live with both
models ready, or the ONNX Runtime sessions loaded), the C++ re-ranker module
imports, and the consumer holds at least one partition. Each check reports a
name, a verdict and a short reason, so an operator reading ``/readyz`` sees
which one failed without opening the logs. Reasons never carry settings, so
secrets cannot leak through them.
"""

from __future__ import annotations

import asyncio
import importlib
from dataclasses import asdict, dataclass
from typing import Any

import faust
from faust.exceptions import ConsumerNotStarted

from streams import metrics
from streams.inference.backend import InferenceBackend

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
    until then the backend check fails with "not started".
    """

    def __init__(
        self,
        app: faust.App,
        backend: InferenceBackend | None = None,
        *,
        backend_timeout_s: float = 2.0,
        rerank_module: str = RERANK_MODULE,
    ) -> None:
        self.app = app
        self.backend = backend
        self.backend_timeout_s = backend_timeout_s
        self.rerank_module = rerank_module
        self._rerank_imported = False

    async def check(self) -> list[CheckResult]:
        return [await self.check_backend(), self.check_reranker(), self.check_partitions()]

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

    def check_partitions(self) -> CheckResult:
        try:
            assigned = self.app.consumer.assignment()
        except ConsumerNotStarted:
            return CheckResult("partitions", False, "consumer not started")
        if not assigned:
            return CheckResult("partitions", False, "no partitions assigned")
        return CheckResult("partitions", True, f"{len(assigned)} partitions assigned")
