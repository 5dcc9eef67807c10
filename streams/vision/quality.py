"""How good a detected face is for recognition: sharpness, head pose, size, detector score, one overall number.

A gallery poisoned by tiny, blurred or profile crops answers every stranger
with a confident wrong name, so every face carries these measures and the
enrolment and match gates (``FACESTREAM_ENROL_MIN_QUALITY``,
``FACESTREAM_MATCH_MIN_QUALITY``) read the overall :attr:`FaceQuality.quality`.

* **sharpness**: variance of the Laplacian of the grey aligned 112x112 crop,
  the crop the embedder sees (a small face upscaled to 112 is blurred too).
* **pose** from the five landmarks alone, in the face's own frame (the eye
  line is its x axis, so in-plane rotation does not leak into yaw or pitch).
  roll is the angle of the eye line, in degrees, positive when the
  image-right eye is lower. yaw comes from the nose's sideways offset from the
  eyes-to-mouth axis, pitch from its height between the eye and mouth lines,
  both read through the depth of a mean nose tip: half the eye distance in front
  of the eye plane, with the nose 0.49 of the way from the eye line to the mouth
  line seen frontally (the ArcFace template). Positive yaw: the nose points to
  image-right; positive pitch: the face looks up.
* **eye_distance** in original pixels.

``quality`` = size x sharpness x pose x detector score, each factor in [0, 1]:
size = min(1, eye_distance / 35) (35 px is the template's, below it the crop is
upscaled); sharpness = s / (s + 100); pose = max(0, cos yaw x cos pitch).
"""

from __future__ import annotations

import math
from dataclasses import dataclass

import cv2
import numpy as np

from .align import ARCFACE_TEMPLATE

#: Eye distance in the aligned crop: a face this size or larger is embedded at the crop's full resolution.
TEMPLATE_EYE_DISTANCE = float(np.linalg.norm(ARCFACE_TEMPLATE[1] - ARCFACE_TEMPLATE[0]))
_EYE_Y = (ARCFACE_TEMPLATE[0, 1] + ARCFACE_TEMPLATE[1, 1]) / 2
_MOUTH_Y = (ARCFACE_TEMPLATE[3, 1] + ARCFACE_TEMPLATE[4, 1]) / 2
#: Where a frontal nose sits between the eye line (0) and the mouth line (1).
FRONTAL_NOSE_HEIGHT = float((ARCFACE_TEMPLATE[2, 1] - _EYE_Y) / (_MOUTH_Y - _EYE_Y))
#: Depth of the nose tip in front of the eyes, as a fraction of the eye distance (a mean face).
NOSE_DEPTH = 0.5
#: Laplacian variance at which the sharpness factor is one half.
SHARPNESS_HALF = 100.0


@dataclass(frozen=True)
class FaceQuality:
    sharpness: float  # variance of the Laplacian of the grey aligned crop
    yaw: float  # degrees
    pitch: float  # degrees
    roll: float  # degrees
    eye_distance: float  # original pixels
    quality: float  # [0, 1], the product documented above


@dataclass(frozen=True)
class Pose:
    yaw: float
    pitch: float
    roll: float


def sharpness(aligned: np.ndarray) -> float:
    """Variance of the Laplacian of a BGR (or grey) uint8 crop: high when edges are crisp."""
    grey = cv2.cvtColor(aligned, cv2.COLOR_BGR2GRAY) if aligned.ndim == 3 else aligned
    return float(cv2.Laplacian(grey, cv2.CV_64F).var())


def head_pose(landmarks: np.ndarray) -> Pose:
    """Yaw, pitch and roll in degrees from five landmarks [5, 2] (eyes, nose, mouth corners, image-left first)."""
    points = np.asarray(landmarks, np.float64).reshape(5, 2)
    left_eye, right_eye, nose, left_mouth, right_mouth = points
    eye_line = right_eye - left_eye
    eye_distance = float(np.hypot(*eye_line))
    if eye_distance == 0.0:
        return Pose(0.0, 0.0, 0.0)
    across = eye_line / eye_distance
    down = np.array([-across[1], across[0]])  # the face's downward axis: x to y rotated by +90 degrees
    eyes, mouth = (left_eye + right_eye) / 2, (left_mouth + right_mouth) / 2
    height = float((mouth - eyes) @ down)
    axis_x = float((eyes + mouth) / 2 @ across)  # the eyes-to-mouth axis, where the nose sits when frontal
    sideways = (float(nose @ across) - axis_x) / eye_distance
    yaw = math.degrees(math.atan2(sideways, NOSE_DEPTH))
    if height <= 0.0:
        pitch = 0.0
    else:
        rise = FRONTAL_NOSE_HEIGHT - float((nose - eyes) @ down) / height  # > 0: nose nearer the eyes, looking up
        pitch = math.degrees(math.atan2(rise * height / eye_distance, NOSE_DEPTH))
    roll = math.degrees(math.atan2(eye_line[1], eye_line[0]))
    return Pose(yaw, pitch, roll)


def face_quality(aligned: np.ndarray, landmarks: np.ndarray, score: float) -> FaceQuality:
    """Every measure of one face and their product (see the module docstring)."""
    points = np.asarray(landmarks, np.float64).reshape(5, 2)
    eye_distance = float(np.hypot(*(points[1] - points[0])))
    sharp = sharpness(aligned)
    pose = head_pose(points)
    size_factor = min(1.0, eye_distance / TEMPLATE_EYE_DISTANCE)
    sharp_factor = sharp / (sharp + SHARPNESS_HALF)
    pose_factor = max(0.0, math.cos(math.radians(pose.yaw)) * math.cos(math.radians(pose.pitch)))
    overall = size_factor * sharp_factor * pose_factor * min(1.0, max(0.0, float(score)))
    return FaceQuality(sharp, pose.yaw, pose.pitch, pose.roll, eye_distance, overall)


def below_enrolment_gate(quality: FaceQuality, gate: float) -> str | None:
    """Why a face is too poor to enrol (what to change, in numbers), or None when it passes ``gate``."""
    if quality.quality >= gate:
        return None
    return (
        f"face quality {quality.quality:.3f} is below FACESTREAM_ENROL_MIN_QUALITY {gate:g} "
        f"(sharpness {quality.sharpness:.0f}, eye distance {quality.eye_distance:.0f} px, "
        f"yaw {quality.yaw:.0f}, pitch {quality.pitch:.0f} degrees): use a sharper, larger, frontal photo"
    )
