"""In-process ONNX Runtime backend: the embedded default, no server needed.

It reads the very files Triton serves (``<model_repository>/<model>/1/model.onnx``)
so both backends run identical graphs (rewritten in memory only where ONNX
Runtime's CPU kernels are slow, with unchanged outputs: :mod:`.cpu_graph`).
Sessions are created in :meth:`start`.

Threads: every run is single-threaded, and as many runs go at once as there are
cores (``Settings.onnx_threads``), each on its own thread of a dedicated pool.
ONNX Runtime releases the GIL, so the event loop keeps consuming and producing
while they compute. Small convolutions (a 112x112 face, a 640x352 canvas) split
over several intra-op threads spend much of their time synchronising, and idle
intra-op threads spin, taking the cores the decode pool needs; independent
single-threaded runs keep every core busy with work. The callers
(:func:`streams.pipeline.infer_chunked`, the detector's calls) issue that many
pieces at once.
"""

from __future__ import annotations

import asyncio
import os
from concurrent.futures import ThreadPoolExecutor
from pathlib import Path

import numpy as np
import onnx
import onnxruntime as ort
from onnxruntime.capi.onnxruntime_pybind11_state import Fail, InvalidArgument, RuntimeException

from streams.config import Settings
from streams.errors import BackendError, BackendNotReady
from streams.inference.backend import ONNX_DATATYPES, InferenceBackend, ModelInfo, TensorSpec
from streams.inference.cpu_graph import split_prelu
from streams.models.catalog import SERVING_VERSION, serving_path

#: Largest batch of one session run, per model. On CPU a larger batch buys these models no throughput, it
#: costs some: one input's activations stay in the core's caches, several do not (one thread, CPU time per
#: item at batch 1, 4 and 8 -- embedder int8: 14.7, 20.5, 24.3 ms; float32: 18.7, 28.9, 31.0 ms; detector
#: on a 640x352 canvas at 1, 2, 4: 6.6, 8.7, 11.0 ms). And ONNX Runtime's arena keeps the activations of
#: the largest run it ever made: about 40 MB per 640x640 canvas and 9 MB per 112x112 face. Parallel runs,
#: one per core, keep the cores busy instead (see the module docstring).
DETECTOR_MAX_BATCH = 1
EMBEDDER_MAX_BATCH = 1


class OnnxBackend(InferenceBackend):
    kind = "onnx"
    square_canvas = False

    def __init__(self, settings: Settings, models: tuple[str, ...] | None = None, max_batch_size: int | None = None):
        """``max_batch_size``, when given, is every model's limit instead of the per-model defaults."""
        super().__init__()
        self._settings = settings
        self._models = models or (settings.detector_model, settings.embedder_model)
        defaults = {settings.detector_model: DETECTOR_MAX_BATCH, settings.embedder_model: EMBEDDER_MAX_BATCH}
        self._max_batch = {m: max_batch_size or defaults.get(m, DETECTOR_MAX_BATCH) for m in self._models}
        self._sessions: dict[str, ort.InferenceSession] = {}
        self.parallel_calls = settings.onnx_threads or len(os.sched_getaffinity(0))
        self._runner = ThreadPoolExecutor(self.parallel_calls, thread_name_prefix="onnx")

    async def start(self) -> None:
        await asyncio.get_running_loop().run_in_executor(self._runner, self._load)

    async def close(self) -> None:
        self._sessions.clear()

    async def is_ready(self) -> bool:
        return all(m in self._sessions for m in self._models)

    async def infer(self, model: str, batch: np.ndarray) -> dict[str, np.ndarray]:
        return await asyncio.get_running_loop().run_in_executor(self._runner, self.run, model, batch)

    def run(self, model: str, batch: np.ndarray) -> dict[str, np.ndarray]:
        """Synchronous inference, for callers without an event loop (benchmarks); ``infer`` wraps it."""
        session = self._sessions.get(model)
        if session is None:
            raise BackendNotReady(f"model {model!r} is not loaded (call start() first)")
        info = self._info[model]
        try:
            outputs = session.run(None, {info.inputs[0].name: batch})
        except (Fail, InvalidArgument, RuntimeException) as exc:
            raise BackendError(
                f"onnxruntime failed on {model!r} with a {batch.dtype} batch of shape {batch.shape}: {exc}"
            ) from exc
        return {spec.name: out for spec, out in zip(info.outputs, outputs, strict=True)}

    def _load(self) -> None:
        options = ort.SessionOptions()
        options.intra_op_num_threads = 1  # parallel runs instead: see the module docstring
        options.inter_op_num_threads = 1
        for model in self._models:
            precision = self._settings.onnx_precision if model == self._settings.embedder_model else "float32"
            path = serving_path(self._settings, model, precision)
            if not path.exists():
                raise BackendNotReady(f"{path} does not exist; run `facestream models fetch` first")
            graph = split_prelu(onnx.load(path)).SerializeToString()
            session = ort.InferenceSession(graph, sess_options=options, providers=["CPUExecutionProvider"])
            self._info[model] = _model_info(model, path, session, self._max_batch[model])
            self._sessions[model] = session


def _model_info(model: str, path: Path, session: ort.InferenceSession, max_batch_size: int) -> ModelInfo:
    def spec(arg: ort.NodeArg) -> TensorSpec:
        if arg.type not in ONNX_DATATYPES:
            raise BackendNotReady(f"{path}: tensor {arg.name} has unsupported type {arg.type}")
        shape = tuple(d if isinstance(d, int) else -1 for d in arg.shape)
        return TensorSpec(arg.name, ONNX_DATATYPES[arg.type], shape)

    inputs = tuple(spec(a) for a in session.get_inputs())
    if len(inputs) != 1:
        raise BackendNotReady(f"{path}: a serving model takes one input, this one takes {len(inputs)}")
    return ModelInfo(model, SERVING_VERSION, inputs, tuple(spec(a) for a in session.get_outputs()), max_batch_size)
