"""Claim-check reads: only regular files under a root, bounded, never blocking, never telling what exists outside."""

from __future__ import annotations

import os
import re
import resource
import time
from pathlib import Path

import pytest

from streams.claim_check import ClaimCheck
from streams.config import Settings
from streams.errors import ErrorCode, RecordError

MAX = 1000
OUTSIDE = re.compile(r"^'file:[^']*' is outside the claim-check roots$")


@pytest.fixture
def root(tmp_path: Path) -> Path:
    images = tmp_path / "img"
    images.mkdir()
    (images / "a.jpg").write_bytes(b"\xff\xd8jpeg")
    return images


@pytest.fixture
def check(root: Path) -> ClaimCheck:
    return ClaimCheck([root], MAX)


def refusal(check: ClaimCheck, uri: str) -> RecordError:
    with pytest.raises(RecordError) as info:
        check.read(uri)
    return info.value


def test_a_regular_file_under_the_root_is_read_whole(check, root):
    assert check.read(f"file://{root}/a.jpg") == b"\xff\xd8jpeg"
    assert check.read(f"file://localhost{root}/a.jpg") == b"\xff\xd8jpeg"
    assert check.read(f"file:{root}/a.jpg") == b"\xff\xd8jpeg"


def test_percent_encoded_names_are_decoded(check, root):
    (root / "b c%.jpg").write_bytes(b"spaced")
    assert check.read(f"file://{root}/b%20c%25.jpg") == b"spaced"


def test_a_symlink_to_another_file_under_the_root_is_followed(check, root):
    (root / "sub").mkdir()
    (root / "sub" / "link.jpg").symlink_to(root / "a.jpg")
    assert check.read(f"file://{root}/sub/link.jpg") == b"\xff\xd8jpeg"


@pytest.mark.parametrize(
    "path",
    ["/etc/passwd", "/etc/shadow", "/proc/self/environ", "/nonexistent/nothing.jpg", "/dev/zero", "/dev/urandom"],
)
def test_paths_outside_the_roots_get_one_refusal_whether_they_exist_or_not(check, path):
    error = refusal(check, f"file://{path}")
    assert error.code is ErrorCode.URI_NOT_ALLOWED
    assert OUTSIDE.match(error.message), error.message


def test_dot_dot_and_a_sibling_sharing_the_roots_prefix_are_outside(check, root):
    evil = root.parent / f"{root.name}-evil"
    evil.mkdir()
    (evil / "a.jpg").write_bytes(b"secret")
    for uri in (f"file://{evil}/a.jpg", f"file://{root}/../{evil.name}/a.jpg", f"file://{root}/%2E%2E/x"):
        error = refusal(check, uri)
        assert error.code is ErrorCode.URI_NOT_ALLOWED and OUTSIDE.match(error.message)


def test_symlinks_leading_outside_are_refused_like_any_outside_path(check, root):
    (root / "passwd.jpg").symlink_to("/etc/passwd")
    (root / "zero.jpg").symlink_to("/dev/zero")
    (root / "etc").symlink_to("/etc")
    for name in ("passwd.jpg", "zero.jpg", "etc/passwd"):
        error = refusal(check, f"file://{root}/{name}")
        assert error.code is ErrorCode.URI_NOT_ALLOWED and OUTSIDE.match(error.message)


def test_a_symlink_appearing_after_the_check_is_not_followed(check, root, monkeypatch):
    (root / "sub").mkdir()
    (root / "sub" / "a.jpg").write_bytes(b"inside")
    # The race: the path is checked while "sub" is a directory, then "sub" becomes a symlink to /etc.
    real_realpath = os.path.realpath

    def swap_after_resolving(path):
        resolved = real_realpath(path)
        (root / "sub").rename(root / "gone")
        (root / "sub").symlink_to("/etc")
        return resolved

    monkeypatch.setattr(os.path, "realpath", swap_after_resolving)
    error = refusal(check, f"file://{root}/sub/passwd")
    assert error.code is ErrorCode.URI_NOT_ALLOWED and OUTSIDE.match(error.message)


def test_reads_are_off_without_roots(root):
    for check in (ClaimCheck([], MAX), ClaimCheck.from_settings(Settings(uri_roots=""))):
        error = refusal(check, f"file://{root}/a.jpg")
        assert error.code is ErrorCode.URI_NOT_ALLOWED and "off" in error.message


def test_roots_come_from_the_settings_and_empty_entries_are_not_the_working_directory(root, tmp_path, monkeypatch):
    other = tmp_path / "other"
    other.mkdir()
    (other / "o.jpg").write_bytes(b"other")
    monkeypatch.chdir(tmp_path)
    check = ClaimCheck.from_settings(Settings(uri_roots=os.pathsep.join(["", str(root), str(other), ""])))
    assert check.max_bytes == Settings().max_image_bytes
    assert check.read(f"file://{other}/o.jpg") == b"other"
    assert refusal(check, f"file://{tmp_path}/img/../x").code is ErrorCode.URI_NOT_ALLOWED


@pytest.mark.parametrize(
    "uri, fragment",
    [
        ("file://evil.example/{root}/a.jpg", "names a host"),
        ("file://user@localhost{root}/a.jpg", "names a host"),
        ("file://etc/passwd", "names a host"),
        ("file:etc/passwd", "not an absolute path"),
        ("file:a.jpg", "not an absolute path"),
        ("file://{root}/a.jpg?x=1", "query or fragment"),
        ("file://{root}/a.jpg#x", "query or fragment"),
        ("file://{root}/a\n.jpg", "control character"),
        ("file:///etc/passwd%00.jpg", "NUL byte"),
        ("file://{root}/a.jpg%00", "NUL byte"),
        ("file://{root}/a.jpg\x00", "control character"),
    ],
)
def test_uris_naming_no_local_absolute_path_are_not_allowed(check, root, uri, fragment):
    error = refusal(check, uri.format(root=root))
    assert error.code is ErrorCode.URI_NOT_ALLOWED and fragment in error.message


def test_other_schemes_are_unreadable(check):
    error = refusal(check, "https://example.com/a.jpg")
    assert error.code is ErrorCode.URI_UNREADABLE and "unsupported URI scheme 'https'" in error.message


def test_a_missing_file_under_the_root_is_unreadable(check, root):
    error = refusal(check, f"file://{root}/missing.jpg")
    assert error.code is ErrorCode.URI_UNREADABLE and "No such file" in error.message


def test_a_fifo_under_the_root_is_refused_at_once(check, root):
    os.mkfifo(root / "pipe.jpg")
    started = time.perf_counter()
    error = refusal(check, f"file://{root}/pipe.jpg")
    assert time.perf_counter() - started < 0.2
    assert error.code is ErrorCode.URI_UNREADABLE and "not a regular file" in error.message


def test_a_file_swapped_for_a_fifo_after_it_was_judged_is_refused_without_blocking(check, root, monkeypatch):
    real_stat = os.stat

    def stat_then_swap(*args, **kwargs):
        info = real_stat(*args, **kwargs)
        (root / "a.jpg").unlink()
        os.mkfifo(root / "a.jpg")
        return info

    monkeypatch.setattr(os, "stat", stat_then_swap)
    started = time.perf_counter()
    error = refusal(check, f"file://{root}/a.jpg")
    assert time.perf_counter() - started < 0.2
    assert error.code is ErrorCode.URI_UNREADABLE and "not a regular file" in error.message


def test_a_directory_under_the_root_and_the_root_itself_are_not_regular_files(check, root):
    (root / "dir.jpg").mkdir()
    for uri in (f"file://{root}/dir.jpg", f"file://{root}", f"file://{root}/"):
        error = refusal(check, uri)
        assert error.code is ErrorCode.URI_UNREADABLE and "not a regular file" in error.message


def test_the_size_limit_is_inclusive(check, root):
    (root / "max.jpg").write_bytes(b"x" * MAX)
    (root / "over.jpg").write_bytes(b"x" * (MAX + 1))
    assert len(check.read(f"file://{root}/max.jpg")) == MAX
    error = refusal(check, f"file://{root}/over.jpg")
    assert error.code is ErrorCode.PAYLOAD_TOO_LARGE


def test_a_huge_sparse_file_is_refused_from_its_size_without_reading_it(root):
    with open(root / "huge.jpg", "wb") as f:
        f.truncate(2 * 1024**3)
    check = ClaimCheck([root], Settings().max_image_bytes)
    peak_before = _peak_rss_kib()
    started = time.perf_counter()
    error = refusal(check, f"file://{root}/huge.jpg")
    assert time.perf_counter() - started < 2.0
    assert _peak_rss_kib() - peak_before < 50 * 1024
    assert error.code is ErrorCode.PAYLOAD_TOO_LARGE


def test_a_file_growing_past_the_limit_after_its_size_was_checked_is_refused(check, root, monkeypatch):
    grows = root / "grows.jpg"
    grows.write_bytes(b"x" * 10)
    real_fstat = os.fstat

    def fstat_then_grow(fd):
        info = real_fstat(fd)
        grows.write_bytes(b"x" * (MAX + 500))
        return info

    monkeypatch.setattr(os, "fstat", fstat_then_grow)
    assert refusal(check, f"file://{grows}").code is ErrorCode.PAYLOAD_TOO_LARGE


def test_no_descriptor_is_left_open(check, root):
    os.mkfifo(root / "pipe.jpg")
    (root / "link.jpg").symlink_to("/etc/passwd")
    before = len(os.listdir("/proc/self/fd"))
    for name in ("a.jpg", "pipe.jpg", "link.jpg", "missing.jpg", "a.jpg/x", ""):
        try:
            check.read(f"file://{root}/{name}")
        except RecordError:
            pass
    assert len(os.listdir("/proc/self/fd")) == before


def _peak_rss_kib() -> int:
    return resource.getrusage(resource.RUSAGE_SELF).ru_maxrss
