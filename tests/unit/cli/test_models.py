from streams.cli import main
from streams.models.catalog import SERVING_VERSION
from tests.unit.serving_models import serving_settings


def test_models_fetch_verifies_the_cache_and_writes_both_variants_and_the_int8_embedder_idempotently(
    tmp_path, capsys, monkeypatch
):
    monkeypatch.setenv("FACESTREAM_MODEL_DIR", serving_settings().model_dir)
    monkeypatch.setenv("FACESTREAM_MODEL_REPOSITORY", str(tmp_path))
    assert main(["models", "fetch"]) == 0
    int8 = tmp_path / "face_embedder" / SERVING_VERSION / "model.int8.onnx"
    first = {p: p.read_bytes() for p in [*tmp_path.rglob("model.onnx"), int8]}
    assert main(["models", "fetch"]) == 0
    assert {p: p.read_bytes() for p in first} == first
    assert sorted(str(p.relative_to(tmp_path)) for p in first) == [
        f"face_detector/{SERVING_VERSION}/model.onnx",
        f"face_embedder/{SERVING_VERSION}/model.int8.onnx",
        f"face_embedder/{SERVING_VERSION}/model.onnx",
    ]
    assert (tmp_path / "face_detector" / SERVING_VERSION / "MIT-YuNet.txt").exists()
    assert (tmp_path / "face_embedder" / SERVING_VERSION / "Apache-2.0.txt").exists()
    assert "verified" in capsys.readouterr().out


def test_a_corrupt_cached_model_is_reported_and_fails(tmp_path, capsys, monkeypatch):
    (tmp_path / "face_detection_yunet_2023mar.onnx").write_bytes(b"garbage")
    monkeypatch.setenv("FACESTREAM_MODEL_DIR", str(tmp_path))
    monkeypatch.setenv("FACESTREAM_MODEL_REPOSITORY", str(tmp_path / "repo"))
    assert main(["models", "fetch"]) == 1
    assert "face_detection_yunet_2023mar.onnx" in capsys.readouterr().out
