import cv2
import numpy as np

from streams.vision.align import ALIGNED_SIZE, ARCFACE_TEMPLATE, align_face, align_faces, similarity_transform


def similarity(scale: float, angle: float, tx: float, ty: float) -> np.ndarray:
    c, s = np.cos(angle) * scale, np.sin(angle) * scale
    return np.array([[c, -s, tx], [s, c, ty]])


def apply(matrix: np.ndarray, points: np.ndarray) -> np.ndarray:
    return points @ matrix[:, :2].T + matrix[:, 2]


def test_recovers_an_exact_similarity():
    truth = similarity(2.5, 0.4, -30.0, 12.0)
    src = np.random.default_rng(3).uniform(0, 200, (5, 2))
    np.testing.assert_allclose(similarity_transform(src, apply(truth, src)), truth, atol=1e-9)


def test_never_returns_a_reflection():
    src = ARCFACE_TEMPLATE.copy()
    mirrored = src * [-1, 1]
    matrix = similarity_transform(src, mirrored)
    assert np.linalg.det(matrix[:, :2]) > 0


def test_least_squares_beats_any_perturbation_of_itself():
    rng = np.random.default_rng(5)
    src = ARCFACE_TEMPLATE * 3 + rng.normal(0, 4, (5, 2)) + 100
    best = similarity_transform(src, ARCFACE_TEMPLATE)
    err = np.square(apply(best, src) - ARCFACE_TEMPLATE).sum()
    for _ in range(50):
        scale, angle, tx, ty = rng.normal(0, [0.01, 0.01, 0.5, 0.5])
        nudged = similarity(1 + scale, angle, tx, ty)
        moved = np.vstack([nudged, [0, 0, 1]]) @ np.vstack([best, [0, 0, 1]])
        assert np.square(apply(moved[:2], src) - ARCFACE_TEMPLATE).sum() >= err


def test_aligned_crop_puts_the_landmarks_on_the_template():
    """Draw five dots where a rotated, scaled face would have them; after alignment they sit on the template."""
    truth = similarity(2.0, -0.3, 150.0, 220.0)
    landmarks = apply(truth, ARCFACE_TEMPLATE)
    image = np.zeros((600, 600, 3), np.uint8)
    for x, y in landmarks:
        cv2.circle(image, (round(x), round(y)), 4, (255, 255, 255), -1)
    crop = align_face(image, landmarks)
    assert crop.shape == (ALIGNED_SIZE, ALIGNED_SIZE, 3)
    for x, y in ARCFACE_TEMPLATE:
        assert crop[round(y), round(x)].min() > 200


def test_align_faces_of_none():
    assert align_faces(np.zeros((50, 50, 3), np.uint8), np.zeros((0, 5, 2))).shape == (0, 112, 112, 3)
