"""Before a worker or a command starts: one handshake proving the brokers accept our credentials.

Without it, a wrong password surfaces from faust as "Unable to bootstrap"
printed with two stack traces; with it, the worker stops at once with one
:class:`~streams.errors.KafkaAuthenticationFailed` that says what to fix.
"""

from __future__ import annotations

import asyncio
import ssl
from collections.abc import Mapping
from typing import Any

from aiokafka.conn import create_conn
from aiokafka.errors import KafkaConnectionError, SaslAuthenticationFailed
from faust.transport.drivers.aiokafka import credentials_to_aiokafka_auth

from streams.config import Settings
from streams.kafka.auth import authentication_failed
from streams.kafka.config import faust_credentials

HANDSHAKE_ATTEMPTS = 3
RETRY_DELAY_S = 0.5


def verify_kafka_credentials(settings: Settings, timeout_s: float = 10.0) -> None:
    """Authenticate once against the first bootstrap server that answers, exactly as faust's aiokafka will.

    Raises :class:`~streams.errors.KafkaAuthenticationFailed` when the broker
    refuses; brokers that cannot be reached are left to the clients' own retries.
    Runs on a private event loop, so the caller's (faust's) loop is left untouched.
    """
    auth = credentials_to_aiokafka_auth(faust_credentials(settings))
    loop = asyncio.new_event_loop()
    try:
        loop.run_until_complete(_handshake(settings, auth, timeout_s))
    finally:
        loop.close()


async def _handshake(settings: Settings, auth: Mapping[str, Any], timeout_s: float) -> None:
    for server in settings.kafka_bootstrap_servers.split(","):
        host, _, port = server.strip().rpartition(":")
        for attempt in range(1, HANDSHAKE_ATTEMPTS + 1):
            try:
                conn = await create_conn(host, int(port), request_timeout_ms=int(timeout_s * 1000), **auth)
            except SaslAuthenticationFailed as exc:
                raise authentication_failed(settings, str(exc)) from None
            except ssl.SSLError as exc:  # before OSError, its base: an untrusted broker certificate
                raise authentication_failed(settings, f"TLS handshake failed: {exc.reason or exc}") from None
            except KafkaConnectionError:
                # With TLS 1.3 a broker that rejects our client certificate just closes the connection
                # after the handshake; a broker that merely restarted would not do so every time.
                if auth.get("ssl_context") is None or attempt < HANDSHAKE_ATTEMPTS:
                    await asyncio.sleep(RETRY_DELAY_S)
                    continue
                raise authentication_failed(
                    settings,
                    f"the broker closed the TLS connection on each of {HANDSHAKE_ATTEMPTS} attempts: "
                    "it refused our client certificate, or we presented none",
                ) from None
            except OSError:
                break  # unreachable: try the next bootstrap server
            conn.close()
            return
