import shutil
from pathlib import Path

import pytest

from streams.models import fetch
from streams.models.catalog import PRETRAINED, SFACE, YUNET
from streams.models.fetch import ModelFetchError, fetch_pretrained, sha256_of, verify
from tests.unit.serving_models import serving_settings


@pytest.fixture(scope="module")
def cache() -> Path:
    return serving_settings().model_path


def test_cached_models_match_their_pinned_hashes(cache):
    for model in PRETRAINED:
        assert sha256_of(cache / model.filename) == model.sha256


def test_a_tampered_file_is_an_error_naming_it(cache, tmp_path):
    bad = tmp_path / YUNET.filename
    data = bytearray((cache / YUNET.filename).read_bytes())
    data[1000] ^= 0xFF
    bad.write_bytes(bytes(data))
    with pytest.raises(ModelFetchError, match=YUNET.filename):
        verify(YUNET, bad)
    with pytest.raises(ModelFetchError, match=str(bad)):
        fetch_pretrained(tmp_path, [YUNET])


def test_files_in_place_are_kept_without_any_download(cache, tmp_path, monkeypatch):
    for model in PRETRAINED:
        shutil.copyfile(cache / model.filename, tmp_path / model.filename)

    def no_download(*args):
        raise AssertionError("nothing should be downloaded")

    monkeypatch.setattr(fetch, "_stage", no_download)
    paths = fetch_pretrained(tmp_path)
    assert paths == [tmp_path / YUNET.filename, tmp_path / SFACE.filename]
    for name in ("MIT-YuNet.txt", "NOTICE-SFace.txt", "Apache-2.0.txt"):
        assert (tmp_path / name).stat().st_size > 500


def test_licence_texts_attribute_the_upstream_authors(cache):
    assert "Copyright (c) 2020 Shiqi Yu" in (cache / "MIT-YuNet.txt").read_text()
    assert "Apache License" in (cache / "Apache-2.0.txt").read_text()
    assert "OpenCV Zoo" in (cache / "NOTICE-SFace.txt").read_text()


def test_a_staged_download_with_wrong_bytes_never_reaches_the_cache(tmp_path, monkeypatch):
    staging = tmp_path / "staging"
    staging.mkdir()
    (staging / SFACE.filename).write_bytes(b"not the model")
    monkeypatch.setattr(fetch, "_stage", lambda models, tmp: {SFACE.filename: staging / SFACE.filename})
    target = tmp_path / "models"
    with pytest.raises(ModelFetchError, match=SFACE.filename):
        fetch_pretrained(target, [SFACE])
    assert not (target / SFACE.filename).exists()
