"""Image payload -> validated BGR pixels, or a typed rejection.

Validation happens before decoding wherever it can: the payload size, the
declared content type, the format (magic bytes) and the pixel count that the
file's own header declares. A decompression bomb (a small file claiming a huge
canvas) is therefore rejected without its pixels ever being allocated. Only
then does OpenCV decode, applying the JPEG EXIF orientation (its default).

Each call is independent and CPU-bound, so a worker runs :func:`decode_image`
per event in a thread pool: one bad image is one rejection, never a failed batch.
"""

from __future__ import annotations

import struct
from dataclasses import dataclass

import cv2
import numpy as np

from streams.config import Settings
from streams.errors import ErrorCode, ImageRejected

#: Content types that say nothing about the payload; the bytes are sniffed instead.
UNSPECIFIED_CONTENT_TYPES = frozenset({"", "application/octet-stream", "binary/octet-stream"})


@dataclass(frozen=True)
class ImageLimits:
    max_bytes: int
    max_pixels: int
    min_side: int

    @classmethod
    def from_settings(cls, settings: Settings) -> ImageLimits:
        return cls(settings.max_image_bytes, settings.max_image_pixels, settings.min_image_side)


@dataclass(frozen=True)
class ImageHeader:
    format: str  # jpeg, png, webp, bmp
    width: int
    height: int

    @property
    def pixels(self) -> int:
        return self.width * self.height


def decode_image(data: bytes, limits: ImageLimits, content_type: str | None = None) -> np.ndarray:
    """Validate and decode ``data`` into a uint8 BGR array [H, W, 3]; raise :class:`ImageRejected`."""
    return decode_pixels(data, inspect_image(data, limits, content_type))


def inspect_image(data: bytes, limits: ImageLimits, content_type: str | None = None) -> ImageHeader:
    """Every check that needs no pixel decoded: payload size, content type, header dimensions, truncation.

    Its header tells the caller how much memory decoding will take before any is spent.
    """
    if not data:
        raise ImageRejected(ErrorCode.EMPTY_IMAGE, "the image payload is empty")
    if len(data) > limits.max_bytes:
        raise ImageRejected(
            ErrorCode.PAYLOAD_TOO_LARGE, f"payload of {len(data)} bytes exceeds the limit of {limits.max_bytes}"
        )
    kind = (content_type or "").split(";", 1)[0].strip().lower()
    if kind not in UNSPECIFIED_CONTENT_TYPES and not kind.startswith("image/"):
        raise ImageRejected(ErrorCode.UNSUPPORTED_CONTENT_TYPE, f"content type {content_type!r} is not an image type")
    header = read_header(data)
    if header.pixels > limits.max_pixels:
        raise ImageRejected(
            ErrorCode.IMAGE_TOO_LARGE,
            f"{header.format} header declares {header.width}x{header.height} pixels, "
            f"over the limit of {limits.max_pixels}",
        )
    if min(header.width, header.height) < limits.min_side:
        raise ImageRejected(
            ErrorCode.IMAGE_TOO_SMALL,
            f"{header.width}x{header.height} is smaller than {limits.min_side} pixels on a side",
        )
    if header.format == "jpeg" and _jpeg_is_truncated(data):
        raise ImageRejected(ErrorCode.TRUNCATED_IMAGE, "the JPEG data ends before its end-of-image marker")
    return header


def decode_pixels(data: bytes, header: ImageHeader) -> np.ndarray:
    """Decode a payload :func:`inspect_image` accepted into a uint8 BGR array [H, W, 3]."""
    image = cv2.imdecode(np.frombuffer(data, np.uint8), cv2.IMREAD_COLOR)
    if image is None:
        if header.format == "png" and b"IEND" not in data[-12:]:
            raise ImageRejected(ErrorCode.TRUNCATED_IMAGE, "the PNG data ends before its IEND chunk")
        raise ImageRejected(ErrorCode.CORRUPT_IMAGE, f"the {header.format} data cannot be decoded")
    return image


def read_header(data: bytes) -> ImageHeader:
    """Format and declared size from the first bytes of the file, without decoding any pixel."""
    if data.startswith(b"\x89PNG\r\n\x1a\n"):
        return _png_header(data)
    if data.startswith(b"\xff\xd8\xff"):
        return _jpeg_header(data)
    if data[:4] == b"RIFF" and data[8:12] == b"WEBP":
        return _webp_header(data)
    if data.startswith(b"BM"):
        return _bmp_header(data)
    raise ImageRejected(ErrorCode.UNKNOWN_IMAGE_FORMAT, "not a JPEG, PNG, WebP or BMP file (unrecognised magic bytes)")


def _truncated_header(fmt: str) -> ImageRejected:
    return ImageRejected(ErrorCode.TRUNCATED_IMAGE, f"the {fmt} data ends inside its header")


def _png_header(data: bytes) -> ImageHeader:
    if len(data) < 24:
        raise _truncated_header("PNG")
    if data[12:16] != b"IHDR":
        raise ImageRejected(ErrorCode.CORRUPT_IMAGE, "the PNG does not start with an IHDR chunk")
    width, height = struct.unpack(">II", data[16:24])
    return ImageHeader("png", width, height)


#: Start-of-frame markers (baseline, progressive, lossless...); C4, C8 and CC share the range but are not frames.
_JPEG_SOF = frozenset(range(0xC0, 0xD0)) - {0xC4, 0xC8, 0xCC}
#: Markers with no length field.
_JPEG_STANDALONE = frozenset({0x01, *range(0xD0, 0xD8)})


def _jpeg_segments(data: bytes):
    """Yield (marker, offset of its payload, payload length) up to and including the first SOS."""
    pos = 2  # after SOI; the magic check guarantees a marker follows
    while True:
        while pos < len(data) and data[pos] == 0xFF:
            pos += 1  # the marker prefix and any fill bytes
        if pos >= len(data):
            return
        marker = data[pos]
        pos += 1
        if marker in _JPEG_STANDALONE:
            continue
        if pos + 2 > len(data):
            return
        (length,) = struct.unpack(">H", data[pos : pos + 2])
        yield marker, pos + 2, length - 2
        if marker == 0xDA:
            return
        pos += length
        if pos < len(data) and data[pos] != 0xFF:
            raise ImageRejected(ErrorCode.CORRUPT_IMAGE, f"JPEG marker expected at byte {pos}")


def _jpeg_header(data: bytes) -> ImageHeader:
    for marker, start, length in _jpeg_segments(data):
        if marker in _JPEG_SOF:
            if start + 5 > len(data) or length < 5:
                break
            height, width = struct.unpack(">HH", data[start + 1 : start + 5])
            return ImageHeader("jpeg", width, height)
    raise _truncated_header("JPEG")


def _jpeg_is_truncated(data: bytes) -> bool:
    """True when no end-of-image marker follows the first scan (scan data never contains FFD9)."""
    scan_start = next((start + length for marker, start, length in _jpeg_segments(data) if marker == 0xDA), -1)
    return scan_start < 0 or data.rfind(b"\xff\xd9") < scan_start


def _webp_header(data: bytes) -> ImageHeader:
    if len(data) < 30:
        raise _truncated_header("WebP")
    chunk = data[12:16]
    if chunk == b"VP8 ":  # lossy: 14-bit sizes after the 3-byte start code
        width, height = struct.unpack("<HH", data[26:30])
        return ImageHeader("webp", width & 0x3FFF, height & 0x3FFF)
    if chunk == b"VP8L":  # lossless: 14-bit (size - 1) fields packed after the 0x2F signature
        (bits,) = struct.unpack("<I", data[21:25])
        return ImageHeader("webp", (bits & 0x3FFF) + 1, ((bits >> 14) & 0x3FFF) + 1)
    if chunk == b"VP8X":  # extended: 24-bit (canvas size - 1) fields
        width = int.from_bytes(data[24:27], "little") + 1
        height = int.from_bytes(data[27:30], "little") + 1
        return ImageHeader("webp", width, height)
    raise ImageRejected(ErrorCode.CORRUPT_IMAGE, f"unknown WebP chunk {chunk!r}")


def _bmp_header(data: bytes) -> ImageHeader:
    if len(data) < 26:
        raise _truncated_header("BMP")
    (dib_size,) = struct.unpack("<I", data[14:18])
    if dib_size == 12:  # OS/2 BITMAPCOREHEADER: 16-bit sizes
        width, height = struct.unpack("<HH", data[18:22])
    else:  # BITMAPINFOHEADER and later: signed 32-bit, negative height means top-down
        width, height = struct.unpack("<ii", data[18:26])
    return ImageHeader("bmp", abs(width), abs(height))
