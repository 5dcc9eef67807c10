"""The topic contract: docs/asyncapi.yaml is what `facestream asyncapi` writes, and the official parser accepts it."""

from __future__ import annotations

import shutil
import subprocess

import pytest
import yaml

from streams import schemas
from streams.asyncapi import CHANNELS, document, render
from streams.config import Settings
from streams.kafka import TopicNames
from tests.support import REPO

VALIDATOR = REPO / "scripts" / "asyncapi"
COMMITTED = REPO / "docs" / "asyncapi.yaml"


def validate(path) -> subprocess.CompletedProcess:
    if shutil.which("node") is None or not (VALIDATOR / "node_modules" / "@asyncapi" / "parser").is_dir():
        pytest.skip("node or the AsyncAPI parser is missing: `make setup` installs the parser")
    return subprocess.run(["node", str(VALIDATOR / "validate.mjs"), str(path)], capture_output=True, text=True,
                          timeout=120)


def test_the_committed_document_is_the_generated_one():
    assert COMMITTED.read_text() == render(Settings.from_env({})), "run `facestream asyncapi` and commit the result"


def test_every_topic_is_a_channel_with_its_schema_as_written():
    settings = Settings.from_env({"FACESTREAM_TOPIC_PREFIX": "acme.", "FACESTREAM_APP_ID": "faces"})
    doc = document(settings)
    addresses = {c["address"] for c in doc["channels"].values()}
    assert set(TopicNames.from_settings(settings).all()) | {"faces-gallery-changelog"} == addresses
    messages = doc["components"]["messages"]
    assert sorted(m["name"] for m in messages.values()) == sorted(c.schema for c in CHANNELS)
    for message in messages.values():
        assert message["payload"]["schema"] == schemas.load_json(message["name"])
        assert "traceparent" in message["headers"]["properties"]
    assert {op["action"] for op in doc["operations"].values()} == {"send", "receive"}
    agents = {tag["name"] for op in doc["operations"].values() for tag in op["tags"]}
    assert agents == {"agent:embed", "agent:gallery", "agent:rerank"}


def test_the_official_parser_validates_it():
    done = validate(COMMITTED)
    assert done.returncode == 0, done.stdout + done.stderr
    assert "valid AsyncAPI 3.0.0: 7 channels" in done.stdout


def test_the_parser_refuses_a_broken_avro_payload(tmp_path):
    """The validation can fail: a misspelt Avro type in one payload is an error."""
    doc = yaml.safe_load(COMMITTED.read_text())
    doc["components"]["messages"]["images"]["payload"]["schema"]["fields"][0]["type"] = "strng"
    broken = tmp_path / "broken.yaml"
    broken.write_text(yaml.safe_dump(doc))
    done = validate(broken)
    assert done.returncode == 1
    assert "undefined type name" in done.stdout
