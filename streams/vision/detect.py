"""Detector outputs -> faces: anchor decoding (YuNet or SCRFD layout), NMS, mapping to original pixels.

The decoders know each layout; the strides come from the model family
(:mod:`streams.models.families`), which says which layout a model has.

All anchors of an image are decoded at once with numpy; the only Python loop
is over the faces NMS keeps. Boxes are ``[x1, y1, x2, y2]`` and landmarks
``[5, 2]`` in the order the aligner's template uses: image-left eye,
image-right eye, nose, image-left mouth corner, image-right mouth corner (for
an upright face; both model families emit the subject's right eye first).
"""

from __future__ import annotations

import functools
from collections.abc import Mapping, Sequence
from dataclasses import dataclass

import numpy as np


@dataclass(frozen=True)
class Detections:
    """Faces of one image: boxes [K, 4], scores [K], landmarks [K, 5, 2], best score first."""

    boxes: np.ndarray
    scores: np.ndarray
    landmarks: np.ndarray

    def __len__(self) -> int:
        return len(self.scores)

    @classmethod
    def empty(cls) -> Detections:
        return cls(np.zeros((0, 4), np.float32), np.zeros(0, np.float32), np.zeros((0, 5, 2), np.float32))

    def take(self, index: np.ndarray) -> Detections:
        return Detections(self.boxes[index], self.scores[index], self.landmarks[index])


@dataclass(frozen=True)
class FaceFilter:
    """What counts as a face: score, overlap, size and count limits (from Settings)."""

    score_threshold: float
    nms_threshold: float
    min_face_size: float
    max_faces: int


@functools.lru_cache(maxsize=32)
def anchor_centres(height: int, width: int, stride: int, per_cell: int) -> np.ndarray:
    """[(H/s)*(W/s)*per_cell, 2] grid cell indices (column, row), row-major, each repeated per anchor."""
    rows, cols = height // stride, width // stride
    grid = np.stack(np.meshgrid(np.arange(cols), np.arange(rows)), -1).reshape(-1, 2).astype(np.float32)
    grid = np.repeat(grid, per_cell, axis=0)
    grid.setflags(write=False)
    return grid


def decode_yunet(
    outputs: Mapping[str, np.ndarray],
    index: int,
    canvas_hw: tuple[int, int],
    threshold: float,
    strides: Sequence[int],
) -> Detections:
    """Candidates of batch item ``index`` from YuNet's cls/obj/bbox/kps outputs (canvas pixels, unsorted).

    score = sqrt(cls * obj); box centre = (cell + offset) * stride, size = exp(log-size) * stride;
    landmarks = (cell + offset) * stride — the decoding OpenCV's FaceDetectorYN applies.
    """
    parts = []
    for stride in strides:
        cls = np.clip(outputs[f"cls_{stride}"][index, :, 0], 0.0, 1.0)
        obj = np.clip(outputs[f"obj_{stride}"][index, :, 0], 0.0, 1.0)
        scores = np.sqrt(cls * obj)
        keep = np.flatnonzero(scores >= threshold)
        if keep.size == 0:
            continue
        cells = anchor_centres(*canvas_hw, stride, 1)[keep]
        bbox = outputs[f"bbox_{stride}"][index, keep]
        kps = outputs[f"kps_{stride}"][index, keep].reshape(-1, 5, 2)
        centre = (cells + bbox[:, :2]) * stride
        size = np.exp(bbox[:, 2:4]) * stride
        boxes = np.concatenate([centre - size / 2, centre + size / 2], axis=1)
        landmarks = (kps + cells[:, None, :]) * stride
        parts.append(Detections(boxes, scores[keep], landmarks))
    return _concat(parts)


def decode_scrfd(
    outputs: Sequence[np.ndarray],
    index: int,
    canvas_hw: tuple[int, int],
    threshold: float,
    strides: Sequence[int],
) -> Detections:
    """Candidates from insightface SCRFD outputs, in the model's order: scores per stride, then boxes, then landmarks.

    Two anchors per cell; boxes are distances (left, top, right, bottom) from the cell
    centre and landmarks offsets from it, both in stride units. Outputs may carry a
    batch dimension ([N, A, c]) or not ([A, c], batch-1 exports).
    """
    n = len(strides)
    if len(outputs) != 3 * n:
        raise ValueError(f"SCRFD has {3 * n} outputs (with landmarks), got {len(outputs)}")
    parts = []
    for i, stride in enumerate(strides):
        scores, bbox, kps = (_item(outputs[i + j * n], index) for j in range(3))
        scores = scores[:, 0]
        keep = np.flatnonzero(scores >= threshold)
        if keep.size == 0:
            continue
        centres = anchor_centres(*canvas_hw, stride, 2)[keep] * stride
        dist = bbox[keep] * stride
        boxes = np.concatenate([centres - dist[:, :2], centres + dist[:, 2:4]], axis=1)
        landmarks = kps[keep].reshape(-1, 5, 2) * stride + centres[:, None, :]
        parts.append(Detections(boxes, scores[keep], landmarks))
    return _concat(parts)


def select_faces(candidates: Detections, scale: float, image_hw: tuple[int, int], limits: FaceFilter) -> Detections:
    """NMS, map from canvas to original pixels (``/ scale``), clip, drop small faces, keep the best ``max_faces``."""
    if len(candidates) == 0:
        return Detections.empty()
    keep = nms(candidates.boxes, candidates.scores, limits.nms_threshold)
    faces = candidates.take(keep)
    h, w = image_hw
    boxes = faces.boxes / scale
    boxes[:, [0, 2]] = boxes[:, [0, 2]].clip(0, w)
    boxes[:, [1, 3]] = boxes[:, [1, 3]].clip(0, h)
    sides = np.minimum(boxes[:, 2] - boxes[:, 0], boxes[:, 3] - boxes[:, 1])
    big = np.flatnonzero(sides >= limits.min_face_size)[: limits.max_faces]
    return Detections(
        boxes[big].astype(np.float32),
        faces.scores[big].astype(np.float32),
        (faces.landmarks[big] / scale).astype(np.float32),
    )


def nms(boxes: np.ndarray, scores: np.ndarray, iou_threshold: float) -> np.ndarray:
    """Indices of the boxes greedy non-maximum suppression keeps, best score first."""
    order = np.argsort(-scores, kind="stable")
    areas = np.clip(boxes[:, 2] - boxes[:, 0], 0, None) * np.clip(boxes[:, 3] - boxes[:, 1], 0, None)
    keep = []
    while order.size:
        best, rest = order[0], order[1:]
        keep.append(best)
        lt = np.maximum(boxes[best, :2], boxes[rest, :2])
        rb = np.minimum(boxes[best, 2:], boxes[rest, 2:])
        inter = np.prod(np.clip(rb - lt, 0, None), axis=1)
        iou = inter / np.maximum(areas[best] + areas[rest] - inter, 1e-9)
        order = rest[iou <= iou_threshold]
    return np.asarray(keep, np.int64)


def _item(output: np.ndarray, index: int) -> np.ndarray:
    return output[index] if output.ndim == 3 else output


def _concat(parts: list[Detections]) -> Detections:
    if not parts:
        return Detections.empty()
    return Detections(
        np.concatenate([p.boxes for p in parts]),
        np.concatenate([p.scores for p in parts]),
        np.concatenate([p.landmarks for p in parts]),
    )
