"""``enroll DIR`` and ``produce DIR``: a folder stands for the files under it, at any depth, in sorted order.

``enroll`` takes only the images of a folder (by extension): a note or a
thumbnail database is no subject. ``produce`` publishes every file, and the
worker answers each, a file that is not an image with its dead letter.
"""

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


def test_enroll_a_folder_enrolls_each_image_in_it(people, published, capsys, monkeypatch):
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


def test_produce_a_folder_publishes_each_file_in_it(people, published, capsys):
    assert main(["produce", "--no-progress", str(people)]) == 0

    files = [".DS_Store", "astronaut.png", "more/biden.JPG", "notes.txt", "obama.jpg"]
    events = published()
    assert [(topic, key) for topic, key, _ in events] == [("face.images", name.split("/")[-1]) for name in files]
    assert [e["image"] for _, _, e in events] == [(people / name).read_bytes() for name in files]
    assert capsys.readouterr().out == "produced 5 events to face.images: 5 acknowledged, 0 failed\n"


def test_enroll_takes_a_file_named_on_the_command_line_as_it_is(people, published, capsys, monkeypatch):
    """Only a folder is filtered by extension: a file named explicitly gets its answer, here why it is no photo."""
    monkeypatch.setenv("FACESTREAM_MODEL_REPOSITORY", serving_settings().model_repository)

    assert main(["enroll", str(people / "notes.txt"), str(people / "obama.jpg"), "--gallery", "staff"]) == 1

    notes, obama = (json.loads(line) for line in capsys.readouterr().out.splitlines())
    assert (notes["enrolled"], notes["error"]["code"], obama["enrolled"]) == (False, "UNKNOWN_IMAGE_FORMAT", True)
    assert [e["subject_id"] for _, _, e in published()] == ["obama"]
