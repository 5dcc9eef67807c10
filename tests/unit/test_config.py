"""Settings come from FACESTREAM_* variables, typed, with secrets kept out of what is printed."""

from __future__ import annotations

import pytest

from streams.config import Settings, documented


def test_defaults_without_environment():
    settings = Settings.from_env({})
    assert settings.kafka_bootstrap_servers == "127.0.0.1:9092"
    assert settings.app_id == "facestream"
    assert settings.topic("images") == "face.images"
    assert settings.topic("rerank-results") == "face.rerank-results"
    assert settings.max_image_bytes < settings.max_message_bytes


def test_values_are_parsed_by_type():
    env = {
        "FACESTREAM_MAX_BATCH": "32",
        "FACESTREAM_SCORE_THRESHOLD": "0.75",
        "FACESTREAM_EMIT_ALIGNED": "yes",
        "FACESTREAM_TOPIC_PREFIX": "prod.face.",
    }
    settings = Settings.from_env(env)
    assert (settings.max_batch, settings.score_threshold, settings.emit_aligned) == (32, 0.75, True)
    assert settings.topic("dlq") == "prod.face.dlq"
    assert Settings.from_env({"FACESTREAM_EMIT_ALIGNED": "off"}).emit_aligned is False


@pytest.mark.parametrize("name, raw", [("FACESTREAM_MAX_BATCH", "many"), ("FACESTREAM_EMIT_ALIGNED", "perhaps")])
def test_bad_values_name_the_variable(name, raw):
    with pytest.raises(ValueError, match=name):
        Settings.from_env({name: raw})


def test_overrides_win_over_the_environment():
    assert Settings.from_env({"FACESTREAM_APP_ID": "a"}, app_id="b").app_id == "b"


def test_secrets_are_redacted():
    settings = Settings.from_env({"FACESTREAM_KAFKA_SASL_PASSWORD": "hunter2"})
    assert settings.redacted()["kafka_sasl_password"] == "***"
    assert "hunter2" not in repr(settings.redacted())
    assert "hunter2" not in repr(settings)


def test_every_setting_is_documented():
    for env, _default, help_text in documented():
        assert env.startswith("FACESTREAM_") and help_text.endswith(".")
