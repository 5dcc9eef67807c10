import cv2
import numpy as np
import onnxruntime as ort
import pytest

from streams.models import catalog
from streams.models.catalog import serving_path
from streams.models.families import SCRFD, YUNET
from streams.vision.detect import Detections, FaceFilter, anchor_centres, decode_scrfd, decode_yunet, nms, select_faces
from tests.unit.scrfd import scrfd_outputs
from tests.unit.serving_models import serving_settings

LOOSE = FaceFilter(score_threshold=0.5, nms_threshold=0.3, min_face_size=0, max_faces=100)


def test_nms_keeps_the_best_of_overlapping_boxes_and_all_disjoint_ones():
    boxes = np.array([[0, 0, 10, 10], [1, 1, 11, 11], [50, 50, 60, 60], [0, 0, 10, 10.5]], np.float32)
    scores = np.array([0.8, 0.9, 0.7, 0.6], np.float32)
    assert nms(boxes, scores, 0.3).tolist() == [1, 2]
    assert nms(boxes, scores, 0.99).tolist() == [1, 0, 2, 3]


def test_nms_of_nothing():
    assert nms(np.zeros((0, 4)), np.zeros(0), 0.3).tolist() == []


def test_anchor_centres_are_row_major_cells_repeated_per_anchor():
    grid = anchor_centres(64, 96, 32, 2)  # 2 rows x 3 columns
    assert grid.tolist() == [[c, r] for r in range(2) for c in range(3) for _ in range(2)]


def test_scrfd_layout_decodes_back_to_the_encoded_faces():
    box_a, marks_a = (
        np.array([100, 80, 180, 190], np.float32),
        np.array([[120, 120], [160, 121], [140, 145], [125, 170], [158, 171]], np.float32),
    )
    box_b, marks_b = (
        np.array([300, 20, 420, 170], np.float32),
        np.array([[330, 80], [390, 80], [360, 110], [335, 140], [385, 140]], np.float32),
    )
    cell_a = (136 // 16) * (320 // 16) + 140 // 16
    cell_b = (96 // 32) * (320 // 32) + 360 // 32
    outputs = scrfd_outputs([(16, cell_a, 1, box_a, marks_a), (32, cell_b, 0, box_b, marks_b)], 320)
    faces = select_faces(decode_scrfd(outputs, 0, (320, 320), 0.5, SCRFD.strides), 1.0, (320, 480), LOOSE)
    assert len(faces) == 2
    order = np.argsort(faces.boxes[:, 0])
    np.testing.assert_allclose(faces.boxes[order], [box_a, box_b], atol=1e-3)
    np.testing.assert_allclose(faces.landmarks[order], [marks_a, marks_b], atol=1e-3)


def test_scrfd_batch_one_exports_without_batch_dimension():
    box, marks = np.array([10, 10, 60, 70], np.float32), np.tile(np.array([[30, 40]], np.float32), (5, 1))
    outputs = [o[0] for o in scrfd_outputs([(8, (40 // 8) * 8 + 32 // 8, 0, box, marks)], 64)]
    faces = decode_scrfd(outputs, 0, (64, 64), 0.5, SCRFD.strides)
    np.testing.assert_allclose(faces.boxes, [box], atol=1e-3)


def test_select_maps_to_original_pixels_clips_filters_small_and_caps_count():
    candidates = Detections(
        boxes=np.array([[10, 10, 110, 130], [-20, 200, 40, 260], [300, 300, 305, 306], [400, 0, 500, 100]], np.float32),
        scores=np.array([0.9, 0.8, 0.95, 0.7], np.float32),
        landmarks=np.zeros((4, 5, 2), np.float32) + 50,
    )
    limits = FaceFilter(score_threshold=0.5, nms_threshold=0.3, min_face_size=20, max_faces=2)
    faces = select_faces(candidates, 0.5, (600, 1200), limits)
    np.testing.assert_allclose(faces.boxes, [[20, 20, 220, 260], [0, 400, 80, 520]])  # the 5x6 face is dropped
    np.testing.assert_allclose(faces.scores, [0.9, 0.8])
    np.testing.assert_allclose(faces.landmarks, 100)


def test_yunet_decoding_matches_opencv_face_detector(photo_paths):
    """On an image of exactly the canvas size, our decoder must find OpenCV's FaceDetectorYN faces."""
    settings = serving_settings()
    image = cv2.imread(str(photo_paths["astronaut.png"]))
    canvas = np.zeros((640, 640, 3), np.uint8)
    canvas[:512, :512] = image
    session = ort.InferenceSession(
        str(serving_path(settings, settings.detector_model)), providers=["CPUExecutionProvider"]
    )
    outputs = dict(zip(YUNET.outputs, session.run(list(YUNET.outputs), {YUNET.input: canvas[None]}), strict=True))
    candidates = decode_yunet(outputs, 0, (640, 640), 0.6, YUNET.strides)
    ours = select_faces(candidates, 1.0, (640, 640), FaceFilter(0.6, 0.3, 0, 100))

    yunet_file = str(settings.model_path / catalog.YUNET.filename)
    opencv = cv2.FaceDetectorYN.create(yunet_file, "", (640, 640), 0.6, 0.3, 5000)
    _, reference = opencv.detect(canvas)
    assert len(ours) == len(reference) == 1
    x, y, w, h = reference[0, :4]
    np.testing.assert_allclose(ours.boxes[0], [x, y, x + w, y + h], atol=0.05)
    np.testing.assert_allclose(ours.landmarks[0], reference[0, 4:14].reshape(5, 2), atol=0.05)
    assert ours.scores[0] == pytest.approx(reference[0, 14], abs=1e-4)
    left_eye, right_eye, _, left_mouth, right_mouth = ours.landmarks[0]
    assert left_eye[0] < right_eye[0] and left_mouth[0] < right_mouth[0]  # image-left first
