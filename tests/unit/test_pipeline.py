"""The done-means of the face pipeline, on real photographs and the real models."""

import itertools

import cv2
import numpy as np
import pytest

import streams.pipeline
from streams.errors import BackendError, ErrorCode, ImageRejected
from streams.inference.backend import InferenceBackend, ModelInfo, TensorSpec
from streams.inference.onnx import OnnxBackend
from streams.models import catalog
from streams.models.families import SFACE
from streams.pipeline import FacePipeline, ModelIdentity
from streams.vision.letterbox import canvas_shape, letterbox_batch, letterbox_scale
from tests.support.photos import OBAMA, PORTRAITS
from tests.unit.scrfd import scrfd_outputs
from tests.unit.serving_models import serving_settings


@pytest.fixture
async def pipeline():
    p = FacePipeline(OnnxBackend(serving_settings()), serving_settings())
    await p.start()
    yield p
    await p.close()


@pytest.fixture(scope="module")
def images(photo_bytes):
    p = FacePipeline(OnnxBackend(serving_settings()), serving_settings())
    return {name: p.decode(photo_bytes[name]) for name in PORTRAITS}


@pytest.fixture
async def faces(pipeline, images):
    results = await pipeline.process([images[n] for n in PORTRAITS])  # one batch
    return dict(zip(PORTRAITS, results, strict=True))


async def test_each_portrait_has_exactly_one_confident_face(faces):
    for name, found in faces.items():
        assert len(found.faces) == 1, name
        assert found.faces[0].score > 0.9, name


async def test_embeddings_are_unit_float32_of_the_model_dimension(faces, pipeline):
    assert pipeline.identity.dim == 128
    for found in faces.values():
        embedding = found.faces[0].embedding
        assert embedding.dtype == np.float32 and embedding.shape == (128,)
        assert np.linalg.norm(embedding) == pytest.approx(1.0, abs=1e-5)


async def test_same_person_is_close_and_different_people_are_far(faces):
    emb = {name: found.faces[0].embedding for name, found in faces.items()}
    for a, b in itertools.combinations(OBAMA, 2):
        assert float(emb[a] @ emb[b]) > 0.5, (a, b)
    for obama in OBAMA:
        assert float(emb[obama] @ emb["biden.jpg"]) < SFACE.same_person
        assert float(emb[obama] @ emb["astronaut.png"]) < SFACE.same_person


async def test_embeddings_agree_with_opencv_face_detector_and_recognizer(faces, images):
    """OpenCV's FaceDetectorYN sees what our detector sees (the letterboxed, shrunk picture);
    FaceRecognizerSF.alignCrop + feature then run on the original pixels, as our aligner does."""
    settings = serving_settings()
    yunet_file = str(settings.model_path / catalog.YUNET.filename)
    detector = cv2.FaceDetectorYN.create(yunet_file, "", (320, 320), 0.6, 0.3, 5000)
    recognizer = cv2.FaceRecognizerSF.create(str(settings.model_path / catalog.SFACE.filename), "")
    for name, image in images.items():
        h, w = image.shape[:2]
        scale = letterbox_scale(h, w, settings.canvas_size)
        seen = (
            cv2.resize(image, (round(w * scale), round(h * scale)), interpolation=cv2.INTER_AREA)
            if scale < 1
            else image
        )
        detector.setInputSize((seen.shape[1], seen.shape[0]))
        _, found = detector.detect(seen)
        assert found is not None and len(found) == 1, name
        row = found[0].copy()
        row[:14] /= scale
        reference = recognizer.feature(recognizer.alignCrop(image, row)).ravel()
        reference /= np.linalg.norm(reference)
        assert float(reference @ faces[name].faces[0].embedding) >= 0.99, name


async def test_a_picture_without_a_face_has_zero_faces_not_an_error(pipeline, images):
    sky = cv2.resize(images["astronaut.png"][:60, 300:], (400, 300))  # the top strip: background, no face
    empty, with_face = await pipeline.process([sky, images["astronaut.png"]])
    assert empty.faces == []
    assert len(with_face.faces) == 1


async def test_batching_and_chunking_do_not_change_results(images):
    settings = serving_settings()
    order = list(PORTRAITS)
    small = FacePipeline(OnnxBackend(settings, max_batch_size=2), settings)
    await small.start()
    chunked = await small.process([images[n] for n in order])
    for name, result in zip(order, chunked, strict=True):
        (alone,) = await small.process([images[name]])
        np.testing.assert_allclose(result.faces[0].embedding, alone.faces[0].embedding, atol=1e-5)
        np.testing.assert_allclose(result.faces[0].bbox, alone.faces[0].bbox, atol=1e-3)


async def test_detection_holds_the_canvases_of_parallel_calls_only(images, monkeypatch):
    """Five images at a max batch of 2 on two parallel runs: canvases of 2, 2 and 1 images, at most two alive."""
    settings = serving_settings().replace(canvas_fit="square", onnx_threads=2)
    pipeline = FacePipeline(OnnxBackend(settings, max_batch_size=2), settings)
    await pipeline.start()
    canvases, live, most = [], 0, 0
    infer = pipeline.backend.infer

    def recorded(chunk, canvas, shape):
        nonlocal live, most
        canvases.append(len(chunk))
        live += 1
        most = max(most, live)
        return letterbox_batch(chunk, canvas, shape)

    async def detected(model, batch):
        nonlocal live
        try:
            return await infer(model, batch)
        finally:
            live -= model == settings.detector_model

    monkeypatch.setattr(streams.pipeline, "letterbox_batch", recorded)
    monkeypatch.setattr(pipeline.backend, "infer", detected)
    results = await pipeline.process([images[n] for n in PORTRAITS])
    assert sorted(canvases) == [1, 2, 2] and most == 2
    assert [len(r.faces) for r in results] == [1] * len(PORTRAITS)


async def test_images_of_one_canvas_shape_share_detector_calls_and_answer_in_input_order(images, monkeypatch):
    """On the onnx backend each image is detected on its own shape: equal shapes share calls, others do not."""
    settings = serving_settings()
    pipeline = FacePipeline(OnnxBackend(settings, max_batch_size=2), settings)
    await pipeline.start()
    names = ["obama.jpg", "astronaut.png", "obama.jpg", "astronaut.png", "obama.jpg"]
    calls = []

    def recorded(chunk, canvas, shape):
        calls.append((len(chunk), shape))
        return letterbox_batch(chunk, canvas, shape)

    monkeypatch.setattr(streams.pipeline, "letterbox_batch", recorded)
    together = await pipeline.process([images[n] for n in names])
    obama = canvas_shape(*images["obama.jpg"].shape[:2], settings.canvas_size, square=False)
    astronaut = canvas_shape(*images["astronaut.png"].shape[:2], settings.canvas_size, square=False)
    assert obama != astronaut and obama[0] * obama[1] < settings.canvas_size**2
    assert sorted(calls) == sorted([(2, obama), (1, obama), (2, astronaut)])
    for name, result in zip(names, together, strict=True):
        (alone,) = await pipeline.process([images[name]])
        np.testing.assert_allclose(result.faces[0].embedding, alone.faces[0].embedding, atol=1e-6)


async def test_aligned_crops_are_attached_only_when_asked(images):
    settings = serving_settings().replace(emit_aligned=True)
    pipeline = FacePipeline(OnnxBackend(settings), settings)
    await pipeline.start()
    (result,) = await pipeline.process([images["obama.jpg"]])
    crop = result.faces[0].aligned
    assert crop.shape == (112, 112, 3) and crop.dtype == np.uint8 and crop.std() > 10


async def test_timings_cover_every_stage(faces):
    timings = next(iter(faces.values())).timings_ms
    assert set(timings) == {"letterbox", "detect", "decode_boxes", "align", "embed", "total"}
    assert all(v > 0 for v in timings.values())
    # Detector calls overlap, so their stages may add up to more than passed; align and embed follow them.
    assert timings["align"] + timings["embed"] < timings["total"] <= sum(v for k, v in timings.items() if k != "total")


async def test_empty_batch(pipeline):
    assert await pipeline.process([]) == []


async def test_decode_is_a_separate_step_with_typed_errors(pipeline):
    with pytest.raises(ImageRejected) as info:
        pipeline.decode(b"GIF89a not supported")
    assert info.value.code is ErrorCode.UNKNOWN_IMAGE_FORMAT


def test_unknown_detector_format_is_refused():
    with pytest.raises(ValueError, match="detector_format"):
        FacePipeline(OnnxBackend(serving_settings()), serving_settings().replace(detector_format="retina"))


class _ScrfdDeployment(InferenceBackend):
    """An SCRFD detector finding one encoded face, beside an SFace embedder: metadata as Triton would give it."""

    kind = "triton"
    square_canvas = True

    def __init__(self, settings, detector_outputs):
        super().__init__()
        self._settings = settings
        self._detections = {str(i): out for i, out in enumerate(detector_outputs)}  # exports number their outputs
        self._info = {
            settings.detector_model: ModelInfo(
                settings.detector_model,
                "3",
                (TensorSpec("input.1", "UINT8", (-1, -1, -1, 3)),),
                tuple(TensorSpec(name, "FP32", (-1, -1, out.shape[-1])) for name, out in self._detections.items()),
                1,
            ),
            settings.embedder_model: ModelInfo(
                settings.embedder_model,
                "2",
                (TensorSpec(SFACE.input, "UINT8", (-1, 112, 112, 3)),),
                (TensorSpec(SFACE.output, "FP32", (-1, SFACE.dim)),),
                8,
            ),
        }

    async def start(self) -> None: ...

    async def close(self) -> None: ...

    async def is_ready(self) -> bool:
        return True

    async def infer(self, model, batch):
        if model == self._settings.detector_model:
            return dict(self._detections)
        return {SFACE.output: np.ones((len(batch), SFACE.dim), np.float32)}


async def test_an_scrfd_deployment_decodes_scrfd_outputs_and_says_so_in_its_identity():
    settings = serving_settings().replace(detector_format="scrfd", canvas_size=320)
    box = np.array([100, 80, 180, 190], np.float32)
    marks = np.array([[120, 120], [160, 121], [140, 145], [125, 170], [158, 171]], np.float32)
    cell = (136 // 16) * (320 // 16) + 140 // 16
    pipeline = FacePipeline(_ScrfdDeployment(settings, scrfd_outputs([(16, cell, 1, box, marks)], 320)), settings)
    (result,) = await pipeline.process([np.zeros((320, 320, 3), np.uint8)])
    (face,) = result.faces
    np.testing.assert_allclose(face.bbox, box, atol=1e-3)
    np.testing.assert_allclose(face.landmarks, marks, atol=1e-3)
    assert pipeline.identity == ModelIdentity(detector="scrfd", embedder="sface-2021dec", dim=128, version="2")


@pytest.mark.parametrize("failing", ["detector", "embedder"])
async def test_a_backend_failure_in_parallel_calls_is_raised_as_itself(images, monkeypatch, failing):
    """Not wrapped in an ExceptionGroup: the embed agent retries a BackendError and holds the events."""
    settings = serving_settings().replace(onnx_threads=2)
    pipeline = FacePipeline(OnnxBackend(settings), settings)
    await pipeline.start()
    infer = pipeline.backend.infer
    model = settings.detector_model if failing == "detector" else settings.embedder_model

    async def down(name, batch):
        if name == model:
            raise BackendError("the backend went away")
        return await infer(name, batch)

    monkeypatch.setattr(pipeline.backend, "infer", down)
    with pytest.raises(BackendError, match="went away"):
        await pipeline.process([images[n] for n in PORTRAITS])
