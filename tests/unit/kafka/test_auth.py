"""Which librdkafka errors mean "refused", and what the typed error says (tests/integration/test_security.py
drives the same code against real SASL and TLS brokers)."""

from __future__ import annotations

import logging

import pytest
from confluent_kafka import KafkaError

from streams.config import Settings
from streams.errors import KafkaAuthenticationFailed
from streams.kafka.auth import ClientErrorCallback, authentication_failed, refused

SETTINGS = Settings(
    kafka_bootstrap_servers="kafka-1:9093",
    kafka_security_protocol="SASL_SSL",
    kafka_sasl_username="svc-face",
    kafka_sasl_password="s3cret-pw",
)


@pytest.mark.parametrize(
    ("code", "text", "expected"),
    [
        (KafkaError._AUTHENTICATION, "SASL authentication error: invalid credentials", True),
        (KafkaError._SSL, "SSL handshake failed: certificate verify failed", True),
        (KafkaError._TRANSPORT, "Receive failed: ssl/tls alert bad certificate: SSL alert number 42", True),
        (KafkaError._TRANSPORT, "Connection refused", False),
        (KafkaError._ALL_BROKERS_DOWN, "1/1 brokers are down", False),
    ],
)
def test_refused_means_retrying_cannot_help(code, text, expected):
    assert refused(KafkaError(code, text)) is expected


def test_the_typed_error_names_who_and_where_but_never_the_password():
    error = authentication_failed(SETTINGS, "broker said: bad password s3cret-pw")
    message = str(error)
    assert "user 'svc-face'" in message and "SASL_SSL SCRAM-SHA-512" in message and "kafka-1:9093" in message
    assert "s3cret-pw" not in message and "***" in message


def test_error_callback_raises_on_refusal_and_logs_other_errors_once(caplog):
    callback = ClientErrorCallback(SETTINGS)
    with caplog.at_level(logging.WARNING, logger="streams.kafka.auth"):
        for _ in range(5):
            callback(KafkaError(KafkaError._TRANSPORT, "Connection refused"))
        callback(KafkaError(KafkaError._ALL_BROKERS_DOWN, "1/1 brokers are down"))
    assert len(caplog.records) == 2
    with pytest.raises(KafkaAuthenticationFailed, match="invalid credentials"):
        callback(KafkaError(KafkaError._AUTHENTICATION, "invalid credentials"))
