"""Fit images of any size onto one fixed square canvas, so a batch is a single tensor.

Images larger than the canvas are shrunk (aspect kept) and placed at the top-left
corner; smaller ones are placed unscaled, because the detector is trained on
faces of natural sizes and upscaling only costs work. Mapping a detection back
is then a single division by the scale.
"""

from __future__ import annotations

import cv2
import numpy as np

#: The detector's downsampling factor: canvas sides must be multiples of it.
CANVAS_MULTIPLE = 32


def letterbox_scale(height: int, width: int, canvas: int) -> float:
    return min(1.0, canvas / max(height, width))


def letterbox_batch(images: list[np.ndarray], canvas: int) -> tuple[np.ndarray, np.ndarray]:
    """Uint8 [N, canvas, canvas, 3] batch (zero padding) and the per-image scale factors [N]."""
    if canvas % CANVAS_MULTIPLE:
        raise ValueError(f"canvas size {canvas} is not a multiple of {CANVAS_MULTIPLE}")
    batch = np.zeros((len(images), canvas, canvas, 3), np.uint8)
    scales = np.empty(len(images), np.float64)
    for i, image in enumerate(images):
        h, w = image.shape[:2]
        scale = letterbox_scale(h, w, canvas)
        if scale < 1.0:
            size = (min(canvas, max(1, round(w * scale))), min(canvas, max(1, round(h * scale))))  # 1 px at least
            image = cv2.resize(image, size, interpolation=cv2.INTER_AREA)
        batch[i, : image.shape[0], : image.shape[1]] = image
        scales[i] = scale
    return batch, scales
