"""The bad image payloads every layer is tested with, built the same way everywhere.

Each maps to a distinct error code when published as a file through
``facestream produce`` (which sets the content type from the file name).
"""

from __future__ import annotations

import struct
import zlib

import numpy as np

from streams.errors import ErrorCode


def png_claiming(width: int, height: int, idat: bytes = b"") -> bytes:
    """A structurally valid PNG whose header declares ``width`` x ``height`` RGB pixels."""

    def chunk(kind: bytes, body: bytes) -> bytes:
        return struct.pack(">I", len(body)) + kind + body + struct.pack(">I", zlib.crc32(kind + body))

    ihdr = struct.pack(">IIBBBBB", width, height, 8, 2, 0, 0, 0)
    return b"\x89PNG\r\n\x1a\n" + chunk(b"IHDR", ihdr) + chunk(b"IDAT", idat) + chunk(b"IEND", b"")


def bad_files(jpeg: bytes) -> dict[str, tuple[bytes, ErrorCode]]:
    """File name -> (payload, the code it must be rejected with); ``jpeg`` is a real photo to truncate."""
    return {
        "empty.jpg": (b"", ErrorCode.EMPTY_IMAGE),
        "truncated.jpg": (jpeg[: len(jpeg) // 2], ErrorCode.TRUNCATED_IMAGE),
        "noise.bin": (np.random.default_rng(7).integers(0, 256, 40_000, dtype=np.uint8).tobytes(), ErrorCode.UNKNOWN_IMAGE_FORMAT),
        "notes.txt": (b"this is a text file, not an image\n" * 20, ErrorCode.UNSUPPORTED_CONTENT_TYPE),
        "bomb.png": (png_claiming(50_000, 50_000), ErrorCode.IMAGE_TOO_LARGE),
    }
