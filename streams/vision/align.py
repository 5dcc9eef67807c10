"""Warp each face onto the ArcFace 112x112 five-point template.

The transform is the least-squares similarity (rotation, uniform scale,
translation; no reflection, no shear) between the detected landmarks and the
template, in closed form (Umeyama, TPAMI 1991). Both ArcFace-family embedders
and SFace are trained on crops made this way.
"""

from __future__ import annotations

import cv2
import numpy as np

ALIGNED_SIZE = 112
#: Landmark positions in the 112x112 crop: image-left eye, image-right eye, nose, mouth corners.
ARCFACE_TEMPLATE = np.array(
    [
        [38.2946, 51.6963],
        [73.5318, 51.5014],
        [56.0252, 71.7366],
        [41.5493, 92.3655],
        [70.7299, 92.2041],
    ],
    np.float64,
)


def similarity_transform(src: np.ndarray, dst: np.ndarray) -> np.ndarray:
    """2x3 matrix M minimising sum ||M [src;1] - dst||^2 over similarities (Umeyama)."""
    src = np.asarray(src, np.float64)
    dst = np.asarray(dst, np.float64)
    src_mean, dst_mean = src.mean(0), dst.mean(0)
    src_c, dst_c = src - src_mean, dst - dst_mean
    cov = dst_c.T @ src_c / len(src)
    u, s, vt = np.linalg.svd(cov)
    d = np.ones(2)
    if np.linalg.det(u) * np.linalg.det(vt) < 0:
        d[-1] = -1.0  # the best orthogonal map is a reflection: take the best rotation instead
    rotation = u @ np.diag(d) @ vt
    src_var = (src_c**2).sum() / len(src)
    scale = (s * d).sum() / src_var if src_var > 0 else 1.0
    translation = dst_mean - scale * rotation @ src_mean
    return np.hstack([scale * rotation, translation[:, None]])


def align_face(image: np.ndarray, landmarks: np.ndarray) -> np.ndarray:
    """The 112x112 crop of ``image`` whose five ``landmarks`` best match the template."""
    matrix = similarity_transform(landmarks, ARCFACE_TEMPLATE)
    return cv2.warpAffine(image, matrix, (ALIGNED_SIZE, ALIGNED_SIZE), flags=cv2.INTER_LINEAR, borderValue=0)


def align_faces(image: np.ndarray, landmarks: np.ndarray) -> np.ndarray:
    """Uint8 [K, 112, 112, 3] crops for landmarks [K, 5, 2] of one image."""
    out = np.empty((len(landmarks), ALIGNED_SIZE, ALIGNED_SIZE, 3), np.uint8)
    for k, points in enumerate(landmarks):
        out[k] = align_face(image, points)
    return out
