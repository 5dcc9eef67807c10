import struct
import subprocess
import sys

import cv2
import numpy as np
import pytest
from hypothesis import HealthCheck, given, settings
from hypothesis import strategies as st

from streams.errors import ErrorCode, ImageRejected
from streams.vision.image import ImageLimits, decode_image, read_header
from tests.support import REPO

LIMITS = ImageLimits(max_bytes=4 * 1024 * 1024, max_pixels=40_000_000, min_side=16)


def encode(ext: str, image: np.ndarray, *params: int) -> bytes:
    ok, buf = cv2.imencode(ext, image, list(params))
    assert ok
    return buf.tobytes()


def rejection(data: bytes, limits: ImageLimits = LIMITS, content_type: str | None = None) -> ImageRejected:
    with pytest.raises(ImageRejected) as info:
        decode_image(data, limits, content_type)
    return info.value




@pytest.fixture(scope="module")
def obama(photo_bytes) -> bytes:
    return photo_bytes["obama.jpg"]


def test_real_photos_decode_to_bgr_arrays_of_their_header_size(photo_bytes):
    for name, data in photo_bytes.items():
        header = read_header(data)
        image = decode_image(data, LIMITS, "image/jpeg" if name.endswith("jpg") else "image/png")
        assert image.dtype == np.uint8 and image.shape == (header.height, header.width, 3)


@pytest.mark.parametrize(
    ("ext", "fmt", "params"),
    [
        (".png", "png", ()),
        (".jpg", "jpeg", ()),
        (".jpg", "jpeg", (cv2.IMWRITE_JPEG_PROGRESSIVE, 1)),
        (".webp", "webp", (cv2.IMWRITE_WEBP_QUALITY, 80)),
        (".webp", "webp", (cv2.IMWRITE_WEBP_QUALITY, 101)),  # lossless
        (".bmp", "bmp", ()),
    ],
)
def test_header_size_is_read_without_decoding(ext, fmt, params):
    image = np.random.default_rng(1).integers(0, 256, (37, 91, 3), np.uint8)
    header = read_header(encode(ext, image, *params))
    assert (header.format, header.width, header.height) == (fmt, 91, 37)


def test_empty_payload():
    assert rejection(b"").code is ErrorCode.EMPTY_IMAGE


def test_payload_over_the_byte_limit(obama):
    assert rejection(obama, ImageLimits(len(obama) - 1, 40_000_000, 16)).code is ErrorCode.PAYLOAD_TOO_LARGE


@pytest.mark.parametrize("content_type", ["text/plain", "application/json; charset=utf-8"])
def test_non_image_content_type(obama, content_type):
    assert rejection(obama, content_type=content_type).code is ErrorCode.UNSUPPORTED_CONTENT_TYPE


@pytest.mark.parametrize("content_type", [None, "", "application/octet-stream", "IMAGE/JPEG"])
def test_unspecified_or_image_content_types_are_sniffed(obama, content_type):
    assert decode_image(obama, LIMITS, content_type).shape == (1137, 910, 3)


def test_text_file():
    assert rejection(b"name,score\nobama,0.9\n").code is ErrorCode.UNKNOWN_IMAGE_FORMAT


def test_random_bytes():
    assert rejection(np.random.default_rng(7).bytes(4096)).code is ErrorCode.UNKNOWN_IMAGE_FORMAT


@pytest.mark.parametrize("keep", [0.3, 0.6, 0.95])
def test_truncated_jpeg(obama, keep):
    assert rejection(obama[: int(len(obama) * keep)]).code is ErrorCode.TRUNCATED_IMAGE


def test_truncated_png(photo_bytes):
    png = photo_bytes["astronaut.png"]
    assert rejection(png[: len(png) // 2]).code is ErrorCode.TRUNCATED_IMAGE


def test_jpeg_with_complete_markers_but_undecodable_header_is_corrupt():
    jpeg = encode(".jpg", np.full((64, 64, 3), 90, np.uint8))
    dqt = jpeg.index(b"\xff\xdb")
    broken = jpeg[: dqt + 4] + b"\xff" + jpeg[dqt + 5 :]  # table id 0xFF: no decoder accepts it
    assert rejection(broken).code is ErrorCode.CORRUPT_IMAGE


def test_pixel_count_over_the_limit_is_rejected_from_the_header():
    image = np.zeros((300, 400, 3), np.uint8)
    assert rejection(encode(".png", image), ImageLimits(1 << 20, 100_000, 16)).code is ErrorCode.IMAGE_TOO_LARGE


def test_image_smaller_than_the_minimum_side():
    assert rejection(encode(".png", np.zeros((10, 400, 3), np.uint8))).code is ErrorCode.IMAGE_TOO_SMALL


def test_png_bomb_is_rejected_without_allocating_its_pixels():
    """A PNG declaring 50000x50000 RGB (7.5 GB decoded) with a valid zlib stream of zero rows."""
    child = """
import resource, zlib
from tests.support.bad_inputs import png_claiming
from tests.unit.vision.test_image import LIMITS
from streams.vision.image import decode_image
from streams.errors import ImageRejected
row = b"\\x00" * (1 + 50000 * 3)
z = zlib.compressobj(9)
idat = b"".join(z.compress(row) for _ in range(200)) + z.flush()
bomb = png_claiming(50000, 50000, idat)
before = resource.getrusage(resource.RUSAGE_SELF).ru_maxrss
try:
    decode_image(bomb, LIMITS)
    print("ACCEPTED")
except ImageRejected as exc:
    after = resource.getrusage(resource.RUSAGE_SELF).ru_maxrss
    print(exc.code.value, (after - before) * 1024)
"""
    out = subprocess.run([sys.executable, "-c", child], cwd=REPO, capture_output=True, text=True, check=True).stdout.split()
    assert out[0] == ErrorCode.IMAGE_TOO_LARGE.value
    decoded_bytes = 50000 * 50000 * 3
    assert int(out[1]) < decoded_bytes / 1000  # peak memory grew by less than 7.5 MB


def test_jpeg_exif_orientation_is_applied():
    image = np.zeros((40, 80, 3), np.uint8)
    image[:, :16] = 255  # a white band on the left
    jpeg = encode(".jpg", image)
    ifd = struct.pack(">H", 1) + struct.pack(">HHIHH", 0x0112, 3, 1, 6, 0) + struct.pack(">I", 0)  # orientation 6
    exif = b"Exif\x00\x00" + b"MM\x00\x2a" + struct.pack(">I", 8) + ifd
    rotated = jpeg[:2] + b"\xff\xe1" + struct.pack(">H", len(exif) + 2) + exif + jpeg[2:]
    out = decode_image(rotated, LIMITS)
    assert out.shape == (80, 40, 3)  # rotated 90 degrees clockwise for display
    assert out[:8].mean() > 200 and out[-8:].mean() < 50  # the left band is now on top


FORMATS = [(".jpg",), (".png",), (".webp",), (".bmp",)]


@pytest.fixture(scope="module")
def small_encodings(photo_bytes) -> list[bytes]:
    face = cv2.imdecode(np.frombuffer(photo_bytes["astronaut.png"], np.uint8), cv2.IMREAD_COLOR)[40:200, 150:290]
    return [encode(ext, face) for (ext,) in FORMATS]


@settings(max_examples=300, deadline=None, suppress_health_check=[HealthCheck.function_scoped_fixture])
@given(
    which=st.integers(0, len(FORMATS) - 1),
    cut=st.floats(0, 1),
    flips=st.lists(st.tuples(st.floats(0, 1), st.integers(0, 255)), max_size=4),
)
def test_damaged_files_decode_or_are_rejected_never_crash(small_encodings, which, cut, flips):
    data = bytearray(small_encodings[which][: max(1, int(len(small_encodings[which]) * cut))])
    for where, value in flips:
        data[min(len(data) - 1, int(len(data) * where))] = value
    try:
        image = decode_image(bytes(data), LIMITS)
    except ImageRejected as exc:
        assert exc.code in set(ErrorCode)
    else:
        assert image.ndim == 3 and image.shape[2] == 3
