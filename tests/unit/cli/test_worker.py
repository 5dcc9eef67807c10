"""``facestream worker`` (and every command) refuses a bad setting in one line, exit status 2, no traceback."""

from __future__ import annotations

import subprocess
import sys

import pytest

from streams.cli import main
from tests.support import REPO

LINE = "FACESTREAM_PROCESSING_GUARANTEE='exactly-once' is not one of at_least_once, exactly_once"


@pytest.mark.parametrize("argv", [["worker"], ["models", "fetch"]])
def test_a_bad_setting_is_one_line_and_exit_status_2(argv, capsys, monkeypatch):
    monkeypatch.setenv("FACESTREAM_PROCESSING_GUARANTEE", "exactly-once")
    assert main(argv) == 2
    captured = capsys.readouterr()
    assert captured.err == f"facestream {argv[0]}: {LINE}\n" and captured.out == ""


def test_the_worker_process_prints_only_that_line():
    done = subprocess.run(
        [sys.executable, "-m", "streams", "worker"], cwd=REPO, capture_output=True, text=True, timeout=60,
        env={"FACESTREAM_PROCESSING_GUARANTEE": "exactly-once", "PATH": ""},
    )
    assert (done.returncode, done.stderr, done.stdout) == (2, f"facestream worker: {LINE}\n", "")
