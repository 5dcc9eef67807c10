"""SCRFD outputs encoded by hand: the decoder's tests and the pipeline's SCRFD test share one encoding."""

from __future__ import annotations

import numpy as np


def scrfd_outputs(faces: list[tuple[int, int, int, np.ndarray, np.ndarray]], canvas: int) -> list[np.ndarray]:
    """Encode (stride, cell index, anchor, box, landmarks) the way SCRFD's heads emit them, batch of 1."""
    scores, boxes, kps = [], [], []
    for stride in (8, 16, 32):
        anchors = (canvas // stride) ** 2 * 2
        scores.append(np.full((1, anchors, 1), 0.01, np.float32))
        boxes.append(np.zeros((1, anchors, 4), np.float32))
        kps.append(np.zeros((1, anchors, 10), np.float32))
    for stride, cell, anchor, box, marks in faces:
        level = (8, 16, 32).index(stride)
        cols = canvas // stride
        centre = np.array([cell % cols, cell // cols], np.float32) * stride
        row = cell * 2 + anchor
        scores[level][0, row, 0] = 0.95
        boxes[level][0, row] = np.concatenate([centre - box[:2], box[2:] - centre]) / stride
        kps[level][0, row] = ((marks - centre) / stride).ravel()
    return scores + boxes + kps
