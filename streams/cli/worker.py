"""``facestream worker``: run a faust worker with every agent, configured by ``FACESTREAM_*``."""

from __future__ import annotations

import argparse

from ..config import Settings


def register(sub: argparse._SubParsersAction) -> None:
    parser = sub.add_parser("worker", help="run the stream processor (all agents)")
    parser.add_argument("--loglevel", default=None, help="override FACESTREAM_LOG_LEVEL")
    parser.set_defaults(func=run)


def run(args: argparse.Namespace) -> int:
    from ..app import create_app
    from ..kafka import ensure_topics, verify_kafka_credentials
    from ..logs import logging_config
    from ..shutdown import Worker

    settings = Settings.from_env()
    verify_kafka_credentials(settings)  # wrong credentials: one clear error, before faust's retries and tracebacks
    ensure_topics(settings)
    app = create_app(settings)
    level = (args.loglevel or settings.log_level).lower()
    worker = Worker(
        app,
        loglevel={"warning": "warn", "critical": "crit"}.get(level, level),
        quiet=True,
        logging_config=logging_config(settings.replace(log_level=level)),  # plain or JSON lines with trace ids
        shutdown_grace_s=settings.shutdown_grace_s,  # SIGTERM ends it within this long, stuck or not
    )
    worker.execute_from_commandline()
    return 0
