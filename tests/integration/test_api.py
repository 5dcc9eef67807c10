"""``facestream api`` through real HTTP, on a real broker with a real worker owning the galleries.

One stack for the module (broker, worker, API process), each test with its own galleries:
the API's embeddings equal the stream's for the same files, galleries enrolled through
the API answer searches, inline ranking equals the re-ranker, every bad input of the
stream's tests gets its typed error, and a property-based fuzzer (schemathesis) finds no
5xx and no answer outside ``/openapi.json`` over at least 500 generated requests.
"""

from __future__ import annotations

import base64
import time
import uuid
from collections import Counter

import cv2
import httpx
import numpy as np
import pytest
import schemathesis
from hypothesis import HealthCheck, Phase, given
from hypothesis import settings as hypothesis_settings
from schemathesis.checks import (
    content_type_conformance,
    not_a_server_error,
    response_headers_conformance,
    response_schema_conformance,
    status_code_conformance,
)

from streams import rerank
from streams.cli.produce import image_event
from streams.codecs import AvroCodec
from streams.config import Settings
from streams.kafka import Producer, TopicNames, ensure_topics
from tests.support.bad_inputs import bad_files
from tests.support.photos import side_by_side
from tests.support.topics import read_topic
from tests.support.worker import WorkerProcess

pytestmark = pytest.mark.integration

#: What the fuzzer checks of every answer: no server error, and status, type, headers and body as documented.
FUZZ_CHECKS = [
    not_a_server_error,
    status_code_conformance,
    content_type_conformance,
    response_headers_conformance,
    response_schema_conformance,
]
FUZZ_REQUESTS = 500


@pytest.fixture(scope="module")
def stack(kafka_bootstrap, tmp_path_factory):
    """(settings, API base URL): a worker and an API process on their own topics."""
    run = uuid.uuid4().hex[:8]
    folder = tmp_path_factory.mktemp("api")
    settings = Settings.from_env(
        None,
        kafka_bootstrap_servers=kafka_bootstrap,
        app_id=f"facestream-api-test-{run}",
        topic_prefix=f"a{run}.",
        topic_partitions=2,
        data_dir=str(folder / "worker"),
        max_batch=8,
        max_wait_ms=100,
        api_timeout_s=20.0,
    )
    ensure_topics(settings)
    with WorkerProcess(settings, folder / "worker.log"), WorkerProcess(settings, folder / "api.log", command="api") as api:
        yield settings, f"http://127.0.0.1:{api.port}", api


@pytest.fixture
def client(stack):
    with httpx.Client(base_url=stack[1], timeout=60) as http:
        yield http


def b64(data: bytes) -> str:
    return base64.b64encode(data).decode()


def wait_for_size(client: httpx.Client, gallery: str, size: int, timeout_s: float = 60.0) -> dict:
    deadline = time.monotonic() + timeout_s
    while True:
        reply = client.get(f"/v1/galleries/{gallery}")
        if reply.status_code == 200 and reply.json()["size"] == size:
            return reply.json()
        assert time.monotonic() < deadline, f"gallery {gallery}: {reply.status_code} {reply.text}"
        time.sleep(0.3)


def test_the_apis_embeddings_equal_the_streams(stack, client, photo_bytes):
    settings, _, _ = stack
    topics = TopicNames.from_settings(settings)
    codec = AvroCodec.from_settings(settings)
    with Producer(settings, flush_s=30) as producer:
        for name, data in photo_bytes.items():
            record = image_event(name, data, None, name)
            producer.produce(topics.images, key=name.encode(), value=codec.encode("ImageEvent", record, topic=topics.images))
    streamed = read_topic(settings, topics.embeddings, until=lambda r: len(r) >= len(photo_bytes), settle_s=1)
    by_id = {r.record["image_id"]: r.record for r in streamed}
    assert set(by_id) == set(photo_bytes)

    names = list(photo_bytes)
    files = [("images", (n, photo_bytes[n], "application/octet-stream")) for n in names]
    reply = client.post("/v1/embeddings", files=files)
    assert reply.status_code == 200, reply.text
    answers = reply.json()["images"]
    worst = 0.0
    for name, answer in zip(names, answers, strict=True):
        stream = by_id[name]
        assert answer["model"] == stream["model"]
        assert len(answer["faces"]) == len(stream["faces"]), name
        for ours, theirs in zip(answer["faces"], stream["faces"], strict=True):
            worst = max(worst, float(np.abs(np.subtract(ours["embedding"], theirs["embedding"])).max()))
            np.testing.assert_allclose(ours["bbox"], theirs["bbox"], atol=1e-3)
            assert abs(ours["score"] - theirs["score"]) < 1e-5
    print(f"largest embedding difference, API vs stream, over {sum(len(a['faces']) for a in answers)} faces: {worst:.3g}")
    assert worst <= 1e-5


def test_enrolled_photos_answer_a_search_and_deletes_reach_the_owner(client, photo_bytes):
    gallery = f"people-{uuid.uuid4().hex[:6]}"
    subjects = {"obama": "obama.jpg", "biden": "biden.jpg", "astronaut": "astronaut.png"}
    body = {"subjects": [{"subject_id": s, "image": b64(photo_bytes[f])} for s, f in subjects.items()]}
    reply = client.post(f"/v1/galleries/{gallery}/subjects", json=body)
    assert reply.status_code == 202, reply.text
    assert [(s["subject_id"], s["enrolled"]) for s in reply.json()["subjects"]] == [(s, True) for s in subjects]
    facts = wait_for_size(client, gallery, 3)
    assert facts["dimension"] == 128 and facts["model"]["embedder"].startswith("sface")

    for photo in ("obama2.jpg", "obama3.jpg"):
        found = client.post("/v1/search", files=[("images", (photo, photo_bytes[photo], "image/jpeg"))],
                            data={"gallery_id": gallery, "top_k": "3"})
        assert found.status_code == 200, found.text
        (image,) = found.json()["images"]
        (face,) = image["faces"]
        result = face["result"]
        assert result["gallery_size"] == 3 and result["matches"][0]["id"] == "obama", result
        assert [m["rank"] for m in result["matches"]] == [1, 2, 3]

    assert client.delete(f"/v1/galleries/{gallery}/subjects/biden").status_code == 202
    assert wait_for_size(client, gallery, 2)["size"] == 2
    unknown = client.get(f"/v1/galleries/nobody-{uuid.uuid4().hex[:6]}")
    assert unknown.status_code == 404 and unknown.json()["code"] == "UNKNOWN_GALLERY"
    asked = client.post("/v1/rerank", json={"embedding": [1.0] * 128, "gallery_id": f"nobody-{uuid.uuid4().hex[:6]}"})
    assert asked.status_code == 404 and asked.json()["code"] == "UNKNOWN_GALLERY"  # the worker's dead letter


def test_a_group_photo_names_two_people_and_a_blurred_face_is_not_enrolled(client, photo_bytes):
    gallery = f"group-{uuid.uuid4().hex[:6]}"
    image = {name: cv2.imdecode(np.frombuffer(photo_bytes[name], np.uint8), cv2.IMREAD_COLOR)
             for name in ("obama.jpg", "obama3.jpg", "biden.jpg")}
    blurred = cv2.imencode(".jpg", cv2.GaussianBlur(image["obama.jpg"], (0, 0), 8))[1].tobytes()
    body = {"subjects": [{"subject_id": "obama", "image": b64(photo_bytes["obama.jpg"])},
                         {"subject_id": "biden", "image": b64(photo_bytes["biden.jpg"])},
                         {"subject_id": "blurry", "image": b64(blurred)}]}
    reply = client.post(f"/v1/galleries/{gallery}/subjects", json=body)
    assert reply.status_code == 202, reply.text
    obama, biden, blurry = reply.json()["subjects"]
    assert obama["enrolled"] and biden["enrolled"] and not blurry["enrolled"]
    assert blurry["error"]["code"] == "LOW_QUALITY" and "FACESTREAM_ENROL_MIN_QUALITY" in blurry["error"]["message"]
    wait_for_size(client, gallery, 2)

    group = cv2.imencode(".jpg", side_by_side(image["obama3.jpg"], image["biden.jpg"]))[1].tobytes()
    found = client.post("/v1/search", files=[("images", ("group.jpg", group, "image/jpeg"))],
                        data={"gallery_id": gallery, "top_k": "2"})
    assert found.status_code == 200, found.text
    (answer,) = found.json()["images"]
    named = sorted((f["result"]["decision"], f["result"]["subject_id"]) for f in answer["faces"])
    assert named == [("MATCH", "biden"), ("MATCH", "obama")]


def test_a_gallery_query_is_ranked_by_its_worker_as_inline_is_here(client):
    gallery = f"vectors-{uuid.uuid4().hex[:6]}"
    rows = np.random.default_rng(3).standard_normal((12, 16)).astype(np.float32)
    rows /= np.linalg.norm(rows, axis=1, keepdims=True)
    query = rows[0] + 0.3 * rows[1]
    query /= np.linalg.norm(query)
    subjects = [{"subject_id": f"s{i}", "embedding": r.tolist()} for i, r in enumerate(rows)]
    assert client.post(f"/v1/galleries/{gallery}/subjects", json={"subjects": subjects}).status_code == 202
    wait_for_size(client, gallery, 12)
    candidates = [{"id": s["subject_id"], "embedding": s["embedding"]} for s in subjects]
    for method in ("cosine", "k_reciprocal", "query_expansion"):
        ask = {"embedding": query.tolist(), "top_k": 5, "method": method}
        stored = client.post("/v1/rerank", json={**ask, "gallery_id": gallery}).json()
        inline = client.post("/v1/rerank", json={**ask, "candidates": candidates}).json()
        assert [m["id"] for m in stored["matches"]] == [m["id"] for m in inline["matches"]], method
        np.testing.assert_allclose([m["score"] for m in stored["matches"]], [m["score"] for m in inline["matches"]], atol=1e-6)
    indices, scores = rerank.cosine_topk(query[None], rows, 5)
    inline = client.post("/v1/rerank", json={"embedding": query.tolist(), "top_k": 5, "candidates": candidates}).json()
    assert [m["id"] for m in inline["matches"]] == [f"s{i}" for i in indices[0]]
    np.testing.assert_allclose([m["score"] for m in inline["matches"]], scores[0], atol=1e-6)


def test_every_bad_input_of_the_stream_gets_its_typed_error(stack, client, photo_bytes):
    bad = bad_files(photo_bytes["obama.jpg"])
    content_types = {"notes.txt": "text/plain"}  # as `facestream produce` sets it from the file name
    for name, (data, code) in bad.items():
        files = [("images", (name, data, content_types.get(name, "application/octet-stream")))]
        (answer,) = client.post("/v1/embeddings", files=files).json()["images"]
        assert answer["error"]["code"] == code.value, name
    mixed = client.post("/v1/embeddings", json={"images": [b64(d) for d, _ in bad.values()] + [b64(photo_bytes["obama.jpg"])]})
    images = mixed.json()["images"]
    assert [i.get("error", {}).get("code") for i in images[:-1]] == [
        c.value if n != "notes.txt" else "UNKNOWN_IMAGE_FORMAT" for n, (_, c) in bad.items()
    ]  # JSON carries no content type: the text file is sniffed
    assert len(images[-1]["faces"]) == 1
    assert client.get("/healthz").status_code == 200 and stack[2].alive()


def test_the_fuzzer_finds_no_server_error_and_no_undocumented_answer(stack):
    _, base, api = stack
    schema = schemathesis.openapi.from_url(f"{base}/openapi.json")
    operations = [result.ok() for result in schema.get_all_operations()]
    taking_input = [op for op in operations if op.body or op.path_parameters or op.query]
    per_operation = -(-FUZZ_REQUESTS // len(taking_input)) + 10  # routes without inputs have one request to make
    sent: Counter = Counter()
    for operation in operations:

        @hypothesis_settings(
            max_examples=per_operation,
            deadline=None,
            database=None,
            phases=[Phase.explicit, Phase.generate],
            suppress_health_check=list(HealthCheck),
        )
        @given(case=operation.as_strategy())
        def fuzz(case):
            response = case.call(base_url=base, timeout=30)
            sent[(operation.method.upper(), operation.path, response.status_code)] += 1
            case.validate_response(response, checks=FUZZ_CHECKS)

        fuzz()
    print("fuzzed:", dict(sorted(sent.items())))
    assert sum(sent.values()) >= FUZZ_REQUESTS
    assert api.alive()
