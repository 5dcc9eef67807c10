import dataclasses

from streams.config import Settings
from streams.models.families import DETECTORS


def test_every_detector_format_the_settings_take_has_a_family():
    (field,) = [f for f in dataclasses.fields(Settings) if f.name == "detector_format"]
    assert tuple(DETECTORS) == field.metadata["choices"]
