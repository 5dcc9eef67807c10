"""Each serving variant computes exactly what its upstream graph computes, on real photographs."""

import cv2
import numpy as np
import onnx
import onnxruntime as ort
import pytest

from streams.models import catalog
from streams.models.catalog import serving_path
from streams.models.families import SFACE, YUNET
from streams.models.variants import detector_variant
from streams.vision.align import align_faces
from streams.vision.detect import FaceFilter, decode_yunet, select_faces
from streams.vision.letterbox import letterbox_batch
from tests.support.photos import PORTRAITS
from tests.unit.serving_models import serving_settings

CANVAS = 640


@pytest.fixture(scope="module")
def settings():
    return serving_settings()


@pytest.fixture(scope="module")
def sessions(settings):
    def load(path):
        return ort.InferenceSession(str(path), providers=["CPUExecutionProvider"])

    return {
        "detector": load(serving_path(settings, settings.detector_model)),
        "embedder": load(serving_path(settings, settings.embedder_model)),
        "yunet": load(settings.model_path / catalog.YUNET.filename),
        "sface": load(settings.model_path / catalog.SFACE.filename),
    }


@pytest.fixture(scope="module")
def canvas(photo_bytes):
    images = [cv2.imdecode(np.frombuffer(photo_bytes[n], np.uint8), cv2.IMREAD_COLOR) for n in PORTRAITS]
    batch, scales = letterbox_batch(images, CANVAS)
    return images, batch, scales


def test_detector_variant_equals_yunet_on_real_photos(sessions, canvas):
    _, batch, _ = canvas
    ours = sessions["detector"].run(list(YUNET.outputs), {YUNET.input: batch})  # whole batch in one call
    for i in range(len(batch)):
        nchw = batch[i : i + 1].transpose(0, 3, 1, 2).astype(np.float32)  # YuNet: BGR, 0..255, no normalisation
        upstream = sessions["yunet"].run(list(YUNET.outputs), {"input": nchw})
        for name, a, b in zip(YUNET.outputs, ours, upstream, strict=True):
            assert a[i : i + 1].shape == b.shape, name
            assert np.abs(a[i : i + 1] - b).max() <= 1e-4, name


def test_embedder_variant_equals_sface_on_real_faces(sessions, canvas, settings):
    images, batch, scales = canvas
    outputs = dict(
        zip(YUNET.outputs, sessions["detector"].run(list(YUNET.outputs), {YUNET.input: batch}), strict=True)
    )
    limits = FaceFilter(0.6, 0.3, 20, 1)
    faces = np.concatenate(
        [
            align_faces(
                img,
                select_faces(
                    decode_yunet(outputs, i, (CANVAS, CANVAS), 0.6, YUNET.strides), scales[i], img.shape[:2], limits
                ).landmarks,
            )
            for i, img in enumerate(images)
        ]
    )
    assert len(faces) == len(images)
    (ours,) = sessions["embedder"].run([SFACE.output], {SFACE.input: faces})
    for k, face in enumerate(faces):
        nchw = face[None, :, :, ::-1].transpose(0, 3, 1, 2).astype(np.float32)  # SFace: RGB, 0..255 (normalises inside)
        (upstream,) = sessions["sface"].run(None, {"data": nchw})
        assert np.abs(ours[k] - upstream[0]).max() <= 1e-4


def test_detector_variant_takes_any_batch_and_multiple_of_32_size_without_shape_warnings(settings, capfd):
    options = ort.SessionOptions()
    options.log_severity_level = 1  # info and above: shape-mismatch warnings would show
    session = ort.InferenceSession(
        str(serving_path(settings, settings.detector_model)), options, providers=["CPUExecutionProvider"]
    )
    capfd.readouterr()
    rng = np.random.default_rng(0)
    for n, h, w in [(1, 640, 640), (3, 320, 480), (2, 96, 64)]:
        outputs = dict(
            zip(
                YUNET.outputs,
                session.run(list(YUNET.outputs), {YUNET.input: rng.integers(0, 256, (n, h, w, 3), np.uint8)}),
                strict=True,
            )
        )
        for stride in (8, 16, 32):
            anchors = (h // stride) * (w // stride)
            assert outputs[f"cls_{stride}"].shape == (n, anchors, 1)
            assert outputs[f"kps_{stride}"].shape == (n, anchors, 10)
    assert "shape" not in capfd.readouterr().err.lower()


def test_batched_rows_equal_single_rows(sessions, canvas):
    _, batch, _ = canvas
    together = sessions["detector"].run(["bbox_8"], {YUNET.input: batch})[0]
    alone = sessions["detector"].run(["bbox_8"], {YUNET.input: batch[2:3]})[0]
    assert np.abs(together[2] - alone[0]).max() <= 1e-4


def test_variant_declares_its_wire_contract(settings):
    detector = onnx.load(serving_path(settings, settings.detector_model))
    (wire,) = detector.graph.input
    assert wire.name == YUNET.input
    assert wire.type.tensor_type.elem_type == onnx.TensorProto.UINT8
    assert [d.dim_param or d.dim_value for d in wire.type.tensor_type.shape.dim] == ["batch", "height", "width", 3]
    embedder = onnx.load(serving_path(settings, settings.embedder_model))
    assert [i.name for i in embedder.graph.input] == [SFACE.input]  # weights are no longer listed as inputs
    assert [o.name for o in embedder.graph.output] == [SFACE.output]


def test_generating_twice_gives_the_same_graph(settings):
    original = onnx.load(settings.model_path / catalog.YUNET.filename)
    assert detector_variant(original).SerializeToString() == detector_variant(original).SerializeToString()
