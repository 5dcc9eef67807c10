"""The ``facestream`` command: one sub-command per module of this package.

Each module in ``COMMANDS`` exposes ``register(subparsers)``, which adds its
parser and sets ``func`` (taking the parsed args and returning an exit code).
What several commands share (their Kafka set-up, photo arguments, in-process
embedding, output codes) is in ``_common``; commands never import each other.
"""

from __future__ import annotations

import argparse
import importlib
import sys

from ..errors import BadSetting, KafkaAuthenticationFailed
from ..registry import RegistryUnavailable

COMMANDS = [
    # modules of streams.cli, in the order `facestream --help` lists them
    "models",
    "embed",
    "worker",
    "produce",
    "consume",
    "enroll",
    "query",
    "calibrate",
    "api",
    "asyncapi",
]


def build_parser() -> argparse.ArgumentParser:
    parser = argparse.ArgumentParser(prog="facestream", description="Face embeddings and re-ranking as a Kafka stream processor.")
    sub = parser.add_subparsers(dest="command", required=True)
    for name in COMMANDS:
        importlib.import_module(f"streams.cli.{name}").register(sub)
    return parser


def main(argv: list[str] | None = None) -> int:
    args = build_parser().parse_args(argv)
    try:
        return int(args.func(args) or 0)
    except (BadSetting, KafkaAuthenticationFailed, RegistryUnavailable) as exc:  # not a bug to debug: one line, no stack trace
        print(f"facestream {args.command}: {exc}", file=sys.stderr)
        return 2


if __name__ == "__main__":
    sys.exit(main())
