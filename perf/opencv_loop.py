"""The peer of the CPU path: the loop a user would write with OpenCV alone, one image at a time.

``cv2.FaceDetectorYN`` + ``cv2.FaceRecognizerSF.alignCrop`` / ``feature`` on the very
upstream files facestream serves, as OpenCV's samples use them. It is given what our
pipeline is given, so the two do the same work: the image shrunk to fit the canvas,
the same score and NMS thresholds, faces below the smallest size dropped and at most
``max_faces`` kept (best first); alignment and embedding on the original pixels.
OpenCV runs on all cores (its default), as ONNX Runtime does.
"""

from __future__ import annotations

import cv2
import numpy as np

from streams.config import Settings
from streams.models.catalog import SFACE, YUNET
from streams.vision.letterbox import letterbox_scale

SCORE = 14  # column of the score in a FaceDetectorYN row: box (4), landmarks (10), score


class OpenCvLoop:
    def __init__(self, settings: Settings) -> None:
        self.settings = settings
        self.detector = cv2.FaceDetectorYN.create(
            str(settings.model_path / YUNET.filename), "", (settings.canvas_size, settings.canvas_size),
            settings.score_threshold, settings.nms_threshold,
        )
        self.recogniser = cv2.FaceRecognizerSF.create(str(settings.model_path / SFACE.filename), "")

    def detect(self, image: np.ndarray) -> np.ndarray:
        """FaceDetectorYN rows (box, landmarks, score) in original pixels, best first, filtered as ours are."""
        scale = letterbox_scale(image.shape[0], image.shape[1], self.settings.canvas_size)
        size = (max(1, round(image.shape[1] * scale)), max(1, round(image.shape[0] * scale)))
        seen = cv2.resize(image, size, interpolation=cv2.INTER_AREA) if scale < 1.0 else image
        self.detector.setInputSize(size)
        _, faces = self.detector.detect(seen)
        if faces is None:
            return np.zeros((0, SCORE + 1), np.float32)
        faces[:, :SCORE] /= scale
        faces = faces[np.minimum(faces[:, 2], faces[:, 3]) >= self.settings.min_face_size]
        return faces[np.argsort(-faces[:, SCORE], kind="stable")][: self.settings.max_faces]

    def embed(self, crop: np.ndarray) -> np.ndarray:
        """The 128-d feature of one aligned 112x112 crop."""
        return self.recogniser.feature(crop).ravel()

    def process(self, image: np.ndarray) -> np.ndarray:
        """Embeddings (faces, 128) of one decoded BGR image."""
        crops = [self.recogniser.alignCrop(image, face) for face in self.detect(image)]
        return np.stack([self.embed(c) for c in crops]) if crops else np.zeros((0, 128), np.float32)
