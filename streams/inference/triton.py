"""The ``triton`` backend: the serving models on an NVIDIA Triton server, over gRPC.

Everything Triton can tell us (tensor names, datatypes, shapes, max batch size,
model version) is read once in :meth:`TritonBackend.start` and cached, so the
models can be swapped on the server (ONNX, TensorRT plan) without touching the
worker. Each call has a deadline; failures the server may recover from
(unavailable, deadline exceeded, overloaded) are retried a bounded number of
times with exponential backoff, and anything else fails at once with a
:class:`BackendError` that names the server and the model.
"""

from __future__ import annotations

import asyncio
import logging
from collections.abc import Awaitable, Callable, Sequence
from typing import Any, TypeVar

import numpy as np
import tritonclient.grpc.aio as grpcclient
from tritonclient.utils import InferenceServerException, triton_to_np_dtype

from streams.backoff import backoff_delays
from streams.config import Settings
from streams.errors import BackendError, BackendNotReady
from streams.inference.backend import InferenceBackend, ModelInfo, TensorSpec

log = logging.getLogger(__name__)

T = TypeVar("T")

#: gRPC codes after which the same request may succeed a moment later.
TRANSIENT = frozenset({"StatusCode.UNAVAILABLE", "StatusCode.DEADLINE_EXCEEDED", "StatusCode.RESOURCE_EXHAUSTED"})


class TritonBackend(InferenceBackend):
    """Serving models on Triton; ``models`` defaults to the detector and embedder of ``settings``."""

    kind = "triton"
    square_canvas = True

    def __init__(self, settings: Settings, models: Sequence[str] | None = None) -> None:
        super().__init__()
        self.url = settings.triton_url
        self._settings = settings
        self._models = tuple(models) if models else (settings.detector_model, settings.embedder_model)
        self._timeout_s = settings.triton_timeout_s
        self._retries = settings.backend_retries
        self._client: grpcclient.InferenceServerClient | None = None

    async def start(self) -> None:
        """Check the server is live and ready and every model ready; read and cache their metadata."""
        client = grpcclient.InferenceServerClient(self.url)
        server = f"Triton at {self.url}"
        timeout = self._timeout_s
        try:
            if not await _ask(server, client.is_server_live(client_timeout=timeout)):
                raise BackendNotReady(f"{server} is not live")
            if not await _ask(server, client.is_server_ready(client_timeout=timeout)):
                raise BackendNotReady(f"{server} is live but not ready")
            info = {}
            for model in self._models:
                subject = f"model {model!r} on {server}"
                if not await _ask(subject, client.is_model_ready(model, client_timeout=timeout)):
                    raise BackendNotReady(f"{subject} is not ready")
                metadata = await _ask(subject, client.get_model_metadata(model, as_json=True, client_timeout=timeout))
                config = await _ask(subject, client.get_model_config(model, as_json=True, client_timeout=timeout))
                info[model] = _model_info(metadata, config["config"])
        except BaseException:
            await client.close()
            raise
        self._client, self._info = client, info
        log.info("triton backend ready at %s: %s", self.url, ", ".join(f"{m} v{i.version}" for m, i in info.items()))

    async def close(self) -> None:
        client, self._client, self._info = self._client, None, {}
        if client is not None:
            await client.close()

    async def is_ready(self) -> bool:
        client = self._client
        if client is None:
            return False
        try:
            if not await client.is_server_ready(client_timeout=self._timeout_s):
                return False
            for model, info in self._info.items():
                if not await client.is_model_ready(model, info.version, client_timeout=self._timeout_s):
                    return False
        except InferenceServerException:
            return False
        return True

    @property
    def where(self) -> str:
        return f"the triton backend at {self.url}"

    async def infer(self, model: str, batch: np.ndarray) -> dict[str, np.ndarray]:
        info = self.model_info(model)
        client = self._client
        (spec,) = info.inputs
        _check_batch(info, spec, batch)
        request = grpcclient.InferInput(spec.name, list(batch.shape), spec.datatype)
        request.set_data_from_numpy(np.ascontiguousarray(batch))
        wanted = [grpcclient.InferRequestedOutput(o.name) for o in info.outputs]

        def call() -> Awaitable[Any]:
            return client.infer(
                model, [request], model_version=info.version, outputs=wanted, client_timeout=self._timeout_s
            )

        result = await self._with_retries(model, call)
        return {o.name: result.as_numpy(o.name) for o in info.outputs}

    async def _with_retries(self, model: str, call: Callable[[], Awaitable[T]]) -> T:
        """Run ``call``; on a transient gRPC status, again after each of :func:`backoff_delays`, ``retries`` at most."""
        attempt = 0
        delays = backoff_delays(self._settings)
        while True:
            try:
                return await call()
            except InferenceServerException as exc:
                attempt += 1
                status = exc.status()
                if status not in TRANSIENT:
                    raise BackendError(f"Triton at {self.url} failed {model!r}: {status} {exc.message()}") from exc
                if attempt > self._retries:
                    raise BackendError(
                        f"Triton at {self.url} failed {model!r} {attempt} times, last: {status} {exc.message()}"
                    ) from exc
                delay = next(delays)
                log.warning("triton %s: %s; retry %d/%d in %.3fs", model, status, attempt, self._retries, delay)
                await asyncio.sleep(delay)


async def _ask(subject: str, question: Awaitable[T]) -> T:
    """One start-up question; any failure means not ready, said with the subject and the gRPC status."""
    try:
        return await question
    except InferenceServerException as exc:
        raise BackendNotReady(f"{subject} is not ready: {exc.status()} {exc.message()}") from exc


def _model_info(metadata: dict[str, Any], config: dict[str, Any]) -> ModelInfo:
    """ModelInfo from Triton's JSON model metadata (names, datatypes, shapes) and config (max batch)."""

    def specs(tensors: list[dict[str, Any]]) -> tuple[TensorSpec, ...]:
        return tuple(TensorSpec(t["name"], t["datatype"], tuple(int(d) for d in t["shape"])) for t in tensors)

    return ModelInfo(
        name=metadata["name"],
        version=max(metadata["versions"], key=int),
        inputs=specs(metadata["inputs"]),
        outputs=specs(metadata["outputs"]),
        max_batch_size=int(config.get("max_batch_size", 0)),
    )


def _check_batch(info: ModelInfo, spec: TensorSpec, batch: np.ndarray) -> None:
    """Reject a batch the server would refuse anyway, before it crosses the wire (a caller bug, not retryable)."""
    if batch.dtype != triton_to_np_dtype(spec.datatype):
        raise TypeError(f"{info.name}: input {spec.name!r} takes {spec.datatype}, got {batch.dtype}")
    if batch.ndim != len(spec.shape):
        raise ValueError(f"{info.name}: input {spec.name!r} has shape {spec.shape}, got {batch.shape}")
    if info.max_batch_size and len(batch) > info.max_batch_size:
        raise ValueError(f"{info.name}: batch of {len(batch)} exceeds max_batch_size {info.max_batch_size}")
