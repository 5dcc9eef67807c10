"""Claim-check reads: the image of an ImageEvent that names a ``file://`` URI instead of carrying bytes.

The URI comes from a topic, so it is hostile input. Only regular files under an
operator-named root are read, and only up to the payload limit:

* off unless ``FACESTREAM_URI_ROOTS`` names directories;
* the path is resolved (symlinks included) and checked against the roots
  before anything is opened, and every refusal outside the roots carries the
  same code and message, so a refusal never tells whether a path exists;
* the file is opened one component at a time beneath its root without
  following symlinks, so a directory swapped for a symlink after the check
  cannot lead outside;
* it is opened non-blocking and must be a regular file (never a FIFO, device,
  socket or directory) whose size fits the limit before a byte is read.
"""

from __future__ import annotations

import errno
import os
import re
import stat
from collections.abc import Sequence
from pathlib import Path
from urllib.parse import unquote_to_bytes, urlsplit

from .config import Settings
from .errors import ErrorCode, RecordError

_DIR_FLAGS = os.O_RDONLY | os.O_DIRECTORY | os.O_NOFOLLOW | os.O_CLOEXEC
_FILE_FLAGS = os.O_RDONLY | os.O_NONBLOCK | os.O_NOCTTY | os.O_NOFOLLOW | os.O_CLOEXEC
_CHUNK = 1024 * 1024
_SHOWN_CHARS = 200
_CONTROL = re.compile("[\x00-\x1f\x7f]")


class ClaimCheck:
    """Reads the payloads named by ``file://`` URIs, from regular files under ``roots`` only."""

    def __init__(self, roots: Sequence[str | Path], max_bytes: int) -> None:
        # An empty entry would resolve to the working directory: it is skipped, never a root.
        self.roots = tuple(Path(os.path.realpath(root)) for root in roots if str(root))
        self.max_bytes = max_bytes

    @classmethod
    def from_settings(cls, settings: Settings) -> ClaimCheck:
        return cls(settings.uri_roots.split(os.pathsep), settings.max_image_bytes)

    def read(self, uri: str) -> bytes:
        """The bytes of the file ``uri`` names; a :class:`RecordError` says why not."""
        if not self.roots:
            raise RecordError(ErrorCode.URI_NOT_ALLOWED, "claim-check reads are off (FACESTREAM_URI_ROOTS is empty)")
        root, parts = self._locate(uri)
        fd = _open_beneath(root, parts, uri)
        try:
            return self._read_regular(fd, uri)
        finally:
            os.close(fd)

    def _locate(self, uri: str) -> tuple[Path, tuple[str, ...]]:
        """(root, path components below it) of ``uri``, judged from its text and real path alone."""
        if _CONTROL.search(uri):
            # urlsplit would silently drop tabs and newlines and so read another path than the one sent.
            raise _not_allowed(uri, "contains a control character")
        try:
            parsed = urlsplit(uri)
        except ValueError:
            raise RecordError(ErrorCode.URI_UNREADABLE, f"{_shown(uri)} is not a valid URI") from None
        if parsed.scheme != "file":
            raise RecordError(ErrorCode.URI_UNREADABLE, f"unsupported URI scheme {parsed.scheme!r} (only file://)")
        if parsed.netloc.lower() not in ("", "localhost"):
            raise _not_allowed(uri, "names a host; only file:///path or file://localhost/path is read")
        if "?" in uri or "#" in uri:
            raise _not_allowed(uri, "has a query or fragment; a file URI names a path only")
        raw = unquote_to_bytes(parsed.path)
        if b"\x00" in raw:
            raise _not_allowed(uri, "contains a NUL byte")
        path = os.fsdecode(raw)
        if not os.path.isabs(path):
            raise _not_allowed(uri, "is not an absolute path")
        real = Path(os.path.realpath(path))
        for root in self.roots:
            if real.is_relative_to(root):
                return root, real.relative_to(root).parts
        raise _outside(uri)

    def _read_regular(self, fd: int, uri: str) -> bytes:
        """The whole file behind ``fd``, refused before reading unless it is a regular file that fits."""
        info = os.fstat(fd)
        if not stat.S_ISREG(info.st_mode):
            raise _not_regular(uri)
        if info.st_size > self.max_bytes:
            raise _too_large(uri, self.max_bytes)
        # The file may grow after fstat: read one byte past the limit to notice.
        limit = self.max_bytes + 1
        chunks: list[bytes] = []
        got = 0
        want = min(info.st_size + 1, limit)
        while want > 0:
            try:
                chunk = os.read(fd, want)
            except OSError as exc:
                raise RecordError(ErrorCode.URI_UNREADABLE, f"cannot read {_shown(uri)}: {exc.strerror}") from None
            if not chunk:
                break
            chunks.append(chunk)
            got += len(chunk)
            want = min(_CHUNK, limit - got)
        if got > self.max_bytes:
            raise _too_large(uri, self.max_bytes)
        return b"".join(chunks)


def _open_beneath(root: Path, parts: tuple[str, ...], uri: str) -> int:
    """Open ``root/parts`` following no symlink on the way: one found now appeared after the check."""
    try:
        fd = os.open(root, _DIR_FLAGS)
    except OSError as exc:
        raise _open_error(exc, uri) from None
    try:
        for i, name in enumerate(parts):
            last = i == len(parts) - 1
            # Judged before opening: opening a device or FIFO can have effects of its own.
            mode = os.stat(name, dir_fd=fd, follow_symlinks=False).st_mode
            if stat.S_ISLNK(mode):
                raise _outside(uri)
            if last and not stat.S_ISREG(mode):
                raise _not_regular(uri)
            fd = _step(fd, os.open(name, _FILE_FLAGS if last else _DIR_FLAGS, dir_fd=fd))
        return fd
    except OSError as exc:
        os.close(fd)
        raise _open_error(exc, uri) from None
    except RecordError:
        os.close(fd)
        raise


def _step(parent: int, child: int) -> int:
    os.close(parent)
    return child


def _open_error(exc: OSError, uri: str) -> RecordError:
    if exc.errno == errno.ELOOP:
        return _outside(uri)
    return RecordError(ErrorCode.URI_UNREADABLE, f"cannot read {_shown(uri)}: {exc.strerror}")


def _outside(uri: str) -> RecordError:
    """The one refusal of every path outside the roots, existing or not."""
    return _not_allowed(uri, "is outside the claim-check roots")


def _not_regular(uri: str) -> RecordError:
    return RecordError(ErrorCode.URI_UNREADABLE, f"{_shown(uri)} is not a regular file")


def _not_allowed(uri: str, why: str) -> RecordError:
    return RecordError(ErrorCode.URI_NOT_ALLOWED, f"{_shown(uri)} {why}")


def _too_large(uri: str, max_bytes: int) -> RecordError:
    return RecordError(ErrorCode.PAYLOAD_TOO_LARGE, f"{_shown(uri)} is larger than {max_bytes} bytes")


def _shown(uri: str) -> str:
    """The URI as messages quote it: bounded, since it came from a topic."""
    if len(uri) <= _SHOWN_CHARS:
        return repr(uri)
    return repr(uri[:_SHOWN_CHARS]) + f"... ({len(uri)} characters)"
