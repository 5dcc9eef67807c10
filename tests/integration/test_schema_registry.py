"""The registry path against a real Schema Registry and a real broker, read and written by Confluent's own serde."""

from __future__ import annotations

import base64
import copy
import datetime
import hashlib
import json
import struct
import time
import urllib.request
import uuid

import pytest
from confluent_kafka import Consumer, Producer
from confluent_kafka.schema_registry import SchemaRegistryClient
from confluent_kafka.schema_registry.avro import AvroDeserializer, AvroSerializer
from confluent_kafka.serialization import MessageField, SerializationContext

from streams import schemas
from streams.codecs import AvroCodec
from streams.errors import ErrorCode
from streams.kafka import TopicNames, confluent_consumer, confluent_producer, ensure_topics, messages
from streams.registry import RegistryUnavailable, SchemaRegistry
from tests.support.photos import PORTRAITS
from tests.support.registry import KarapaceProcess
from tests.support.topics import read_topic
from tests.support.worker import WorkerProcess

pytestmark = pytest.mark.integration


def subjects(url: str) -> dict[str, list[int]]:
    """Every subject of the registry with its versions, asked over plain HTTP (no facestream code)."""
    with urllib.request.urlopen(f"{url}/subjects", timeout=10) as reply:
        names = json.loads(reply.read())
    out = {}
    for name in names:
        with urllib.request.urlopen(f"{url}/subjects/{name}/versions", timeout=10) as reply:
            out[name] = json.loads(reply.read())
    return out


def image_event(name: str, data: bytes) -> dict:
    return {"id": name, "image": data, "uri": None, "content_type": None, "attributes": {},
            "produced_at": int(time.time() * 1000)}


def confluent_serializer(url: str, schema: str) -> AvroSerializer:
    """Confluent's own serializer from the .avsc as written, registering as it does by default."""
    return AvroSerializer(SchemaRegistryClient({"url": url}), (schemas.schema_dir() / f"{schema}.avsc").read_text())


def publish(settings, topic: str, values: list[tuple[str, bytes]]) -> None:
    producer = Producer(confluent_producer(settings))
    for key, value in values:
        producer.produce(topic, key=key.encode(), value=value)
    assert producer.flush(30) == 0


def confluent_read(settings, url: str, topic: str, count: int) -> list[dict]:
    """``count`` records of ``topic`` from the beginning, decoded by confluent-kafka's AvroDeserializer alone."""
    deserialize = AvroDeserializer(SchemaRegistryClient({"url": url}))
    consumer = Consumer(confluent_consumer(settings, group_id=f"confluent-reader-{uuid.uuid4().hex[:8]}"))
    consumer.subscribe([topic])
    out = []
    try:
        for msg in messages(consumer, timeout_s=60, until=lambda: len(out) >= count):
            out.append(deserialize(msg.value(), SerializationContext(topic, MessageField.VALUE)))
    finally:
        consumer.close()
    assert len(out) == count
    return out


def test_confluent_serde_and_facestream_share_subjects_schemas_and_ids(registry_settings, registry, photo_bytes, tmp_path):
    settings = registry_settings.replace(max_batch=8, max_wait_ms=200)
    topics = TopicNames.from_settings(settings)
    ensure_topics(settings)
    with WorkerProcess(settings, tmp_path / "worker.log"):
        # Before any event: the worker registered each subject it writes, as <topic>-value, one version each.
        written = {f"{topic}-value" for _, topic in topics.written_by_workers()}
        assert {s: v for s, v in subjects(registry.url).items() if s in written} == {s: [1] for s in written}

        # Half the images by facestream's codec, half by Confluent's serializer from the same .avsc: one version.
        codec = AvroCodec.from_settings(settings)
        serialize = confluent_serializer(registry.url, "ImageEvent")
        context = SerializationContext(topics.images, MessageField.VALUE)
        values = []
        for i, name in enumerate(PORTRAITS):
            record = image_event(name, photo_bytes[name])
            values.append((name, codec.encode("ImageEvent", record, topic=topics.images) if i % 2
                           else serialize(record, context)))
        values.append(("broken.jpg", serialize(image_event("broken.jpg", b"\xff\xd8 not a jpeg"), context)))
        values.append(("no-such-id", b"\x00" + struct.pack(">I", 987654) + b"\x02x"))  # an id the registry lacks
        publish(settings, topics.images, values)

        embeddings = confluent_read(settings, registry.url, topics.embeddings, len(PORTRAITS))
        dead, unknown_id = sorted(confluent_read(settings, registry.url, topics.dlq, 2), key=lambda r: r["key"])

    assert sorted(r["image_id"] for r in embeddings) == sorted(PORTRAITS)
    for record in embeddings:
        assert isinstance(record["processed_at"], datetime.datetime)  # the logical type reached the registry
        assert len(record["faces"]) == 1 and len(record["faces"][0]["embedding"]) == 128
    assert dead["error_code"] == ErrorCode.UNKNOWN_IMAGE_FORMAT.value and dead["key"] == b"broken.jpg"
    assert isinstance(dead["at"], datetime.datetime)
    assert unknown_id["key"] == b"no-such-id" and unknown_id["error_code"] == ErrorCode.BAD_EVENT.value
    assert "schema id 987654 is not in the registry" in unknown_id["message"]
    final = subjects(registry.url)
    assert final[f"{topics.images}-value"] == [1]
    assert all(final[s] == [1] for s in written)


def _with_optional_field(name: str) -> dict:
    raw = copy.deepcopy(schemas.load_json(name))
    raw["fields"].append({"name": "tenant", "type": ["null", "string"], "default": None, "doc": "Added in v2."})
    return raw


@pytest.mark.parametrize("name", sorted(schemas.names()))
def test_an_optional_field_registers_as_version_2_under_backward(registry, name):
    client = SchemaRegistryClient({"url": registry.url})
    topic = f"evolution-{uuid.uuid4().hex[:8]}"
    assert client.get_compatibility() == "BACKWARD"
    v1, v2 = SchemaRegistry(client), SchemaRegistry(client)
    first = v1.id_of(schemas.load_json(name), topic)
    second = v2.id_of(_with_optional_field(name), topic)
    assert first != second
    assert client.get_versions(f"{topic}-value") == [1, 2]


def test_a_v1_reader_reads_v2_records_and_a_v2_reader_reads_v1_records(registry):
    topic = f"evolution-{uuid.uuid4().hex[:8]}"
    v1 = AvroCodec(SchemaRegistry(SchemaRegistryClient({"url": registry.url})))
    v2 = AvroCodec(SchemaRegistry(SchemaRegistryClient({"url": registry.url})),
                   readers={**{n: schemas.load_json(n) for n in schemas.names()},
                            "ImageEvent": _with_optional_field("ImageEvent")})
    record = image_event("a.jpg", b"\xff\xd8")
    old = v1.encode("ImageEvent", record, topic=topic)
    new = v2.encode("ImageEvent", {**record, "tenant": "acme"}, topic=topic)
    read_new_by_old = AvroCodec(SchemaRegistry(SchemaRegistryClient({"url": registry.url}))).decode(new)
    assert "tenant" not in read_new_by_old and read_new_by_old["image"] == b"\xff\xd8"
    assert v2.decode(old)["tenant"] is None
    assert v2.decode(new)["tenant"] == "acme"


def test_a_registry_outage_mid_stream_loses_and_dead_letters_nothing(registry_settings, registry, photo_bytes, tmp_path):
    if registry.process is None:
        pytest.skip("the registry was not started by this session, so it cannot be stopped")
    settings = registry_settings.replace(max_batch=4, max_wait_ms=100, retry_backoff_ms=200)
    topics = TopicNames.from_settings(settings)
    ensure_topics(settings)
    photos = [photo_bytes[name] for name in PORTRAITS]
    # A newer ImageEvent version the worker has not seen: records framed with it need the registry to be read.
    newer = AvroCodec(SchemaRegistry.from_settings(settings),
                      readers={**{n: schemas.load_json(n) for n in schemas.names()},
                               "ImageEvent": _with_optional_field("ImageEvent")})
    older = AvroCodec.from_settings(settings)
    sent = []

    def send(codec, count: int, tag: str) -> None:
        batch = [(f"{tag}-{i}.jpg", codec.encode("ImageEvent", image_event(f"{tag}-{i}.jpg", photos[i % len(photos)]),
                                                 topic=topics.images)) for i in range(count)]
        publish(settings, topics.images, batch)
        sent.extend(key for key, _ in batch)

    with WorkerProcess(settings, tmp_path / "worker.log") as worker:
        send(older, 6, "before")
        newer.encode("ImageEvent", {**image_event("x", b""), "tenant": None}, topic=topics.images)  # registered now
        reader = AvroCodec.from_settings(settings)  # learns the FaceEmbeddings schema now, while it can
        read_topic(settings, topics.embeddings, until=lambda r: len(r) >= 6, codec=reader)

        registry.process.stop()
        stopped = time.monotonic()
        send(older, 6, "during-known")  # schema ids the worker holds: answered through the outage
        read_topic(settings, topics.embeddings, until=lambda r: len(r) >= 12, timeout_s=25, codec=reader)
        send(newer, 6, "during-new")  # an id the worker must ask for: waits, held and uncommitted
        statuses = []
        while time.monotonic() - stopped < 30:
            statuses.append(worker.readyz())
            time.sleep(2)
        restart_begun = time.time()
        restart_s = registry.process.start()
        answered = read_topic(settings, topics.embeddings, until=lambda r: len(r) >= len(sent), timeout_s=120)
        assert worker.alive(), worker.tail()

    unready = [body for status, body in statuses if status == 503]
    assert len(unready) == len(statuses), statuses  # /readyz said 503 all through the outage
    assert all(any(c["name"] == "registry" and not c["ok"] for c in body["checks"]) for body in unready)
    assert sorted(r.record["image_id"] for r in answered) == sorted(sent)  # every one, once
    at = {r.record["image_id"]: r.record["processed_at"].timestamp() for r in answered}
    assert all(at[k] < restart_begun for k in at if k.startswith("during-known"))  # answered through the outage
    assert all(at[k] >= restart_begun for k in at if k.startswith("during-new"))  # waited for the registry
    dead = read_topic(settings, topics.dlq, until=lambda r: False, timeout_s=5)
    assert dead == []
    print(f"registry restart took {restart_s:.1f} s")


def karapace_authfile(path, username: str, password: str):
    """A Karapace auth file granting ``username`` everything, its password stored as PBKDF2-SHA256 (Karapace's format)."""
    salt = uuid.uuid4().hex
    digest = base64.b64encode(hashlib.pbkdf2_hmac("sha256", password.encode(), salt.encode(), 5000)).decode()
    path.write_text(json.dumps({
        "users": [{"username": username, "algorithm": "sha256", "salt": salt, "password_hash": digest}],
        "permissions": [{"username": username, "operation": "Write", "resource": ".*"}],
    }))
    return path


def test_registry_credentials_are_used_and_never_shown(registry, stream_settings, kafka_bootstrap, tmp_path):
    if registry.process is None:
        pytest.skip("an authenticating registry can only be started here with Karapace")
    password = f"pw-{uuid.uuid4().hex}"
    authfile = karapace_authfile(tmp_path / "auth.json", "facestream", password)
    secured = KarapaceProcess(kafka_bootstrap, tmp_path / "karapace-auth.log",
                              env={"KARAPACE_REGISTRY_AUTHFILE": str(authfile)})
    secured.start()
    try:
        settings = stream_settings.replace(schema_registry_url=secured.url, schema_registry_username="facestream")
        topic = f"auth-{uuid.uuid4().hex[:8]}"
        right = AvroCodec.from_settings(settings.replace(schema_registry_password=password))
        data = right.encode("ImageEvent", image_event("a.jpg", b"\xff\xd8"), topic=topic)
        assert right.decode(data)["id"] == "a.jpg"
        with pytest.raises(RegistryUnavailable, match="HTTP 401"):
            AvroCodec.from_settings(settings.replace(schema_registry_password="wrong")).encode(
                "ImageEvent", image_event("a.jpg", b""), topic=topic)

        wrong = settings.replace(schema_registry_password=f"wrong-{password}")
        ensure_topics(wrong)
        worker = WorkerProcess(wrong, tmp_path / "worker.log").start()
        try:
            deadline, status, body = time.monotonic() + 60, 0, {}
            while time.monotonic() < deadline:
                status, body = worker.readyz()
                if status and any(c["name"] == "partitions" and c["ok"] for c in body["checks"]):
                    break
                time.sleep(0.5)
            (check,) = [c for c in body["checks"] if c["name"] == "registry"]
            assert status == 503 and not check["ok"] and "401" in check["detail"], body
            assert password not in json.dumps(body)
        finally:
            worker.stop()
        assert password not in (tmp_path / "worker.log").read_text(errors="replace")
    finally:
        secured.stop()
