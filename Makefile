# facestream: the two entry commands are `make demo` and `make test`.
PYTHON ?= python3
VENV := .venv
PY := $(VENV)/bin/python
STAMP := .cache/stamps

.PHONY: setup demo test test-unit bench kafka-up kafka-down triton-up clean

setup: $(STAMP)/install $(STAMP)/models $(STAMP)/photos $(STAMP)/kafka $(STAMP)/triton $(STAMP)/karapace $(STAMP)/asyncapi  ## everything, idempotent

$(VENV)/bin/python:
	$(PYTHON) -m venv $(VENV)
	$(PY) -m pip install --quiet --upgrade pip

# The editable install compiles the C++ re-ranker (ext/) with scikit-build-core.
$(STAMP)/install: $(VENV)/bin/python pyproject.toml CMakeLists.txt $(wildcard ext/* ext/*/*)
	$(PY) -m pip install --quiet -e '.[dev]'
	$(PY) -c "import streams._rerank"
	@mkdir -p $(STAMP) && touch $@

$(STAMP)/models: $(STAMP)/install
	$(PY) -m streams models fetch
	@touch $@

$(STAMP)/photos: $(STAMP)/install
	$(PY) -m tests.support.photos >/dev/null
	@touch $@

$(STAMP)/kafka: scripts/kafka/pom.xml
	scripts/kafka-local libs
	@mkdir -p $(STAMP) && touch $@

$(STAMP)/triton: scripts/triton-venv
	scripts/triton-venv
	@mkdir -p $(STAMP) && touch $@

# A real Confluent-compatible Schema Registry for the registry tests (its source travels in ../shared).
$(STAMP)/karapace:
	../shared/tools/karapace/setup .cache/karapace
	@mkdir -p $(STAMP) && touch $@

# The official AsyncAPI parser, which validates docs/asyncapi.yaml in the suite.
$(STAMP)/asyncapi: scripts/asyncapi/package.json
	npm install --silent --no-audit --no-fund --prefix scripts/asyncapi
	@mkdir -p $(STAMP) && touch $@

demo: setup  ## broker, worker, sample photos, similarities; stops what it started
	$(PY) -m scripts.demo

test: setup  ## the whole suite, integration tests against a real broker and a real Triton server included
	$(PY) -m pytest -q -p no:cacheprovider

test-unit: $(STAMP)/install
	$(PY) -m pytest -q -m "not integration"

bench: setup
	$(PY) -m pip install --quiet -e '.[dev,bench]'
	$(PY) -m perf.bench_rerank
	$(PY) -m perf.bench_inference
	$(PY) -m perf.bench_stream
	$(PY) -m perf.bench_gallery
	$(PY) -m perf.bench_compact

kafka-up: $(STAMP)/kafka
	scripts/kafka-local start

kafka-down:
	scripts/kafka-local stop

triton-up: $(STAMP)/models $(STAMP)/triton  ## a real Triton server (PyTriton, CPU) on 8000/8001/8002, foreground
	.venv-triton/bin/python -m scripts.triton_serve --grpc-port 8001 --http-port 8000 --metrics-port 8002

clean:
	rm -rf build .cache/stamps .pytest_cache
