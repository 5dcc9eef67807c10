"""Settings come from FACESTREAM_* variables, typed, with secrets kept out of what is printed."""

from __future__ import annotations

import pytest

from streams.config import Settings, documented
from streams.errors import BadSetting


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


# --- what each setting takes --------------------------------------------------------


@pytest.mark.parametrize(
    ("env", "message"),
    [
        (
            {"FACESTREAM_PROCESSING_GUARANTEE": "exactly-once"},
            "FACESTREAM_PROCESSING_GUARANTEE='exactly-once' is not one of at_least_once, exactly_once",
        ),
        ({"FACESTREAM_BACKEND": "tensorrt"}, "FACESTREAM_BACKEND='tensorrt' is not one of onnx, triton"),
        ({"FACESTREAM_LOG_FORMAT": "xml"}, "FACESTREAM_LOG_FORMAT='xml' is not one of plain, json"),
        ({"FACESTREAM_DETECTOR_FORMAT": "retina"}, "FACESTREAM_DETECTOR_FORMAT='retina' is not one of yunet, scrfd"),
        (
            {"FACESTREAM_KAFKA_SECURITY_PROTOCOL": "TLS"},
            "FACESTREAM_KAFKA_SECURITY_PROTOCOL='TLS' is not one of PLAINTEXT, SSL, SASL_PLAINTEXT, SASL_SSL",
        ),
        (
            {"FACESTREAM_KAFKA_SASL_MECHANISM": "GSSAPI"},
            "FACESTREAM_KAFKA_SASL_MECHANISM='GSSAPI' is not one of PLAIN, SCRAM-SHA-256, SCRAM-SHA-512",
        ),
        ({"FACESTREAM_MAX_BATCH": "0"}, "FACESTREAM_MAX_BATCH='0' must be at least 1"),
        ({"FACESTREAM_RERANK_THREADS": "-2"}, "FACESTREAM_RERANK_THREADS='-2' must be at least 0"),
        ({"FACESTREAM_SHUTDOWN_GRACE_S": "-1.5"}, "FACESTREAM_SHUTDOWN_GRACE_S='-1.5' must be at least 0"),
        ({"FACESTREAM_MAX_FACES": "many"}, "FACESTREAM_MAX_FACES='many' is not an integer"),
    ],
)
def test_a_value_a_setting_does_not_take_is_one_line_naming_the_variable(env, message):
    with pytest.raises(BadSetting) as refused:
        Settings.from_env(env)
    assert str(refused.value) == message


@pytest.mark.parametrize(
    ("values", "message"),
    [
        (
            {"processing_guarantee": "exactly-once"},
            "processing_guarantee='exactly-once' is not one of at_least_once, exactly_once (FACESTREAM_PROCESSING_GUARANTEE)",
        ),
        ({"decode_threads": -1}, "decode_threads=-1 must be at least 1 (FACESTREAM_DECODE_THREADS)"),
        ({"max_batch": "16"}, "max_batch='16' is not an integer (FACESTREAM_MAX_BATCH)"),
        ({"max_batch": True}, "max_batch=True is not an integer (FACESTREAM_MAX_BATCH)"),
        ({"emit_aligned": 1}, "emit_aligned=1 is not true or false (FACESTREAM_EMIT_ALIGNED)"),
    ],
)
def test_settings_made_in_code_are_checked_too(values, message):
    with pytest.raises(BadSetting) as refused:
        Settings(**values)
    assert str(refused.value) == message
    with pytest.raises(BadSetting):
        Settings().replace(**values)
    with pytest.raises(BadSetting, match=message.split(" (")[0].split("=")[0]):
        Settings.from_env({}, **values)


def test_choices_are_matched_ignoring_case_and_kept_as_declared():
    settings = Settings.from_env({"FACESTREAM_KAFKA_SECURITY_PROTOCOL": "sasl_ssl"}, log_format="JSON")
    assert (settings.kafka_security_protocol, settings.log_format) == ("SASL_SSL", "json")


def test_numbers_take_integers_where_a_float_goes():
    assert Settings(session_timeout_s=45).session_timeout_s == 45


def test_documented_help_names_the_choices():
    helps = {env: help_text for env, _default, help_text in documented()}
    assert helps["FACESTREAM_LOG_FORMAT"].endswith(" One of plain, json.")
    assert "One of" not in helps["FACESTREAM_APP_ID"]


# --- to_env -------------------------------------------------------------------------


def test_to_env_reproduces_the_settings():
    settings = Settings(
        app_id="x", emit_aligned=True, max_query_work=1.5e9, score_threshold=0.125, kafka_sasl_password="hunter2",
        processing_guarantee="exactly_once", uri_roots="/a:/b",
    )
    env = settings.to_env()
    assert set(env) == {name for name, _, _ in documented()}
    assert all(isinstance(value, str) for value in env.values())
    assert (env["FACESTREAM_EMIT_ALIGNED"], env["FACESTREAM_APP_ID"]) == ("true", "x")
    assert Settings.from_env(env) == settings
    assert Settings.from_env(Settings().to_env()) == Settings()
