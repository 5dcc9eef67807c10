"""Secure Kafka against real brokers started by scripts/kafka-local: SCRAM-SHA-512 over
SASL_PLAINTEXT, and over SASL_SSL with mutual TLS (the broker demands a client certificate).

Right credentials: confluent-kafka clients and the real worker do their work.
Wrong password, untrusted broker, missing client certificate: one typed
KafkaAuthenticationFailed, fast, no retry storm at the broker, no stack traces,
and the password in no output.
"""

from __future__ import annotations

import os
import subprocess
import sys
import time
import uuid
from dataclasses import dataclass
from pathlib import Path

import pytest
from confluent_kafka import Producer

from streams.config import Settings
from streams.errors import KafkaAuthenticationFailed
from streams.kafka import TopicNames, confluent_producer, ensure_topics, verify_kafka_credentials
from streams.kafka.preflight import HANDSHAKE_ATTEMPTS
from tests.support import REPO
from tests.support.broker import local_broker
from tests.support.photos import PORTRAITS
from tests.support.topics import read_topic
from tests.support.worker import WorkerProcess

pytestmark = pytest.mark.integration

USER = "facestream-it"
PASSWORD = "right-" + uuid.uuid4().hex
WRONG = "wrong-" + uuid.uuid4().hex


@dataclass(frozen=True)
class SecureBroker:
    protocol: str
    bootstrap: str
    workdir: Path

    @property
    def tls(self) -> Path:
        return self.workdir / "tls"

    def failed_logins(self) -> int:
        """Refused connections (SASL or TLS) the broker has logged so far."""
        text = (self.workdir / "logs" / "server.log").read_text(errors="replace")
        return text.count("Failed authentication with")

    def settings(self, tmp_path: Path, password: str = PASSWORD, **overrides) -> Settings:
        run = uuid.uuid4().hex[:8]
        tls = (
            {
                "kafka_ssl_cafile": str(self.tls / "ca.pem"),
                "kafka_ssl_certfile": str(self.tls / "client.pem"),
                "kafka_ssl_keyfile": str(self.tls / "client.key"),
            }
            if self.protocol == "SASL_SSL"
            else {}
        )
        values = {
            "kafka_bootstrap_servers": self.bootstrap,
            "kafka_security_protocol": self.protocol,
            "kafka_sasl_mechanism": "SCRAM-SHA-512",
            "kafka_sasl_username": USER,
            "kafka_sasl_password": password,
            "app_id": f"facestream-secure-{run}",
            "topic_prefix": f"s{run}.",
            "topic_partitions": 1,
            "data_dir": str(tmp_path / "worker"),
            **tls,
            **overrides,
        }
        return Settings.from_env(None, **values)


def start_broker(tmp_path_factory, protocol: str):
    workdir = tmp_path_factory.mktemp(protocol.lower())
    env = {
        "KAFKA_LOCAL_SASL": "1",
        "KAFKA_LOCAL_TLS": "1" if protocol == "SASL_SSL" else "0",
        "KAFKA_LOCAL_SASL_USERNAME": USER,
        "KAFKA_LOCAL_SASL_PASSWORD": PASSWORD,
        "KAFKA_LOCAL_DIR": str(workdir),
    }
    return local_broker(**env), workdir


@pytest.fixture(scope="module")
def sasl_broker(tmp_path_factory):
    broker, workdir = start_broker(tmp_path_factory, "SASL_PLAINTEXT")
    with broker as bootstrap:
        yield SecureBroker("SASL_PLAINTEXT", bootstrap, workdir)


@pytest.fixture(scope="module")
def tls_broker(tmp_path_factory):
    broker, workdir = start_broker(tmp_path_factory, "SASL_SSL")
    with broker as bootstrap:
        yield SecureBroker("SASL_SSL", bootstrap, workdir)


@pytest.fixture(params=["SASL_PLAINTEXT", "SASL_SSL"])
def secure_broker(request) -> SecureBroker:
    return request.getfixturevalue({"SASL_PLAINTEXT": "sasl_broker", "SASL_SSL": "tls_broker"}[request.param])


def run_worker_until_exit(settings: Settings) -> tuple[subprocess.CompletedProcess, float]:
    started = time.monotonic()
    done = subprocess.run(
        [sys.executable, "-m", "streams", "worker"],
        cwd=REPO, env={**os.environ, **settings.to_env()}, capture_output=True, text=True, timeout=60, check=False,
    )
    return done, time.monotonic() - started


def assert_one_clear_line(done: subprocess.CompletedProcess, elapsed: float, reason: str) -> None:
    output = done.stdout + done.stderr
    assert done.returncode == 2, output
    assert elapsed < 30, f"took {elapsed:.1f} s to give up"
    (line,) = output.strip().splitlines()
    assert line.startswith("facestream worker: Kafka authentication failed"), line
    assert USER in line and reason in line, line
    assert WRONG not in output and PASSWORD not in output and "Traceback" not in output


def test_worker_and_clients_work_with_the_right_credentials(secure_broker, photo_paths, tmp_path):
    settings = secure_broker.settings(tmp_path)
    verify_kafka_credentials(settings)  # the handshake faust's aiokafka makes: accepted
    topics = TopicNames.from_settings(settings)
    ensure_topics(settings)  # confluent-kafka AdminClient
    names = sorted(PORTRAITS)[:3]
    with WorkerProcess(settings, tmp_path / "worker.log"):  # faust (aiokafka) consumer + producer
        produced = subprocess.run(
            [sys.executable, "-m", "streams", "produce", "--no-progress", *(str(photo_paths[n]) for n in names)],
            cwd=REPO, env={**os.environ, **settings.to_env()}, capture_output=True, text=True, timeout=120,
            check=False,
        )  # confluent-kafka Producer
        assert produced.returncode == 0, produced.stderr
        embeddings = read_topic(settings, topics.embeddings, until=lambda r: len(r) >= len(names))  # Consumer
    assert sorted(r.record["image_id"] for r in embeddings) == names
    assert all(len(r.record["faces"]) == 1 for r in embeddings)
    assert PASSWORD not in (tmp_path / "worker.log").read_text(errors="replace") + produced.stdout + produced.stderr


def test_wrong_password_is_one_typed_error_for_a_confluent_client(secure_broker, tmp_path, capfd, caplog):
    settings = secure_broker.settings(tmp_path, WRONG)
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
    assert "Kafka authentication failed" in message and USER in message and "SCRAM-SHA-512" in message
    assert WRONG not in message

    settled = secure_broker.failed_logins()
    time.sleep(3)
    assert secure_broker.failed_logins() == settled, "the client kept retrying after the error"

    out, err = capfd.readouterr()
    logged = "\n".join(r.getMessage() for r in caplog.records)
    assert WRONG not in out + err + logged
    assert "FAIL" not in err  # librdkafka's per-attempt lines are not printed on stderr


def test_wrong_password_stops_the_worker_with_one_clear_line(secure_broker, tmp_path):
    before = secure_broker.failed_logins()
    done, elapsed = run_worker_until_exit(secure_broker.settings(tmp_path, WRONG))
    assert_one_clear_line(done, elapsed, "invalid credentials")
    assert secure_broker.failed_logins() - before == 1  # one attempt, no storm


@pytest.fixture
def foreign_ca(tmp_path) -> Path:
    """A CA the broker has never heard of, with a client certificate it signed."""
    for args in (
        ["req", "-x509", "-newkey", "rsa:2048", "-nodes", "-days", "1", "-subj", "/CN=foreign-ca", "-keyout", "ca.key", "-out", "ca.pem"],
        ["req", "-newkey", "rsa:2048", "-nodes", "-subj", "/CN=foreign", "-keyout", "client.key", "-out", "client.csr"],
        ["x509", "-req", "-in", "client.csr", "-CA", "ca.pem", "-CAkey", "ca.key", "-CAcreateserial", "-days", "1", "-out", "client.pem"],
    ):
        subprocess.run(["openssl", *args], cwd=tmp_path, check=True, capture_output=True, timeout=60)
    return tmp_path


def test_an_untrusted_broker_stops_the_worker_with_one_clear_line(tls_broker, foreign_ca, tmp_path):
    settings = tls_broker.settings(tmp_path, kafka_ssl_cafile=str(foreign_ca / "ca.pem"))
    before = tls_broker.failed_logins()
    done, elapsed = run_worker_until_exit(settings)
    assert_one_clear_line(done, elapsed, "CERTIFICATE_VERIFY_FAILED")
    assert tls_broker.failed_logins() - before <= 1  # one handshake, no storm


@pytest.mark.parametrize("presented", ["none", "foreign"])
def test_a_refused_client_certificate_is_one_typed_error(tls_broker, foreign_ca, tmp_path, presented):
    certs = (
        {"kafka_ssl_certfile": "", "kafka_ssl_keyfile": ""}
        if presented == "none"
        else {"kafka_ssl_certfile": str(foreign_ca / "client.pem"), "kafka_ssl_keyfile": str(foreign_ca / "client.key")}
    )
    settings = tls_broker.settings(tmp_path, **certs)
    before = tls_broker.failed_logins()
    done, elapsed = run_worker_until_exit(settings)
    assert_one_clear_line(done, elapsed, "refused our client certificate")
    assert tls_broker.failed_logins() - before <= HANDSHAKE_ATTEMPTS  # a few handshakes, no storm

    producer = Producer(confluent_producer(settings))
    started = time.monotonic()
    with pytest.raises(KafkaAuthenticationFailed, match="alert bad certificate"):
        while time.monotonic() - started < 30:
            producer.poll(0.1)
    assert time.monotonic() - started < 5
    producer.close()
