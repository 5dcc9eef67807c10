"""``calibrate`` on real photos of known people, and what ``enroll --subject-from folder`` publishes."""

from __future__ import annotations

import json
import re
import shutil

import cv2
import pytest

from streams.cli import main
from streams.models.families import SFACE
from tests.unit.serving_models import serving_settings


@pytest.fixture
def by_person(photo_paths, tmp_path, monkeypatch):
    """One folder per person, as calibrate and enroll --subject-from folder read them."""
    monkeypatch.setenv("FACESTREAM_MODEL_REPOSITORY", serving_settings().model_repository)
    folder = tmp_path / "people"
    for person, names in {
        "obama": ["obama.jpg", "obama2.jpg", "obama3.jpg"],
        "biden": ["biden.jpg"],
        "astronaut": ["astronaut.png"],
    }.items():
        (folder / person).mkdir(parents=True)
        for name in names:
            shutil.copy(photo_paths[name], folder / person / name)
    return folder


def test_calibrate_separates_the_people_and_draws_the_plot(by_person, tmp_path, capsys):
    plot = tmp_path / "calibration.png"
    assert main(["calibrate", str(by_person), "--json", "--plot", str(plot), "--target-far", "0"]) == 0
    report = json.loads(capsys.readouterr().out)
    assert (report["photos"], report["people"]) == (5, 3)
    assert report["genuine"]["count"] == 3 and report["impostor"]["count"] == 7  # 3 obama pairs; 10 pairs in all
    assert report["genuine"]["min"] > SFACE.same_person > report["impostor"]["max"]
    assert report["impostor"]["max"] < report["threshold_for_target"] <= report["genuine"]["min"]
    assert report["frr_at_target"] == 0.0
    at_model = next(r for r in report["table"] if r["threshold"] == round(SFACE.same_person, 3))
    assert (at_model["far"], at_model["frr"]) == (0.0, 0.0)
    image = cv2.imread(str(plot))
    assert image is not None and image.shape[1] > image.shape[0] > 300


def test_enroll_by_folder_publishes_templates_with_their_quality(by_person, published, capsys, tmp_path):
    blurred = by_person / "biden" / "blurred.jpg"
    cv2.imwrite(str(blurred), cv2.GaussianBlur(cv2.imread(str(by_person / "biden" / "biden.jpg")), (0, 0), 12))

    args = ["enroll", str(by_person), "--gallery", "g", "--subject-from", "folder", "--match-threshold", "0.4"]
    assert main(args) == 1

    out, err = capsys.readouterr()
    reports = {r["image"].rsplit("/", 1)[-1]: r for r in map(json.loads, out.splitlines())}
    assert re.search(r"enrolled: 6/6 photos read, 5 entries published in [\d.]+ s \([\d.]+ entries/s\)", err)
    assert reports["blurred.jpg"]["enrolled"] is False and reports["blurred.jpg"]["error"]["code"] == "LOW_QUALITY"
    entries = [e for _, _, e in published()]
    assert sorted((e["subject_id"], e["template_id"]) for e in entries) == [
        ("astronaut", "astronaut"), ("biden", "biden"), ("obama", "obama"), ("obama", "obama2"), ("obama", "obama3")
    ]
    assert all(0.5 <= e["quality"] <= 1.0 and e["match_threshold"] == pytest.approx(0.4) for e in entries)
