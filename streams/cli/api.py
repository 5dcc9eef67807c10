"""``facestream api``: serve the HTTP API (``streams.api``) under uvicorn, configured by ``FACESTREAM_*``.

It needs no worker to embed images or rank inline candidates; gallery routes
reach the workers over Kafka. It binds ``FACESTREAM_API_HOST`` (loopback by
default) on ``FACESTREAM_API_PORT``.
"""

from __future__ import annotations

import argparse

from ..config import Settings


def register(sub: argparse._SubParsersAction) -> None:
    parser = sub.add_parser("api", help="serve the HTTP API over the same pipeline, re-ranker and galleries")
    parser.add_argument("--host", default=None, help="override FACESTREAM_API_HOST")
    parser.add_argument("--port", type=int, default=None, help="override FACESTREAM_API_PORT")
    parser.set_defaults(func=run)


def run(args: argparse.Namespace) -> int:
    import uvicorn

    from ..api.app import create_app
    from ..kafka import verify_kafka_credentials
    from ..logs import logging_config

    settings = Settings.from_env()
    verify_kafka_credentials(settings)  # refused credentials: one clear line now, not a 503 on every gallery call
    uvicorn.run(
        create_app(settings),
        host=args.host or settings.api_host,
        port=args.port or settings.api_port,
        log_config=logging_config(settings),
        timeout_graceful_shutdown=int(settings.shutdown_grace_s),
    )
    return 0
