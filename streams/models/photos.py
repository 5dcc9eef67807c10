"""Real photographs, fetched from PyPI packages that ship them, pinned by sha256.

Two users: the int8 embedder is calibrated and checked on their faces
(:mod:`streams.models.int8`), and the tests use them (:mod:`tests.support.photos`).
They are never committed; :func:`fetch` brings them into a cache directory. Sources:

* ``face-recognition==1.3.0`` sdist, ``tests/test_images/`` (MIT): portraits of
  Barack Obama (three) and Joe Biden.
* ``scikit-image==0.24.0`` wheel, ``skimage/data/astronaut.png`` (public domain,
  NASA): Eileen Collins.
"""

from __future__ import annotations

import hashlib
import tarfile
import tempfile
import zipfile
from dataclasses import dataclass
from pathlib import Path

from streams.models.fetch import pip_download


@dataclass(frozen=True)
class Source:
    requirement: str
    pip_flags: tuple[str, ...]
    member_dir: str  # path inside the archive, after its top-level folder for sdists


FACE_RECOGNITION = Source("face-recognition==1.3.0", ("--no-binary", ":all:"), "tests/test_images/")
SCIKIT_IMAGE = Source("scikit-image==0.24.0", ("--only-binary", ":all:"), "skimage/data/")

PHOTOS: dict[str, tuple[Source, str]] = {
    "obama.jpg": (FACE_RECOGNITION, "0930e3aa8cae5920329c0c8cbc6a2ab70f47b0e67b432875beaa95cbf7e741f6"),
    "obama2.jpg": (FACE_RECOGNITION, "a7efcc907375274796f39646510704aa86672d59f6d5469d69af3c85590976a6"),
    "obama3.jpg": (FACE_RECOGNITION, "76ac6bf97c36dc2da0ad16a537d6a5ac1b10f48d49aac29a0cca9a17cdbc3ca3"),
    "biden.jpg": (FACE_RECOGNITION, "3c17508bb91554c637a2eabddfae790e5bb1caba93130814fc2ac50be9760c4c"),
    "astronaut.png": (SCIKIT_IMAGE, "88431cd9653ccd539741b555fb0a46b61558b301d4110412b5bc28b5e3ea6cb5"),
    # More real photographs for stream tests: RGBA, partial faces, grayscale, and one without a face.
    "32bit.png": (FACE_RECOGNITION, "44dca895a7d635a4aedddd91a4f37af9a8a5b44e66154282a24645a757b5f627"),
    "obama_partial_face.jpg": (FACE_RECOGNITION, "c2d1f09e7ef3042352b41e41286e6eb0522f64f88308be13886991b95db52117"),
    "obama_partial_face2.jpg": (FACE_RECOGNITION, "9a812347f97633542b8cd9992de22def11b74f79d82056bc3ee830f13878e028"),
    "camera.png": (SCIKIT_IMAGE, "b0793d2adda0fa6ae899c03989482bff9a42d3d5690fc7e3648f2795d730c23a"),
    "coffee.png": (SCIKIT_IMAGE, "cc02f8ca188b167c775a7101b5d767d1e71792cf762c33d6fa15a4599b5a8de7"),
}


def photo_path(name: str, cache: Path) -> Path:
    """Path of a pinned photo in ``cache``, fetching its source package when missing."""
    path = cache / name
    if not path.exists():
        fetch(cache, [n for n, (src, _) in PHOTOS.items() if src == PHOTOS[name][0]])
    return path


def fetch(cache: Path, names: list[str] | None = None) -> list[Path]:
    """Fetch (and verify) the named photos into ``cache``, all by default; a hash mismatch raises naming the file."""
    names = list(PHOTOS) if names is None else names
    cache.mkdir(parents=True, exist_ok=True)
    by_source: dict[Source, list[str]] = {}
    for name in names:
        if not _verified(cache / name, name):
            by_source.setdefault(PHOTOS[name][0], []).append(name)
    for source, wanted in by_source.items():
        with tempfile.TemporaryDirectory(prefix="facestream-photos-") as tmp:
            for name, data in _extract(source, wanted, Path(tmp)).items():
                _check(name, data)
                (cache / name).write_bytes(data)
    return [cache / n for n in names]


def _verified(path: Path, name: str) -> bool:
    if not path.exists():
        return False
    _check(name, path.read_bytes())
    return True


def _check(name: str, data: bytes) -> None:
    actual = hashlib.sha256(data).hexdigest()
    if actual != PHOTOS[name][1]:
        raise RuntimeError(f"photo {name}: sha256 {actual} is not the pinned {PHOTOS[name][1]}")


def _extract(source: Source, names: list[str], tmp: Path) -> dict[str, bytes]:
    archive = pip_download(source.requirement, tmp, *source.pip_flags)
    wanted = {source.member_dir + n: n for n in names}
    found: dict[str, bytes] = {}
    if archive.suffix == ".whl":
        with zipfile.ZipFile(archive) as zf:
            for member, name in wanted.items():
                found[name] = zf.read(member)
    else:
        with tarfile.open(archive) as tf:
            for info in tf:
                inner = info.name.split("/", 1)[-1]  # drop the sdist's top-level folder
                if inner in wanted:
                    found[wanted[inner]] = tf.extractfile(info).read()
    missing = set(names) - set(found)
    if missing:
        raise RuntimeError(f"{source.requirement} does not contain {sorted(missing)}")
    return found
