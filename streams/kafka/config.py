"""Kafka client settings derived from :class:`Settings`, for every client the project creates.

faust (aiokafka) and confluent-kafka spell the same things differently; both
spellings are produced here so that security and size limits are applied
once, identically, to the worker, the CLI, the admin client and the tests.
"""

from __future__ import annotations

import ssl
from typing import Any

import faust

from streams.config import Settings
from streams.kafka.auth import confluent_error_handling

SASL_PROTOCOLS = {"SASL_PLAINTEXT", "SASL_SSL"}
TLS_PROTOCOLS = {"SSL", "SASL_SSL"}
KNOWN_PROTOCOLS = {"PLAINTEXT"} | SASL_PROTOCOLS | TLS_PROTOCOLS


def _check_protocol(settings: Settings) -> str:
    protocol = settings.kafka_security_protocol.upper()
    if protocol not in KNOWN_PROTOCOLS:
        raise ValueError(
            f"FACESTREAM_KAFKA_SECURITY_PROTOCOL={settings.kafka_security_protocol!r}: "
            f"expected one of {sorted(KNOWN_PROTOCOLS)}"
        )
    return protocol


def confluent_common(settings: Settings) -> dict[str, Any]:
    """Bootstrap servers and security for a confluent-kafka Producer, Consumer or AdminClient."""
    protocol = _check_protocol(settings)
    conf: dict[str, Any] = {
        "bootstrap.servers": settings.kafka_bootstrap_servers,
        "security.protocol": protocol,
        **confluent_error_handling(settings),  # refused credentials: one typed error, not endless FAIL lines
    }
    if protocol in SASL_PROTOCOLS:
        conf["sasl.mechanism"] = settings.kafka_sasl_mechanism
        conf["sasl.username"] = settings.kafka_sasl_username
        conf["sasl.password"] = settings.kafka_sasl_password
    if protocol in TLS_PROTOCOLS:
        conf.update(tls_locations(settings.kafka_ssl_cafile, settings.kafka_ssl_certfile, settings.kafka_ssl_keyfile))
    return conf


def tls_locations(cafile: str, certfile: str, keyfile: str) -> dict[str, str]:
    """The PEM files given, under the keys confluent-kafka's clients (Kafka and Schema Registry alike) read."""
    named = {"ssl.ca.location": cafile, "ssl.certificate.location": certfile, "ssl.key.location": keyfile}
    return {key: path for key, path in named.items() if path}


def confluent_producer(settings: Settings, **extra: Any) -> dict[str, Any]:
    """Idempotent, fully acknowledged producer sized for image payloads."""
    conf = confluent_common(settings)
    conf.update(
        {
            "acks": "all",
            "enable.idempotence": True,
            "message.max.bytes": settings.max_message_bytes,
            "linger.ms": 5,
            "compression.type": "none",  # JPEG/PNG payloads do not compress
            # Java's key hashing (murmur2), which faust/aiokafka use too: a key lands on the same
            # partition whichever client wrote it, so gallery entries and queries meet on one worker.
            "partitioner": "murmur2_random",
        }
    )
    conf.update(extra)
    return conf


def confluent_consumer(settings: Settings, group_id: str, **extra: Any) -> dict[str, Any]:
    """A consumer whose fetch limits admit the largest record any producer may send."""
    conf = confluent_common(settings)
    conf.update(
        {
            "group.id": group_id,
            "enable.auto.commit": False,
            "auto.offset.reset": "earliest",
            "fetch.max.bytes": max(settings.max_message_bytes * 2, 52428800),
            "max.partition.fetch.bytes": settings.max_message_bytes,
            "isolation.level": "read_committed",
        }
    )
    conf.update(extra)
    return conf


def faust_broker_url(settings: Settings) -> list[str]:
    return [f"kafka://{host.strip()}" for host in settings.kafka_bootstrap_servers.split(",") if host.strip()]


def faust_credentials(settings: Settings) -> faust.types.auth.CredentialsT | None:
    """aiokafka credentials for faust's ``broker_credentials``; None for PLAINTEXT."""
    protocol = _check_protocol(settings)
    context = _ssl_context(settings) if protocol in TLS_PROTOCOLS else None
    if protocol in SASL_PROTOCOLS:
        return faust.SASLCredentials(
            username=settings.kafka_sasl_username,
            password=settings.kafka_sasl_password,
            mechanism=settings.kafka_sasl_mechanism,
            ssl_context=context,
        )
    if context is not None:
        return faust.SSLCredentials(context)
    return None


def _ssl_context(settings: Settings) -> ssl.SSLContext:
    context = ssl.create_default_context(cafile=settings.kafka_ssl_cafile or None)
    if settings.kafka_ssl_certfile:
        context.load_cert_chain(settings.kafka_ssl_certfile, settings.kafka_ssl_keyfile or None)
    return context
