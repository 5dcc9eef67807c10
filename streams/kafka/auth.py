"""A broker that refuses our credentials is one typed error, raised once, not a stream of retries.

Both Kafka client libraries treat a failed SASL handshake as a transient
connection failure: librdkafka reconnects every few hundred milliseconds and
prints a ``FAIL`` line each time; aiokafka logs the reason and then raises a
generic "Unable to bootstrap", which faust prints with two stack traces. Wrong
credentials never fix themselves, so here they become
:class:`~streams.errors.KafkaAuthenticationFailed`:

* commands start with :func:`streams.kafka.preflight.verify_kafka_credentials`,
  a single handshake with the exact settings faust's aiokafka will use;
* confluent-kafka clients get :func:`confluent_error_handling` in their
  configuration, for credentials revoked while they run: its ``error_cb``
  raises the typed error out of the client's next ``poll()`` (``flush()``
  only raises it when it returns), and librdkafka's log lines go through
  Python logging (so they follow ``FACESTREAM_LOG_FORMAT``) without
  repeating what the error callback reports.
"""

from __future__ import annotations

import logging
from typing import Any

from confluent_kafka import KafkaError

from streams.config import Settings
from streams.errors import KafkaAuthenticationFailed

log = logging.getLogger(__name__)
LIBRDKAFKA_LOG = logging.getLogger("streams.librdkafka")


def authentication_failed(settings: Settings, reason: str) -> KafkaAuthenticationFailed:
    """The typed error, naming who tried to log in where and how; the password never appears."""
    who = f"user {settings.kafka_sasl_username!r}, " if settings.kafka_sasl_username else ""
    mechanism = f" {settings.kafka_sasl_mechanism}" if "SASL" in settings.kafka_security_protocol.upper() else ""
    message = (
        f"Kafka authentication failed ({who}{settings.kafka_security_protocol}{mechanism}, "
        f"brokers {settings.kafka_bootstrap_servers}): {reason}. "
        "Check FACESTREAM_KAFKA_SASL_USERNAME / FACESTREAM_KAFKA_SASL_PASSWORD and the TLS files."
    )
    if settings.kafka_sasl_password:
        message = message.replace(settings.kafka_sasl_password, "***")
    return KafkaAuthenticationFailed(message)


def refused(error: KafkaError) -> bool:
    """A refused SASL login or a failed TLS handshake (untrusted broker, rejected client certificate).

    librdkafka reports a TLS alert sent by the broker (bad or missing client
    certificate) as a transport error, like a dropped connection; its text tells them apart.
    """
    code = error.code()
    if code in (KafkaError._AUTHENTICATION, KafkaError._SSL):
        return True
    return code == KafkaError._TRANSPORT and "ssl/tls alert" in error.str()


class ClientErrorCallback:
    """librdkafka ``error_cb``: authentication failures raise; other errors are logged when they change."""

    def __init__(self, settings: Settings) -> None:
        self.settings = settings
        self._last_code: int | None = None

    def __call__(self, error: KafkaError) -> None:
        if refused(error):
            raise authentication_failed(self.settings, error.str())
        if error.code() != self._last_code:
            # librdkafka retries these on its own; one line per change of state is enough.
            log.warning("Kafka client: %s: %s", error.name(), error.str())
            self._last_code = error.code()


class _ReportedByErrorCallback(logging.Filter):
    """Drops librdkafka's per-attempt ``FAIL`` lines (the error callback reports them) unless debugging."""

    def filter(self, record: logging.LogRecord) -> bool:
        return not record.getMessage().startswith("FAIL ") or LIBRDKAFKA_LOG.isEnabledFor(logging.DEBUG)


LIBRDKAFKA_LOG.addFilter(_ReportedByErrorCallback())


def confluent_error_handling(settings: Settings) -> dict[str, Any]:
    """``error_cb`` and ``logger`` entries for a confluent-kafka Producer, Consumer or AdminClient config."""
    return {"error_cb": ClientErrorCallback(settings), "logger": LIBRDKAFKA_LOG}

