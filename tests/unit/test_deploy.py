"""The deployment files agree with the code: ports, settings, healthchecks, mounts, metric names.

No Docker engine runs here, so the compose file, the Dockerfile, the Prometheus
and Grafana provisioning are parsed and checked against ``streams.config`` and
``streams.metrics`` instead of being run.
"""

from __future__ import annotations

import dataclasses
import importlib.util
import json
import re
import shlex
from pathlib import Path

import pytest
import yaml

from streams import metrics
from streams.config import Settings, documented, env_name
from tests.support import REPO

WEB_PORT = Settings().web_port
SETTING_VARS = {env_name(f.name) for f in dataclasses.fields(Settings)}
METRIC_TOKEN = re.compile(r"\b((?:facestream|process)_[a-zA-Z0-9_]+)")


def load_yaml(path: str) -> dict:
    return yaml.safe_load((REPO / path).read_text())


@pytest.fixture(scope="module")
def compose() -> dict:
    return load_yaml("docker-compose.yml")


@pytest.fixture(scope="module")
def dockerfile() -> list[tuple[str, str]]:
    """(INSTRUCTION, arguments) of the Dockerfile, continuation lines joined, comments dropped."""
    text = (REPO / "Dockerfile").read_text()
    text = re.sub(r"\\\n", " ", "\n".join(line for line in text.splitlines() if not line.lstrip().startswith("#")))
    out = []
    for line in text.splitlines():
        if line.strip():
            word, _, rest = line.strip().partition(" ")
            out.append((word.upper(), rest.strip()))
    return out


def dockerfile_env(dockerfile: list[tuple[str, str]]) -> dict[str, str]:
    """The variables the Dockerfile's ENV instructions set."""
    return dict(pair.split("=", 1) for word, args in dockerfile if word == "ENV" for pair in shlex.split(args))


# --- docker-compose.yml -------------------------------------------------------


def test_stack_has_every_service_and_each_has_a_healthcheck(compose):
    services = compose["services"]
    assert set(services) == {"kafka", "schema-registry", "triton", "worker", "api", "prometheus", "grafana"}
    for name, service in services.items():
        assert service["healthcheck"]["test"], name


def test_workers_and_the_api_write_through_the_stack_registry(compose):
    registry = compose["services"]["schema-registry"]
    assert registry["environment"]["SCHEMA_REGISTRY_KAFKASTORE_BOOTSTRAP_SERVERS"] == "kafka:9092"
    for name in ("worker", "api"):
        service = compose["services"][name]
        assert service["environment"]["FACESTREAM_SCHEMA_REGISTRY_URL"] == "http://schema-registry:8081"
        assert service["depends_on"]["schema-registry"]["condition"] == "service_healthy"


def test_kafka_is_a_single_kraft_node_taking_the_largest_record(compose):
    kafka = compose["services"]["kafka"]
    assert re.fullmatch(r"apache/kafka:4\.1\.\d+", kafka["image"])
    env = kafka["environment"]
    assert set(env["KAFKA_PROCESS_ROLES"].split(",")) == {"broker", "controller"}
    assert env["KAFKA_CONTROLLER_QUORUM_VOTERS"] == f"{env['KAFKA_NODE_ID']}@kafka:9093"
    assert env["KAFKA_MESSAGE_MAX_BYTES"] >= Settings().max_message_bytes
    assert env["KAFKA_REPLICA_FETCH_MAX_BYTES"] >= env["KAFKA_MESSAGE_MAX_BYTES"]
    assert env["KAFKA_AUTO_CREATE_TOPICS_ENABLE"] == "false"  # the worker declares its topics
    assert "kafka-data:/var/lib/kafka/data" in kafka["volumes"] and env["KAFKA_LOG_DIRS"] == "/var/lib/kafka/data"


def test_triton_is_built_from_the_repository_with_a_gpu(compose):
    triton = compose["services"]["triton"]
    assert (REPO / triton["build"]["context"] / "Dockerfile").is_file()
    (device,) = triton["deploy"]["resources"]["reservations"]["devices"]
    assert device["driver"] == "nvidia" and "gpu" in device["capabilities"]
    assert "8001" in triton["expose"]


def test_worker_scales_and_serves_its_web_port(compose):
    worker = compose["services"]["worker"]
    # `--scale worker=N` breaks on a fixed container name or a published host port
    assert "container_name" not in worker and "ports" not in worker
    env = worker["environment"]
    assert int(env["FACESTREAM_WEB_PORT"]) == WEB_PORT
    assert str(WEB_PORT) in worker["expose"]
    assert f"127.0.0.1:{WEB_PORT}/healthz" in " ".join(worker["healthcheck"]["test"])
    assert env["FACESTREAM_KAFKA_BOOTSTRAP_SERVERS"] == "kafka:9092"
    assert env["FACESTREAM_TRITON_URL"].startswith("triton:") and env["FACESTREAM_BACKEND"] == "triton"
    assert set(env) <= SETTING_VARS, set(env) - SETTING_VARS
    assert worker["depends_on"]["kafka"]["condition"] == "service_healthy"


def test_the_api_serves_its_port_beside_the_workers(compose):
    api = compose["services"]["api"]
    env = api["environment"]
    assert api["command"] == ["api"] and api["image"] == compose["services"]["worker"]["image"]
    assert Settings().api_host == "127.0.0.1" and env["FACESTREAM_API_HOST"] == "0.0.0.0"
    port = int(env["FACESTREAM_API_PORT"])
    assert f"{port}:{port}" in api["ports"]
    assert f"127.0.0.1:{port}/healthz" in " ".join(api["healthcheck"]["test"])
    assert env["FACESTREAM_KAFKA_BOOTSTRAP_SERVERS"] == "kafka:9092"
    assert set(env) <= SETTING_VARS, set(env) - SETTING_VARS
    assert api["depends_on"]["kafka"]["condition"] == "service_healthy"


def test_workers_listen_on_every_interface_only_in_containers(compose, dockerfile):
    # Bare-metal default: loopback only; the image and the stack open it for Prometheus and probes.
    assert Settings().web_host == "127.0.0.1"
    assert compose["services"]["worker"]["environment"]["FACESTREAM_WEB_HOST"] == "0.0.0.0"
    assert dockerfile_env(dockerfile)["FACESTREAM_WEB_HOST"] == "0.0.0.0"


def test_docker_waits_longer_than_the_worker_takes_to_stop(compose):
    # The worker exits within FACESTREAM_SHUTDOWN_GRACE_S of SIGTERM; Docker's SIGKILL must come later.
    grace = compose["services"]["worker"]["stop_grace_period"]
    assert re.fullmatch(r"\d+s", grace) and int(grace[:-1]) > Settings().shutdown_grace_s


def test_bind_mounts_exist_and_named_volumes_are_declared(compose):
    for name, service in compose["services"].items():
        for volume in service.get("volumes", []):
            source = volume.split(":")[0]
            if source.startswith("."):
                assert (REPO / source).exists(), f"{name}: {source}"
            else:
                assert source in compose["volumes"], f"{name}: {source}"


def test_prometheus_scrapes_the_api_on_its_port(compose):
    jobs = {job["job_name"]: job for job in load_yaml("deploy/prometheus/prometheus.yml")["scrape_configs"]}
    (sd,) = jobs["facestream-api"]["dns_sd_configs"]
    assert sd["names"] == ["api"] and sd["port"] == int(compose["services"]["api"]["environment"]["FACESTREAM_API_PORT"])


def test_prometheus_scrapes_every_worker_on_the_web_port(compose):
    config = load_yaml("deploy/prometheus/prometheus.yml")
    mount = next(v for v in compose["services"]["prometheus"]["volumes"] if v.startswith("./deploy/prometheus"))
    assert mount.split(":")[1] == "/etc/prometheus"
    jobs = {job["job_name"]: job for job in config["scrape_configs"]}
    (sd,) = jobs["facestream-worker"]["dns_sd_configs"]
    assert sd["names"] == ["worker"] and sd["port"] == WEB_PORT
    assert jobs["facestream-worker"]["metrics_path"] == "/metrics"
    for rule_file in config["rule_files"]:
        assert (REPO / "deploy/prometheus" / Path(rule_file).name).is_file()


def test_grafana_provisioning_points_at_the_mounted_dashboards(compose):
    mounts = dict(v.split(":")[:2] for v in compose["services"]["grafana"]["volumes"])
    (provider,) = load_yaml("deploy/grafana/provisioning/dashboards/facestream.yml")["providers"]
    assert mounts["./deploy/grafana/dashboards"] == provider["options"]["path"]
    assert mounts["./deploy/grafana/provisioning"] == "/etc/grafana/provisioning"
    (source,) = load_yaml("deploy/grafana/provisioning/datasources/prometheus.yml")["datasources"]
    assert source["url"] == "http://prometheus:9090"


# --- Dockerfile -------------------------------------------------------------------


def test_dockerfile_builds_the_wheel_then_runs_slim_as_a_user(dockerfile):
    stages = [args for word, args in dockerfile if word == "FROM"]
    assert len(stages) == 2 and stages[0].endswith("AS build") and stages[1].endswith("AS runtime")
    assert all(re.match(r"python:\$\{PYTHON_VERSION\}-slim", s) for s in stages)
    build_at, runtime_at = [i for i, (w, _) in enumerate(dockerfile) if w == "FROM"]
    build, runtime = dockerfile[build_at:runtime_at], dockerfile[runtime_at:]
    assert any(w == "RUN" and "pip wheel" in a for w, a in build)
    assert any(w == "COPY" and a.startswith("--from=build /wheels") for w, a in runtime)
    assert not any("build-essential" in a for _, a in runtime)
    users = [a for w, a in runtime if w == "USER"]
    assert users and users[-1] not in {"root", "0"}


def test_dockerfile_healthcheck_and_port_match_the_settings(dockerfile):
    (health,) = [a for w, a in dockerfile if w == "HEALTHCHECK"]
    assert "/healthz" in health and f"'FACESTREAM_WEB_PORT', '{WEB_PORT}'" in health
    assert [a for w, a in dockerfile if w == "EXPOSE"] == [str(WEB_PORT)]
    env = dockerfile_env(dockerfile)
    assert int(env["FACESTREAM_WEB_PORT"]) == WEB_PORT
    assert {k for k in env if k.startswith("FACESTREAM_")} <= SETTING_VARS


def test_dockerfile_fetches_models_only_when_asked(dockerfile):
    assert ("ARG", "FETCH_MODELS=0") in dockerfile
    (fetch,) = [a for w, a in dockerfile if w == "RUN" and "models fetch" in a]
    assert '"$FETCH_MODELS" = "1"' in fetch


def test_every_copied_path_exists_and_passes_dockerignore(dockerfile):
    allowed = [line[1:].rstrip("/") for line in (REPO / ".dockerignore").read_text().splitlines() if line.startswith("!")]
    for word, args in dockerfile:
        if word != "COPY" or args.startswith("--from"):
            continue
        *sources, _ = [a for a in args.split() if not a.startswith("--")]
        for source in sources:
            assert (REPO / source).exists(), source
            assert any(source.rstrip("/") == a or source.startswith(a + "/") for a in allowed), source


# --- .env.example -----------------------------------------------------------------


def test_env_example_is_generated_from_the_settings_and_complete():
    spec = importlib.util.spec_from_file_location("env_example", REPO / "deploy/env_example.py")
    module = importlib.util.module_from_spec(spec)
    spec.loader.exec_module(module)
    text = (REPO / ".env.example").read_text()
    assert text == module.render(), "stale .env.example: run `python deploy/env_example.py`"
    listed = set(re.findall(r"^# (FACESTREAM_[A-Z0-9_]+)=", text, re.MULTILINE))
    assert listed == {name for name, _, _ in documented()}


# --- Grafana dashboard and alerts: only metrics the worker exports ------------------


@pytest.fixture(scope="module")
def dashboard() -> dict:
    return json.loads((REPO / "deploy/grafana/dashboards/facestream.json").read_text())


def test_every_panel_query_names_a_metric_the_worker_exports(dashboard):
    exported = metrics.exported_names()
    for panel in dashboard["panels"]:
        assert panel["targets"], panel["title"]
        for target in panel["targets"]:
            names = set(METRIC_TOKEN.findall(target["expr"]))
            assert names, f"{panel['title']}: {target['expr']}"
            assert names <= exported, f"{panel['title']}: {names - exported} not exported"


def test_dashboard_covers_what_operators_watch(dashboard):
    exprs = " ".join(t["expr"] for p in dashboard["panels"] for t in p["targets"])
    for metric in (
        "facestream_images_total",  # throughput
        "facestream_batch_size_bucket",
        "facestream_stage_seconds_bucket",
        "facestream_end_to_end_seconds_bucket",
        "facestream_consumer_lag",
        "facestream_dlq_total",
        "facestream_backend_up",
    ):
        assert metric in exprs, metric
    source_uid = load_yaml("deploy/grafana/provisioning/datasources/prometheus.yml")["datasources"][0]["uid"]
    assert {p["datasource"]["uid"] for p in dashboard["panels"]} == {source_uid}
    ids = [p["id"] for p in dashboard["panels"]]
    assert len(ids) == len(set(ids))


def test_alert_rules_use_exported_metrics():
    exported = metrics.exported_names()
    rules = [r for g in load_yaml("deploy/prometheus/alerts.yml")["groups"] for r in g["rules"]]
    assert rules
    for rule in rules:
        names = set(METRIC_TOKEN.findall(rule["expr"]))
        assert names and names <= exported, f"{rule['alert']}: {names - exported}"
