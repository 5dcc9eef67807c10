"""``facestream asyncapi``: write the topic contract (AsyncAPI 3.0) for the current settings."""

from __future__ import annotations

import argparse
from pathlib import Path

from streams.asyncapi import render
from streams.config import Settings

DEFAULT_PATH = Path("docs/asyncapi.yaml")


def register(subparsers: argparse._SubParsersAction) -> None:
    parser = subparsers.add_parser("asyncapi", help="Write the AsyncAPI 3.0 document of every topic.")
    parser.add_argument("--output", "-o", type=Path, default=DEFAULT_PATH,
                        help=f"where to write it (default {DEFAULT_PATH}; - for standard output)")
    parser.set_defaults(func=run)


def run(args: argparse.Namespace) -> int:
    text = render(Settings.from_env())
    if str(args.output) == "-":
        print(text, end="")
    else:
        args.output.write_text(text)
        print(f"wrote {args.output}")
    return 0
