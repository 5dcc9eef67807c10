"""pytest plugin: real photographs as fixtures (see :mod:`tests.photos`)."""

from __future__ import annotations

from pathlib import Path

import pytest

from tests import photos


@pytest.fixture(scope="session")
def photo_paths() -> dict[str, Path]:
    """Every pinned photo by file name (``obama.jpg``, ``biden.jpg``, ``astronaut.png``, ...), fetched once."""
    return dict(zip(photos.PHOTOS, photos.fetch(), strict=True))


@pytest.fixture(scope="session")
def photo_bytes(photo_paths: dict[str, Path]) -> dict[str, bytes]:
    """The encoded bytes of every pinned photo, as a producer would publish them."""
    return {name: path.read_bytes() for name, path in photo_paths.items()}
