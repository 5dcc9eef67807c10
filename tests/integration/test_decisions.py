"""Decisions on the real stream: real photos enrolled and queried through a real broker, a real worker and the CLI.

Obama enrolled from two photos is one candidate that another Obama photo
MATCHes; Biden and the astronaut are UNKNOWN to him; two near-identical
subjects are AMBIGUOUS; the two people of one photo get two distinct subjects;
records of another model and faces too poor to enrol are dead-lettered.
"""

from __future__ import annotations

import json

import cv2
import numpy as np
import pytest
from confluent_kafka import Producer

from streams.codecs import AvroCodec
from streams.kafka import TopicNames, confluent_producer, ensure_topics
from streams.models.families import SFACE
from tests.integration.test_rerank_stream import facestream, wait_for_gallery
from tests.support.photos import side_by_side
from tests.support.topics import read_topic
from tests.support.worker import WorkerProcess

pytestmark = pytest.mark.integration


def write(path, image: np.ndarray):
    path.parent.mkdir(parents=True, exist_ok=True)
    assert cv2.imwrite(str(path), image)
    return path


def answers(done) -> list[dict]:
    return [json.loads(line) for line in done.stdout.splitlines()]


def test_match_unknown_ambiguous_one_identity_per_face_and_refusals(stream_settings, photo_paths, tmp_path):
    settings = stream_settings
    topics = TopicNames.from_settings(settings)
    ensure_topics(settings)
    image = {name: cv2.imread(str(photo_paths[name])) for name in ("obama.jpg", "obama3.jpg", "biden.jpg")}
    people = tmp_path / "people"
    write(people / "obama" / "obama.jpg", image["obama.jpg"])
    write(people / "obama" / "obama3.jpg", image["obama3.jpg"])
    write(people / "obama" / "blurred.jpg", cv2.GaussianBlur(image["obama.jpg"], (0, 0), 8))
    tiny = cv2.resize(image["obama.jpg"], None, fx=0.1, fy=0.1, interpolation=cv2.INTER_AREA)  # a 27-pixel face
    write(people / "obama" / "tiny.jpg", tiny)
    twins = [write(tmp_path / "twins" / "barack.jpg", image["obama.jpg"]),
             write(tmp_path / "twins" / "lookalike.jpg", cv2.resize(image["obama.jpg"], None, fx=0.8, fy=0.8))]
    group = write(tmp_path / "group.jpg", side_by_side(image["obama3.jpg"], image["biden.jpg"]))

    with WorkerProcess(settings, tmp_path / "worker.log") as worker:
        enrolled = facestream(settings, "enroll", str(people), "--gallery", "people", "--subject-from", "folder")
        reports = {r["image"].rsplit("/", 1)[-1]: r for r in answers(enrolled)}
        assert enrolled.returncode == 1, enrolled.stdout + enrolled.stderr  # two photos refused
        assert {n: r["enrolled"] for n, r in reports.items()} == {
            "blurred.jpg": False, "obama.jpg": True, "obama3.jpg": True, "tiny.jpg": False
        }
        for refused in ("blurred.jpg", "tiny.jpg"):
            assert reports[refused]["error"]["code"] == "LOW_QUALITY", reports[refused]
            assert "below FACESTREAM_ENROL_MIN_QUALITY" in reports[refused]["error"]["message"]
        assert (reports["obama.jpg"]["subject"], reports["obama.jpg"]["template"]) == ("obama", "obama")
        for gallery, photos in (("twins", twins), ("group", [photo_paths["obama.jpg"], photo_paths["biden.jpg"]])):
            done = facestream(settings, "enroll", *map(str, photos), "--gallery", gallery)
            assert done.returncode == 0, done.stdout + done.stderr
        wait_for_gallery(worker, "people", 2)  # two templates of one subject
        wait_for_gallery(worker, "twins", 2)
        wait_for_gallery(worker, "group", 2)

        def ask(photo, gallery: str, *extra: str) -> tuple[int, list[dict]]:
            done = facestream(settings, "query", str(photo), "--gallery", gallery, "--json", "--timeout", "60", *extra)
            return done.returncode, answers(done)

        code, (obama,) = ask(photo_paths["obama2.jpg"], "people")
        assert code == 0, obama
        assert (obama["decision"], obama["subject_id"]) == ("MATCH", "obama")
        assert [m["id"] for m in obama["matches"]] == ["obama"] and obama["gallery_size"] == 2  # one candidate
        assert obama["best_score"] == pytest.approx(obama["matches"][0]["similarity"])
        assert obama["match_threshold"] == pytest.approx(SFACE.same_person) and obama["margin"] is None
        for stranger in ("biden.jpg", "astronaut.png"):
            code, (answer,) = ask(photo_paths[stranger], "people")
            assert code == 0 and answer["decision"] == "UNKNOWN", (stranger, answer)
            assert answer["best_score"] < SFACE.same_person and answer["subject_id"] == "obama"

        code, (twin,) = ask(photo_paths["obama2.jpg"], "twins")
        assert code == 0 and twin["decision"] == "AMBIGUOUS", twin
        assert min(m["similarity"] for m in twin["matches"]) >= SFACE.same_person and twin["margin"] < 0.05

        code, faces = ask(group, "group", "--all-faces")
        assert code == 0 and len(faces) == 2, faces
        assert [f["decision"] for f in faces] == ["MATCH", "MATCH"]
        assert sorted(f["subject_id"] for f in faces) == ["biden", "obama"]
        left, right = sorted(faces, key=lambda f: f["face"]["bbox"][0])
        assert (left["subject_id"], right["subject_id"]) == ("obama", "biden")  # obama3 is on the left

        # Records of another model and poor faces, straight onto the topics: one dead letter each.
        codec, producer = AvroCodec(), Producer(confluent_producer(settings))
        other = {**obama_model(reports), "version": "other"}
        embedding = [1.0] + [0.0] * (SFACE.dim - 1)
        entries = {
            "other-model": {"model": other},
            "poor": {"model": obama_model(reports), "quality": 0.05},
        }
        for subject, fields in entries.items():
            record = {"gallery_id": "people", "subject_id": subject, "op": "UPSERT", "embedding": embedding,
                      "produced_at": 0, **fields}
            producer.produce(topics.gallery, key=b"people", value=codec.encode("GalleryEntry", record))
        query = {"query_id": "other-model-query", "gallery_id": "people", "embedding": embedding, "produced_at": 0,
                 "model": other}
        producer.produce(topics.queries, key=b"people", value=codec.encode("RerankQuery", query))
        producer.flush(10)
        dead = read_topic(settings, topics.dlq, until=lambda r: len(r) >= 3, settle_s=2)
        code, (again,) = ask(photo_paths["obama2.jpg"], "people")
        assert again["gallery_size"] == 2  # neither refused entry reached the gallery

    codes = {}
    for letter in dead:
        _, record = codec.decode_named(letter.record["value"])
        codes[record.get("query_id") or record["subject_id"]] = letter.record["error_code"]
    assert codes == {"other-model": "MODEL_MISMATCH", "poor": "LOW_QUALITY", "other-model-query": "MODEL_MISMATCH"}
    assert len(dead) == 3


def obama_model(reports: dict) -> dict:
    """The model identity the CLI enrolled with (the in-process ONNX pipeline's)."""
    from streams.cli._common import embed_photos

    (result,) = embed_photos([next(r["image"] for r in reports.values() if r["enrolled"])])
    return result["model"]
