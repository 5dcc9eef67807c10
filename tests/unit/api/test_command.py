"""``facestream api`` is a command of the CLI, taking its address from the settings unless told otherwise."""

from __future__ import annotations

from streams.cli import build_parser
from streams.cli.api import run


def test_the_api_command_is_registered_with_its_overrides():
    args = build_parser().parse_args(["api", "--port", "9001", "--host", "0.0.0.0"])
    assert args.func is run and (args.host, args.port) == ("0.0.0.0", 9001)
    defaults = build_parser().parse_args(["api"])
    assert (defaults.host, defaults.port) == (None, None)  # FACESTREAM_API_HOST / _PORT then
