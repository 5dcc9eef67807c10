"""Secure Kafka against a real broker with a SASL_PLAINTEXT / SCRAM-SHA-512 listener (scripts/kafka-local).

Right credentials: confluent-kafka clients and the real worker do their work.
Wrong password: one typed KafkaAuthenticationFailed, fast, no retry storm at
the broker, no stack traces, and the password in no output.
"""

from __future__ import annotations

import os
import subprocess
import sys
import time
import uuid
from pathlib import Path

import pytest
from confluent_kafka import Producer

from streams.config import Settings
from streams.errors import KafkaAuthenticationFailed
from streams.kafka_config import confluent_producer
from streams.kafka_preflight import verify_kafka_credentials
from streams.topics import TopicNames, ensure_topics
from tests.kafka_broker import REPO, local_broker
from tests.photos import PORTRAITS
from tests.topic_reader import read_topic
from tests.worker_process import WorkerProcess, settings_env

pytestmark = pytest.mark.integration

USER = "facestream-it"
PASSWORD = "right-" + uuid.uuid4().hex
WRONG = "wrong-" + uuid.uuid4().hex


class SaslBroker:
    def __init__(self, bootstrap: str, logs: Path) -> None:
        self.bootstrap = bootstrap
        self.logs = logs

    def failed_logins(self) -> int:
        """Authentication failures the broker has logged so far (one per refused connection)."""
        text = (self.logs / "server.log").read_text(errors="replace")
        return text.count("Failed authentication with")


@pytest.fixture(scope="module")
def sasl_broker(tmp_path_factory) -> SaslBroker:
    workdir = tmp_path_factory.mktemp("kafka-sasl")
    env = {
        "KAFKA_LOCAL_SASL": "1",
        "KAFKA_LOCAL_SASL_USERNAME": USER,
        "KAFKA_LOCAL_SASL_PASSWORD": PASSWORD,
        "KAFKA_LOCAL_DIR": str(workdir),
    }
    with local_broker(**env) as bootstrap:
        yield SaslBroker(bootstrap, workdir / "logs")


def secure_settings(broker: SaslBroker, password: str, tmp_path: Path) -> Settings:
    run = uuid.uuid4().hex[:8]
    return Settings.from_env(
        None,
        kafka_bootstrap_servers=broker.bootstrap,
        kafka_security_protocol="SASL_PLAINTEXT",
        kafka_sasl_mechanism="SCRAM-SHA-512",
        kafka_sasl_username=USER,
        kafka_sasl_password=password,
        app_id=f"facestream-sasl-{run}",
        topic_prefix=f"s{run}.",
        topic_partitions=1,
        data_dir=str(tmp_path / "worker"),
    )


def test_worker_and_clients_work_with_the_right_credentials(sasl_broker, photo_paths, tmp_path):
    settings = secure_settings(sasl_broker, PASSWORD, tmp_path)
    verify_kafka_credentials(settings)  # the handshake faust's aiokafka makes: accepted
    topics = TopicNames.from_settings(settings)
    ensure_topics(settings)  # confluent-kafka AdminClient
    names = sorted(PORTRAITS)[:3]
    with WorkerProcess(settings, tmp_path / "worker.log"):  # faust (aiokafka) consumer + producer
        env = {**os.environ, **settings_env(settings)}
        produced = subprocess.run(
            [sys.executable, "-m", "streams", "produce", "--no-progress", *(str(photo_paths[n]) for n in names)],
            cwd=REPO, env=env, capture_output=True, text=True, timeout=120, check=False,
        )  # confluent-kafka Producer
        assert produced.returncode == 0, produced.stderr
        embeddings = read_topic(settings, topics.embeddings, until=lambda r: len(r) >= len(names))  # Consumer
    assert sorted(r.record["image_id"] for r in embeddings) == names
    assert all(len(r.record["faces"]) == 1 for r in embeddings)
    assert PASSWORD not in (tmp_path / "worker.log").read_text(errors="replace") + produced.stdout + produced.stderr


def test_wrong_password_is_one_typed_error_for_a_confluent_client(sasl_broker, tmp_path, capfd, caplog):
    settings = secure_settings(sasl_broker, WRONG, tmp_path)
    producer = Producer(confluent_producer(settings))
    producer.produce("any-topic", value=b"x")
    started = time.monotonic()
    with pytest.raises(KafkaAuthenticationFailed) as raised:
        while time.monotonic() - started < 30:
            producer.poll(0.1)
    elapsed = time.monotonic() - started
    producer.purge()
    producer.close()  # the caller's part: stop on the typed error

    message = str(raised.value)
    assert elapsed < 5, f"took {elapsed:.1f} s to report"
    assert "Kafka refused our credentials" in message and USER in message and "SCRAM-SHA-512" in message
    assert WRONG not in message

    settled = sasl_broker.failed_logins()
    time.sleep(3)
    assert sasl_broker.failed_logins() == settled, "the client kept retrying after the error"

    out, err = capfd.readouterr()
    logged = "\n".join(r.getMessage() for r in caplog.records)
    assert WRONG not in out + err + logged
    assert "FAIL" not in err  # librdkafka's per-attempt lines are not printed on stderr


def test_wrong_password_stops_the_worker_with_one_clear_line(sasl_broker, tmp_path):
    settings = secure_settings(sasl_broker, WRONG, tmp_path)
    before = sasl_broker.failed_logins()
    env = {**os.environ, **settings_env(settings)}
    started = time.monotonic()
    done = subprocess.run(
        [sys.executable, "-m", "streams", "worker"], cwd=REPO, env=env, capture_output=True, text=True, timeout=60, check=False
    )
    elapsed = time.monotonic() - started
    output = done.stdout + done.stderr

    assert done.returncode == 2, output
    assert elapsed < 30, f"took {elapsed:.1f} s to give up"
    (line,) = output.strip().splitlines()
    assert line.startswith("facestream worker: Kafka refused our credentials"), line
    assert USER in line and WRONG not in output and "Traceback" not in output
    assert sasl_broker.failed_logins() - before == 1  # one attempt, no storm
