"""Real photographs for tests: the pinned photos of :mod:`streams.models.photos`, cached in ``.cache/photos``.

``python -m tests.support.photos`` (run by ``make setup``) fetches them; tests call
:func:`photo_path`, which fetches on first use.
"""

from __future__ import annotations

from pathlib import Path

import cv2
import numpy as np

from streams.models import photos
from streams.models.photos import PHOTOS
from tests.support import REPO

CACHE = REPO / ".cache" / "photos"
#: Single-person portraits: each yields exactly one face.
PORTRAITS = ("obama.jpg", "obama2.jpg", "obama3.jpg", "biden.jpg", "astronaut.png")
#: A real photograph without any face.
NO_FACE = "coffee.png"
OBAMA = ("obama.jpg", "obama2.jpg", "obama3.jpg")

__all__ = ["NO_FACE", "OBAMA", "PHOTOS", "PORTRAITS", "fetch", "photo_bytes", "photo_path", "side_by_side"]


def photo_path(name: str) -> Path:
    return photos.photo_path(name, CACHE)


def photo_bytes(name: str) -> bytes:
    return photo_path(name).read_bytes()


def fetch(names: list[str] | None = None) -> list[Path]:
    return photos.fetch(CACHE, names)


def side_by_side(left: np.ndarray, right: np.ndarray) -> np.ndarray:
    """One photo of two people: two real portraits scaled to one height, next to each other."""
    height = min(left.shape[0], right.shape[0], 900)
    scaled = [cv2.resize(im, (round(im.shape[1] * height / im.shape[0]), height)) for im in (left, right)]
    return np.concatenate(scaled, axis=1)


if __name__ == "__main__":
    for p in fetch():
        print(p)
