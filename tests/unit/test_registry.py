"""What facestream sends a Schema Registry, decided without one: subjects, client configuration, secrets."""

from __future__ import annotations

import pytest

from streams import schemas
from streams.config import Settings
from streams.registry import SchemaRegistry, client_config


@pytest.mark.parametrize(("strategy", "subject"), [
    ("topic_name", "face.images-value"),
    ("record_name", "io.facestream.ImageEvent"),
    ("topic_record_name", "face.images-io.facestream.ImageEvent"),
])
def test_subject_name_strategies_name_subjects_as_confluent_does(strategy, subject):
    registry = SchemaRegistry(client=None, strategy=strategy)
    assert registry.subject(schemas.load_json("ImageEvent"), "face.images") == subject


def test_client_configuration_carries_credentials_and_tls_and_no_retries_of_its_own():
    settings = Settings.from_env({
        "FACESTREAM_SCHEMA_REGISTRY_URL": "https://registry:8081",
        "FACESTREAM_SCHEMA_REGISTRY_USERNAME": "svc",
        "FACESTREAM_SCHEMA_REGISTRY_PASSWORD": "s3cret",
        "FACESTREAM_SCHEMA_REGISTRY_SSL_CAFILE": "/etc/ca.pem",
    })
    config = client_config(settings)
    assert config["basic.auth.user.info"] == "svc:s3cret"
    assert config["ssl.ca.location"] == "/etc/ca.pem" and "ssl.key.location" not in config
    assert config["max.retries"] == 0  # the worker's backoff retries, forever, without blocking a thread
    assert "s3cret" not in repr(settings) and "s3cret" not in str(settings.redacted())


def test_no_credentials_means_no_basic_auth():
    assert "basic.auth.user.info" not in client_config(Settings.from_env({"FACESTREAM_SCHEMA_REGISTRY_URL": "http://r"}))
