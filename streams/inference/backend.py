"""The inference backend interface: named models in, named tensors out.

Both implementations (in-process ONNX Runtime and Triton) serve the same two
models, ``face_detector`` and ``face_embedder`` by default, each taking one
uint8 NHWC batch and returning its outputs by name. Everything model-specific
(decoding boxes, aligning faces) lives above this interface, in the pipeline.
"""

from __future__ import annotations

import abc
from dataclasses import dataclass

import numpy as np

from streams.errors import BackendNotReady

#: ONNX tensor types in the Triton spelling of :attr:`TensorSpec.datatype`.
ONNX_DATATYPES = {
    "tensor(uint8)": "UINT8",
    "tensor(float)": "FP32",
    "tensor(float16)": "FP16",
    "tensor(int64)": "INT64",
}


@dataclass(frozen=True)
class TensorSpec:
    name: str
    datatype: str  # Triton spelling: UINT8, FP32, ...
    shape: tuple[int, ...]  # -1 for a dynamic dimension, batch included


@dataclass(frozen=True)
class ModelInfo:
    """What a backend learnt about a model at start-up (from the file or Triton metadata)."""

    name: str
    version: str
    inputs: tuple[TensorSpec, ...]
    outputs: tuple[TensorSpec, ...]
    max_batch_size: int


class InferenceBackend(abc.ABC):
    """Runs serving models on batches; async, because the worker is."""

    kind: str  # "onnx" or "triton"
    #: The detector canvas when ``Settings.canvas_fit`` is auto: square where one shape lets a server batch
    #: any images (a GPU has pixels to spare), each image's own shape where every pixel costs CPU time.
    square_canvas: bool
    #: How many calls the backend computes at once, to the benefit of the caller who issues that many.
    parallel_calls: int = 1

    def __init__(self) -> None:
        self._info: dict[str, ModelInfo] = {}  # filled by start(), per model

    @property
    def where(self) -> str:
        """The backend, as error messages name it."""
        return f"the {self.kind} backend"

    @abc.abstractmethod
    async def start(self) -> None:
        """Load sessions or connect and read model metadata; raise BackendNotReady when it cannot."""

    @abc.abstractmethod
    async def close(self) -> None: ...

    @abc.abstractmethod
    async def is_ready(self) -> bool:
        """True when every model can serve now (used by /readyz)."""

    def model_info(self, model: str) -> ModelInfo:
        """Metadata read at start-up."""
        try:
            return self._info[model]
        except KeyError:
            state = f"started with {sorted(self._info)}" if self._info else "not started: call start() first"
            raise BackendNotReady(f"model {model!r} is not loaded by {self.where} ({state})") from None

    @abc.abstractmethod
    async def infer(self, model: str, batch: np.ndarray) -> dict[str, np.ndarray]:
        """Run ``model`` on one uint8 NHWC batch: its outputs by name, in the model's order.

        Chunking by max batch size is the caller's job.
        """
