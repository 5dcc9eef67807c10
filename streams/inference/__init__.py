"""Inference backends behind one interface; :func:`create_backend` picks one from the settings."""

from __future__ import annotations

from streams.config import Settings
from streams.inference.backend import InferenceBackend

BACKENDS = ("onnx", "triton")


def create_backend(settings: Settings) -> InferenceBackend:
    """The backend named by ``settings.backend``, not yet started.

    Imports are lazy so that a worker only loads the client library it uses.
    """
    if settings.backend == "onnx":
        from streams.inference.onnx import OnnxBackend

        return OnnxBackend(settings)
    if settings.backend == "triton":
        from streams.inference.triton import TritonBackend

        return TritonBackend(settings)
    raise ValueError(f"FACESTREAM_BACKEND={settings.backend!r} is not one of {', '.join(BACKENDS)}")
