"""``enroll DIR`` and ``produce DIR``: a folder stands for the images under it, at any depth, in sorted order."""

from __future__ import annotations

import json
import shutil

import pytest

from streams.cli import main
from tests.unit.serving_models import serving_settings


@pytest.fixture
def people(photo_paths, tmp_path):
    """A folder as a user has one: portraits at two depths, and files that are not images."""
    folder = tmp_path / "people"
    (folder / "more").mkdir(parents=True)
    shutil.copy(photo_paths["obama.jpg"], folder / "obama.jpg")
    shutil.copy(photo_paths["biden.jpg"], folder / "more" / "biden.JPG")
    shutil.copy(photo_paths["astronaut.png"], folder / "astronaut.png")
    (folder / "notes.txt").write_text("who is who")
    (folder / ".DS_Store").write_bytes(b"\0\1")
    return folder


def test_enroll_a_folder_enrolls_each_photo_in_it(people, published, capsys, monkeypatch):
    monkeypatch.setenv("FACESTREAM_MODEL_REPOSITORY", serving_settings().model_repository)

    assert main(["enroll", str(people), "--gallery", "staff"]) == 0

    reports = [json.loads(line) for line in capsys.readouterr().out.splitlines()]
    assert [(r["image"], r["subject"], r["enrolled"]) for r in reports] == [
        (str(people / "astronaut.png"), "astronaut", True),
        (str(people / "more" / "biden.JPG"), "biden", True),
        (str(people / "obama.jpg"), "obama", True),
    ]
    entries = published()
    assert [(topic, key, e["subject_id"], e["op"]) for topic, key, e in entries] == [
        ("face.gallery", "staff", subject, "UPSERT") for subject in ("astronaut", "biden", "obama")
    ]
    assert all(len(e["embedding"]) == 128 and e["model"]["dim"] == 128 for _, _, e in entries)


def test_produce_a_folder_publishes_each_image_in_it(people, published, capsys):
    assert main(["produce", "--no-progress", str(people)]) == 0

    events = published()
    assert [(topic, key) for topic, key, _ in events] == [
        ("face.images", "astronaut.png"), ("face.images", "biden.JPG"), ("face.images", "obama.jpg"),
    ]
    assert [e["image"] for _, _, e in events] == [
        (people / name).read_bytes() for name in ("astronaut.png", "more/biden.JPG", "obama.jpg")
    ]
    assert capsys.readouterr().out == "produced 3 events to face.images: 3 acknowledged, 0 failed\n"


def test_files_named_on_the_command_line_are_taken_as_they_are(people, published, capsys):
    """Only a folder is filtered by extension: a file named explicitly is the user's choice, and gets its answer."""
    assert main(["produce", "--no-progress", str(people / "notes.txt"), str(people / "obama.jpg")]) == 0

    assert [key for _, key, _ in published()] == ["notes.txt", "obama.jpg"]
