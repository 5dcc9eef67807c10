import json

import pytest

from streams.cli import main
from streams.models.families import SFACE
from tests.unit.serving_models import serving_settings


def test_embed_prints_one_json_object_per_image_and_goes_on_after_errors(photo_paths, tmp_path, capsys, monkeypatch):
    settings = serving_settings()
    monkeypatch.setenv("FACESTREAM_MODEL_REPOSITORY", settings.model_repository)
    text = tmp_path / "notes.txt"
    text.write_text("not an image")
    paths = [str(photo_paths["obama.jpg"]), str(text), str(tmp_path / "missing.jpg"), str(photo_paths["biden.jpg"])]

    assert main(["embed", "--json", "--backend", "onnx", *paths]) == 0

    lines = [json.loads(line) for line in capsys.readouterr().out.splitlines()]
    assert [line["image"] for line in lines] == paths
    obama, notes, missing, biden = lines
    assert notes["error"]["code"] == "UNKNOWN_IMAGE_FORMAT"
    assert missing["error"]["code"] == "URI_UNREADABLE"
    for found in (obama, biden):
        (face,) = found["faces"]
        assert len(face["bbox"]) == 4 and len(face["landmarks"]) == 5 and len(face["embedding"]) == 128
        assert face["score"] > 0.9
        assert found["model"] == {"detector": "yunet-2023mar", "embedder": "sface-2021dec", "dim": 128, "version": "1"}
        assert {"decode", "detect", "embed", "total"} <= set(found["timings_ms"])
    cosine = sum(a * b for a, b in zip(obama["faces"][0]["embedding"], biden["faces"][0]["embedding"], strict=True))
    assert cosine < SFACE.same_person


def test_usage_errors_exit_non_zero():
    with pytest.raises(SystemExit) as exit_info:
        main(["embed", "--backend", "nope", "x.jpg"])
    assert exit_info.value.code == 2
