"""POST /v1/embeddings in-process on the real models: both body forms, options, typed errors, shared model calls."""

from __future__ import annotations

import asyncio
import base64

import numpy as np
import pytest

from streams import metrics
from streams.config import Settings
from streams.errors import ErrorCode
from tests.support.bad_inputs import bad_files
from tests.support.photos import NO_FACE

pytestmark = pytest.mark.asyncio(loop_scope="module")
DETECTOR = Settings().detector_model


def b64(data: bytes) -> str:
    return base64.b64encode(data).decode()


def detector_calls() -> float:
    return metrics.REGISTRY.get_sample_value("facestream_inference_seconds_count", {"model": DETECTOR}) or 0.0


async def test_multipart_and_json_give_the_same_faces(api, photo_bytes):
    names = ["obama.jpg", "biden.jpg", NO_FACE]
    files = [("images", (n, photo_bytes[n], "image/jpeg" if n.endswith(".jpg") else "image/png")) for n in names]
    by_form = (await api.post("/v1/embeddings", files=files)).json()
    by_json = (await api.post("/v1/embeddings", json={"images": [b64(photo_bytes[n]) for n in names]})).json()
    assert [i["index"] for i in by_form["images"]] == [0, 1, 2]
    assert [len(i["faces"]) for i in by_form["images"]] == [1, 1, 0]
    assert by_form["model"] == by_json["model"] == by_form["images"][0]["model"]
    assert by_form["model"]["dim"] == 128
    for form_image, json_image in zip(by_form["images"], by_json["images"], strict=True):
        for a, b in zip(form_image["faces"], json_image["faces"], strict=True):
            assert np.abs(np.subtract(a["embedding"], b["embedding"])).max() <= 1e-5
            assert abs(np.linalg.norm(a["embedding"]) - 1.0) < 1e-4
            assert len(a["bbox"]) == 4 and len(a["landmarks"]) == 10 and a["aligned_jpeg"] is None
    assert {"detect", "embed", "decode"} <= set(by_form["images"][0]["timings_ms"])


async def test_options_narrow_the_faces_and_crops_come_when_asked(api, photo_bytes):
    image = b64(photo_bytes["obama.jpg"])
    (kept,) = (await api.post("/v1/embeddings", json={"images": [image], "aligned": True})).json()["images"]
    jpeg = base64.b64decode(kept["faces"][0]["aligned_jpeg"])
    assert jpeg[:2] == b"\xff\xd8"
    (strict,) = (await api.post("/v1/embeddings", json={"images": [image], "score_threshold": 0.999})).json()["images"]
    assert strict["faces"] == []
    (small,) = (await api.post("/v1/embeddings", json={"images": [image], "min_face_size": 100000})).json()["images"]
    assert small["faces"] == []
    # Options can only narrow the server's settings: asking for more than it keeps is refused.
    wider = await api.post("/v1/embeddings", json={"images": [image], "score_threshold": 0.01})
    assert wider.status_code == 422 and wider.json()["code"] == "INVALID_REQUEST"


async def test_each_bad_image_gets_its_own_code_and_the_good_one_answers(api, photo_bytes):
    bad = bad_files(photo_bytes["obama.jpg"])
    names = ["obama.jpg", *bad]
    files = [("images", (n, photo_bytes["obama.jpg"] if n == "obama.jpg" else bad[n][0], _type(n))) for n in names]
    reply = await api.post("/v1/embeddings", files=files)
    assert reply.status_code == 200
    images = reply.json()["images"]
    assert len(images[0]["faces"]) == 1
    assert {names[i["index"]]: i["error"]["code"] for i in images[1:]} == {n: code.value for n, (_, code) in bad.items()}
    not_base64 = (await api.post("/v1/embeddings", json={"images": ["%%%"]})).json()["images"][0]
    assert not_base64["error"]["code"] == ErrorCode.BAD_EVENT.value
    assert (await api.get("/healthz")).status_code == 200  # still serving


def _type(name: str) -> str:
    return {"jpg": "image/jpeg", "png": "image/png", "txt": "text/plain"}.get(name.rsplit(".", 1)[-1], "application/octet-stream")


async def test_32_concurrent_one_image_requests_share_about_two_detector_calls(api, photo_bytes):
    image = photo_bytes["obama.jpg"]
    await api.post("/v1/embeddings", files=[("images", ("w.jpg", image, "image/jpeg"))])  # warm the models
    before = detector_calls()
    replies = await asyncio.gather(
        *(api.post("/v1/embeddings", files=[("images", (f"{i}.jpg", image, "image/jpeg"))]) for i in range(32))
    )
    calls = detector_calls() - before
    assert all(r.status_code == 200 and len(r.json()["images"][0]["faces"]) == 1 for r in replies)
    print(f"32 concurrent one-image requests: {calls:g} detector calls")
    assert 2 <= calls <= 4, f"{calls} detector calls for 32 one-image requests at a batch of 16"


async def test_whole_request_errors_have_a_code_and_a_status(api, photo_bytes):
    assert (await api.post("/v1/embeddings", content=b"x", headers={"content-type": "text/plain"})).status_code == 415
    broken = await api.post("/v1/embeddings", content=b"{", headers={"content-type": "application/json"})
    assert broken.status_code == 400 and broken.json()["code"] == "BAD_REQUEST"
    too_many = await api.post("/v1/embeddings", json={"images": ["AA=="] * (Settings().api_max_images + 1)})
    assert too_many.status_code == 422
    empty = await api.post("/v1/embeddings", json={"images": []})
    assert empty.status_code == 422 and set(empty.json()) == {"code", "message"}
    unknown = await api.post("/v1/embeddings", json={"images": ["AA=="], "colour": "blue"})
    assert unknown.status_code == 422
