"""Fit images of any size onto the detector's canvas, so a batch is a single tensor.

Images larger than the canvas size are shrunk (aspect kept) and placed at the
top-left corner; smaller ones are placed unscaled, because the detector is
trained on faces of natural sizes and upscaling only costs work. Mapping a
detection back is then a single division by the scale.

Which canvas an image gets depends on that image alone, never on the batch it
travels in, so an event gives the same faces however it is batched (and when it
is redelivered). Two shapes are offered (``Settings.canvas_fit``):

* ``square``: ``canvas_size`` x ``canvas_size`` for every image. One shape lets a
  GPU server batch any images together.
* ``image``: the image's own (shrunk) height and width rounded up to the detector's
  stride. A portrait photo shrunk to 640 x 334 costs a 640 x 352 canvas, about half
  the square, which is what a CPU wants (and what OpenCV's ``FaceDetectorYN`` does).
"""

from __future__ import annotations

import cv2
import numpy as np

#: The detector's downsampling factor: canvas sides must be multiples of it.
CANVAS_MULTIPLE = 32


def letterbox_scale(height: int, width: int, canvas: int) -> float:
    return min(1.0, canvas / max(height, width))


def canvas_shape(height: int, width: int, canvas: int, *, square: bool) -> tuple[int, int]:
    """The (height, width) of the canvas an image of this size is detected on."""
    if canvas % CANVAS_MULTIPLE:
        raise ValueError(f"canvas size {canvas} is not a multiple of {CANVAS_MULTIPLE}")
    if square:
        return canvas, canvas
    h, w = _shrunk_size(height, width, canvas)
    return _stride_multiple(h), _stride_multiple(w)


def letterbox_batch(
    images: list[np.ndarray], canvas: int, shape: tuple[int, int] | None = None
) -> tuple[np.ndarray, np.ndarray]:
    """Uint8 [N, H, W, 3] batch (zero padding) and the per-image scale factors [N].

    ``shape`` is the (H, W) every image of the batch fits in (from :func:`canvas_shape`); the square by default.
    """
    height, width = shape or canvas_shape(0, 0, canvas, square=True)
    batch = np.zeros((len(images), height, width, 3), np.uint8)
    scales = np.empty(len(images), np.float64)
    for i, image in enumerate(images):
        h, w = image.shape[:2]
        scales[i] = letterbox_scale(h, w, canvas)
        if scales[i] < 1.0:
            image = cv2.resize(image, _shrunk_size(h, w, canvas)[::-1], interpolation=cv2.INTER_AREA)
        if image.shape[0] > height or image.shape[1] > width:
            raise ValueError(f"an image shrunk to {image.shape[:2]} does not fit a {height}x{width} canvas")
        batch[i, : image.shape[0], : image.shape[1]] = image
    return batch, scales


def _shrunk_size(height: int, width: int, canvas: int) -> tuple[int, int]:
    """(height, width) after shrinking to fit ``canvas``; 1 px at least on each side."""
    scale = letterbox_scale(height, width, canvas)
    if scale >= 1.0:
        return height, width
    return min(canvas, max(1, round(height * scale))), min(canvas, max(1, round(width * scale)))


def _stride_multiple(side: int) -> int:
    return -(-side // CANVAS_MULTIPLE) * CANVAS_MULTIPLE
