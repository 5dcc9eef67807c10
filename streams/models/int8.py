"""The int8 embedder: SFace's serving variant with its convolutions quantised, calibrated on real faces.

Why: on CPUs with int8 dot-product instructions (AVX512-VNNI, AVX-VNNI, Arm's
dot product) ONNX Runtime's int8 convolutions do four times the work per
instruction of float32 ones, and SFace per face is where the CPU path spends
its time (the detector is a tenth of it).

How: ONNX Runtime's static quantisation in QDQ form, per-channel symmetric int8
weights and uint8 activations, their ranges (min/max) calibrated on the aligned
faces of the pinned real photographs (:mod:`streams.models.photos`), each also
mirrored, re-lit and turned a few degrees so the ranges cover what a stream
sees. ``PRelu`` is split first (:mod:`streams.inference.cpu_graph`) and stays
float. So do the first five convolutions: quantised alone, each of them costs
the worst face 0.002 to 0.010 in cosine (the first one most), every later one
less than 0.0013.

Accepted only if every real face's embedding keeps cosine >= ``MIN_COSINE`` to
the float32 variant's; otherwise nothing is written and the error says by how
much it missed. Same- and different-person decisions are checked by the tests.
The file sits beside the float32 one (``1/model.int8.onnx``) and is read by the
onnx backend when ``FACESTREAM_ONNX_PRECISION=int8``.
"""

from __future__ import annotations

import asyncio
import hashlib
import tempfile
from concurrent.futures import ThreadPoolExecutor
from pathlib import Path

import cv2
import numpy as np
import onnx
import onnxruntime as ort
from onnx import version_converter
from onnxruntime.quantization import CalibrationDataReader, QuantFormat, QuantType, quantize_static
from onnxruntime.quantization.shape_inference import quant_pre_process

from streams.config import Settings
from streams.inference.cpu_graph import split_prelu
from streams.models.catalog import serving_path
from streams.models.photos import PHOTOS, fetch
from streams.models.variants import write_atomically

MIN_COSINE = 0.99
FLOAT_CONVOLUTIONS = 5  # the first convolutions, in graph order, kept float (see the module docstring)
VARIANTS_PER_FACE = 24  # calibration crops made of each real face
QDQ_OPSET = 13  # per-channel DequantizeLinear needs its axis attribute
SOURCE_KEY = "facestream.made_from"  # metadata: the float32 variant's sha256 and the recipe that made this file
RECIPE = "3"  # bump when what this module does changes, so that `models fetch` makes the file again


class Int8Rejected(RuntimeError):
    """The quantised embedder drifted too far from float32 on a real face; it was not written."""


def write_int8_embedder(settings: Settings, photos: Path) -> Path:
    """Quantise the float32 embedder variant, check it on the real faces, write it; its path.

    Idempotent: a file made from the present float32 variant by this recipe (both recorded in it) is kept.
    """
    source = serving_path(settings, settings.embedder_model)
    target = serving_path(settings, settings.embedder_model, precision="int8")
    digest = f"{hashlib.sha256(source.read_bytes()).hexdigest()} recipe {RECIPE}"
    if target.exists() and _made_from(target) == digest:
        return target
    faces = _real_faces(settings, photos)
    with tempfile.TemporaryDirectory(prefix="facestream-int8-") as tmp:
        converted, prepared, quantised = (Path(tmp) / f"{n}.onnx" for n in ("converted", "prepared", "int8"))
        onnx.save(version_converter.convert_version(split_prelu(onnx.load(source)), QDQ_OPSET), converted)
        quant_pre_process(str(converted), str(prepared), skip_symbolic_shape=True)  # folds BatchNormalization into Conv
        convolutions = [n.name for n in onnx.load(prepared).graph.node if n.op_type == "Conv"]
        quantize_static(
            str(prepared), str(quantised), _Calibration(_augmented(faces)),
            quant_format=QuantFormat.QDQ, per_channel=True,
            activation_type=QuantType.QUInt8, weight_type=QuantType.QInt8,
            op_types_to_quantize=["Conv", "Gemm"], nodes_to_exclude=convolutions[:FLOAT_CONVOLUTIONS],
        )
        worst = float(np.min(np.sum(_unit(_embed(source, faces)) * _unit(_embed(quantised, faces)), axis=1)))
        if worst < MIN_COSINE:
            raise Int8Rejected(
                f"int8 embedder: worst cosine to float32 on {len(faces)} real faces {worst:.4f} < {MIN_COSINE}"
            )
        model = onnx.load(quantised)
        onnx.helper.set_model_props(model, {SOURCE_KEY: digest, "facestream.worst_cosine": f"{worst:.5f}"})
        model.producer_name = "facestream.models.int8"
        write_atomically(model, target)
    return target


def _made_from(model: Path) -> str | None:
    props = {p.key: p.value for p in onnx.load(model).metadata_props}
    return props.get(SOURCE_KEY)


def _real_faces(settings: Settings, photos: Path) -> np.ndarray:
    """Aligned 112x112 crops of every face the float32 pipeline finds on the pinned photos."""
    from streams.inference.onnx import OnnxBackend  # the backend imports this package's catalogue
    from streams.pipeline import FacePipeline

    float32 = settings.replace(onnx_precision="float32", emit_aligned=True)

    async def crops() -> list[np.ndarray]:
        pipeline = FacePipeline(OnnxBackend(float32), float32)
        await pipeline.start()
        try:
            images = [pipeline.decode(path.read_bytes()) for path in fetch(photos, list(PHOTOS))]
            return [face.aligned for found in await pipeline.process(images) for face in found.faces]
        finally:
            await pipeline.close()

    with ThreadPoolExecutor(1) as thread:  # its own event loop, whoever calls
        return np.stack(thread.submit(asyncio.run, crops()).result())


def _augmented(faces: np.ndarray) -> np.ndarray:
    """Each face mirrored or not, brightness and contrast changed, turned, scaled and shifted a little."""
    rng = np.random.default_rng(0)
    out = []
    for face in faces:
        for k in range(VARIANTS_PER_FACE):
            pixels = (face[:, ::-1] if k % 2 else face).astype(np.float32)
            pixels = np.clip(pixels * rng.uniform(0.7, 1.3) + rng.uniform(-30, 30), 0, 255).astype(np.uint8)
            turn = cv2.getRotationMatrix2D((56, 56), rng.uniform(-8, 8), rng.uniform(0.95, 1.05))
            turn[:, 2] += rng.uniform(-3, 3, 2)
            out.append(cv2.warpAffine(pixels, turn, (112, 112), borderMode=cv2.BORDER_REFLECT))
    return np.stack(out)


class _Calibration(CalibrationDataReader):
    def __init__(self, faces: np.ndarray, batch: int = 8) -> None:
        self._batches = iter([faces[i : i + batch] for i in range(0, len(faces), batch)])

    def get_next(self) -> dict[str, np.ndarray] | None:
        batch = next(self._batches, None)
        return None if batch is None else {"faces": batch}


def _embed(model: Path, faces: np.ndarray) -> np.ndarray:
    session = ort.InferenceSession(str(model), providers=["CPUExecutionProvider"])
    return session.run(None, {session.get_inputs()[0].name: faces})[0]


def _unit(rows: np.ndarray) -> np.ndarray:
    return rows / np.linalg.norm(rows, axis=1, keepdims=True)
