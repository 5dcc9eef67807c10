# syntax=docker/dockerfile:1
# The facestream worker image.
#
#   docker build -t facestream .                              # models mounted at run time
#   docker build --build-arg FETCH_MODELS=1 -t facestream .   # models fetched (sha256-checked) into the image
#
# Stage 1 compiles the C++ re-ranker into a wheel (scikit-build-core + nanobind)
# and builds or downloads the wheels of every dependency; stage 2 installs them
# offline into a slim Python with no compiler, and runs as an unprivileged user.

ARG PYTHON_VERSION=3.11

FROM python:${PYTHON_VERSION}-slim AS build
RUN apt-get update \
    && apt-get install -y --no-install-recommends build-essential cmake \
    && rm -rf /var/lib/apt/lists/*
WORKDIR /src
COPY pyproject.toml CMakeLists.txt README.md ./
COPY ext ext
COPY schemas schemas
COPY streams streams
RUN pip wheel --no-cache-dir --wheel-dir /wheels .

FROM python:${PYTHON_VERSION}-slim AS runtime
# libgomp1: OpenMP runtime of ONNX Runtime and OpenCV.
RUN apt-get update \
    && apt-get install -y --no-install-recommends libgomp1 \
    && rm -rf /var/lib/apt/lists/* \
    && useradd --create-home --uid 10001 --user-group facestream
COPY --from=build /wheels /tmp/wheels
RUN pip install --no-cache-dir --no-index --find-links /tmp/wheels facestream \
    && rm -rf /tmp/wheels

# Upstream models and their licences in /models/upstream; the generated serving
# variants in a Triton-layout repository at /models/repository (configs from git).
# MALLOC_ARENA_MAX: two glibc heaps instead of one per thread (measured: steady RSS 759 -> ~653 MB).
ENV FACESTREAM_MODEL_DIR=/models/upstream \
    FACESTREAM_MODEL_REPOSITORY=/models/repository \
    FACESTREAM_DATA_DIR=/var/lib/facestream \
    FACESTREAM_WEB_HOST=0.0.0.0 \
    FACESTREAM_WEB_PORT=6066 \
    PYTHONUNBUFFERED=1 \
    MALLOC_ARENA_MAX=2
COPY --chown=facestream:facestream triton-infer-custom/model_repository /models/repository
RUN mkdir -p /models/upstream /var/lib/facestream \
    && chown -R facestream:facestream /models /var/lib/facestream

USER facestream
WORKDIR /home/facestream

# FETCH_MODELS=1 bakes the models in; otherwise mount a directory holding both
# (for example the host's .cache/models and triton-infer-custom/model_repository).
ARG FETCH_MODELS=0
RUN if [ "$FETCH_MODELS" = "1" ]; then facestream models fetch; fi

EXPOSE 6066
# Liveness: /healthz answers while the process and its event loop run (no curl in slim: Python does it).
HEALTHCHECK --interval=15s --timeout=5s --start-period=60s --retries=3 \
    CMD ["python", "-c", "import os, urllib.request; urllib.request.urlopen('http://127.0.0.1:%s/healthz' % os.environ.get('FACESTREAM_WEB_PORT', '6066'), timeout=4)"]
ENTRYPOINT ["facestream"]
CMD ["worker"]
