"""Face quality: pose from landmarks on faces whose pose is known by construction, sharpness against blur."""

from __future__ import annotations

import cv2
import numpy as np
import pytest

from streams.config import Settings
from streams.inference.onnx import OnnxBackend
from streams.pipeline import FacePipeline
from streams.vision.align import ARCFACE_TEMPLATE, align_faces
from streams.vision.quality import face_quality, head_pose, sharpness
from tests.support.photos import PORTRAITS
from tests.unit.serving_models import serving_settings


@pytest.fixture(scope="module")
def pipeline():
    return FacePipeline(OnnxBackend(serving_settings()), serving_settings())


@pytest.fixture(scope="module")
def portraits(pipeline, photo_bytes):
    return {name: pipeline.decode(photo_bytes[name]) for name in PORTRAITS}


async def only_faces(pipeline, images: list[np.ndarray]):
    await pipeline.start()
    try:
        found = await pipeline.process(images)
    finally:
        await pipeline.close()
    assert [len(f.faces) for f in found] == [1] * len(images)
    return [f.faces[0] for f in found]


def rotated(points: np.ndarray, degrees: float, centre: np.ndarray) -> np.ndarray:
    """``points`` turned by ``degrees`` about ``centre`` in image axes (y down): positive turns clockwise on screen."""
    t = np.radians(degrees)
    turn = np.array([[np.cos(t), -np.sin(t)], [np.sin(t), np.cos(t)]])
    return (points - centre) @ turn.T + centre


def mirrored(points: np.ndarray, width: float) -> np.ndarray:
    """The landmarks of the mirrored image, in the detector's order (image-left eye first)."""
    flipped = np.column_stack([width - points[:, 0], points[:, 1]])
    return flipped[[1, 0, 2, 4, 3]]


def test_the_template_itself_is_frontal():
    pose = head_pose(ARCFACE_TEMPLATE)
    assert (pose.yaw, pose.pitch) == (pytest.approx(0.0, abs=0.01), pytest.approx(0.0, abs=0.01))
    assert abs(pose.roll) < 0.5


@pytest.mark.parametrize("degrees", [-40, -20, -5, 5, 20, 40])
async def test_in_plane_rotation_moves_roll_by_its_angle_and_nothing_else(pipeline, portraits, degrees):
    """Real landmarks turned by a known angle: roll follows within 3 degrees, yaw and pitch do not move."""
    faces = await only_faces(pipeline, list(portraits.values()))
    for face in faces:
        points = face.landmarks.astype(np.float64)
        before = head_pose(points)
        after = head_pose(rotated(points, degrees, points.mean(0)))
        assert after.roll - before.roll == pytest.approx(degrees, abs=3.0)
        assert (after.yaw, after.pitch) == (pytest.approx(before.yaw, abs=1e-6), pytest.approx(before.pitch, abs=1e-6))


async def test_a_mirrored_face_has_the_same_yaw_magnitude(pipeline, portraits):
    """Mirroring the landmarks is exact; mirroring the photo goes through the detector, within 4 degrees."""
    names = list(portraits)
    mirrors = [portraits[n][:, ::-1].copy() for n in names]
    faces = await only_faces(pipeline, list(portraits.values()) + mirrors)
    for name, face, mirror in zip(names, faces, faces[len(names):], strict=False):
        width = portraits[name].shape[1]
        exact = head_pose(mirrored(face.landmarks.astype(np.float64), width))
        pose = head_pose(face.landmarks)
        assert exact.yaw == pytest.approx(-pose.yaw, abs=1e-6) and exact.roll == pytest.approx(-pose.roll, abs=1e-6)
        assert abs(head_pose(mirror.landmarks).yaw) == pytest.approx(abs(pose.yaw), abs=4.0), name


@pytest.mark.parametrize("degrees", [-5, -3, 3, 5])
async def test_a_rotated_photo_gives_its_roll_within_3_degrees(pipeline, portraits, degrees):
    """The whole photo turned (cv2: positive is counter-clockwise on screen, so roll falls by the angle).

    obama.jpg only: YuNet's landmarks follow in-plane rotation only partly on the other portraits (they stay
    nearer upright), which is the detector's limit, not the estimator's (the test above turns the landmarks).
    """
    image = portraits["obama.jpg"]
    h, w = image.shape[:2]
    turned = cv2.warpAffine(image, cv2.getRotationMatrix2D((w / 2, h / 2), degrees, 1.0), (w, h))
    upright, face = await only_faces(pipeline, [image, turned])
    assert head_pose(face.landmarks).roll - head_pose(upright.landmarks).roll == pytest.approx(-degrees, abs=3.0)


async def test_sharpness_and_quality_fall_monotonically_with_blur(pipeline, portraits):
    image = portraits["obama.jpg"]
    sigmas = [0, 1, 2, 4, 8, 16]
    blurred = [image if s == 0 else cv2.GaussianBlur(image, (0, 0), s) for s in sigmas]
    faces = await only_faces(pipeline, blurred)
    crops = [align_faces(im, f.landmarks[None])[0] for im, f in zip(blurred, faces, strict=True)]
    values = [sharpness(c) for c in crops]
    assert values == sorted(values, reverse=True) and len(set(values)) == len(values), values
    qualities = [face_quality(c, f.landmarks, f.score).quality for c, f in zip(crops, faces, strict=True)]
    assert qualities == sorted(qualities, reverse=True), qualities


async def test_portraits_pass_the_enrolment_gate_and_a_24_pixel_face_does_not(pipeline, portraits):
    gate = Settings().enrol_min_quality
    tiny = cv2.resize(portraits["obama.jpg"], None, fx=0.1, fy=0.1, interpolation=cv2.INTER_AREA)
    faces = await only_faces(pipeline, [*portraits.values(), tiny])
    *good, small = faces
    for name, face in zip(portraits, good, strict=True):
        assert face.quality.quality >= gate, (name, face.quality)
        assert 0.0 <= face.quality.quality <= 1.0
    assert small.bbox[2] - small.bbox[0] < 30 and small.quality.quality < gate, small.quality
