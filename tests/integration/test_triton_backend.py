"""The triton backend against a real Triton server (see ``tests/support/triton.py``).

What matters to a worker: the backend learns the models from the server, gives
the same answers as in-process ONNX Runtime on real photographs, says clearly
and quickly when the server is not there, and never retries without bound.
"""

from __future__ import annotations

import asyncio
import logging
import socket
import time
from pathlib import Path

import numpy as np
import pytest
from google.protobuf import text_format
from tritonclient.grpc import model_config_pb2

from streams.config import Settings
from streams.errors import BackendError, BackendNotReady
from streams.inference import create_backend
from streams.inference.onnx import OnnxBackend
from streams.inference.triton import TritonBackend
from streams.models.families import SFACE, YUNET
from streams.pipeline import FacePipeline
from streams.vision.letterbox import letterbox_batch
from tests.support import REPO
from tests.support.photos import PORTRAITS
from tests.support.triton import TritonServerError, triton_server

pytestmark = pytest.mark.integration

TOLERANCE = 1e-4
#: A small embedder batch: the failure tests are about the network, not the model.
FACES = np.full((2, 112, 112, 3), 128, np.uint8)


@pytest.fixture
def settings(triton_url: str) -> Settings:
    return Settings.from_env(None, backend="triton", triton_url=triton_url)


@pytest.fixture
async def triton(settings: Settings):
    backend = create_backend(settings)
    await backend.start()
    yield backend
    await backend.close()


@pytest.fixture
async def onnx(settings: Settings):
    """In-process ONNX Runtime on the float32 variant: the file Triton serves."""
    backend = OnnxBackend(settings.replace(backend="onnx", onnx_precision="float32"))
    await backend.start()
    yield backend
    await backend.close()


def _committed_config(settings: Settings, model: str) -> model_config_pb2.ModelConfig:
    text = (REPO / settings.model_repository / model / "config.pbtxt").read_text()
    return text_format.Parse(text, model_config_pb2.ModelConfig())


async def test_start_reads_names_types_and_batch_limits_from_the_server(triton, settings: Settings) -> None:
    assert isinstance(triton, TritonBackend)
    assert await triton.is_ready()
    detector = triton.model_info(settings.detector_model)
    embedder = triton.model_info(settings.embedder_model)
    assert [(t.name, t.datatype, t.shape) for t in detector.inputs] == [(YUNET.input, "UINT8", (-1, -1, -1, 3))]
    assert sorted(t.name for t in detector.outputs) == sorted(YUNET.outputs)
    assert {t.datatype for t in detector.outputs} == {"FP32"}
    assert [(t.name, t.datatype, t.shape) for t in embedder.inputs] == [(SFACE.input, "UINT8", (-1, 112, 112, 3))]
    assert [(t.name, t.shape) for t in embedder.outputs] == [(SFACE.output, (-1, 128))]
    for info in (detector, embedder):
        assert info.max_batch_size == _committed_config(settings, info.name).max_batch_size
        assert info.version == "1"


async def test_detector_and_embedder_outputs_equal_onnx_runtime_on_photos(triton, onnx, settings, photo_bytes) -> None:
    pipeline = FacePipeline(onnx, settings.replace(emit_aligned=True))
    images = [pipeline.decode(data) for data in photo_bytes.values()]
    canvas, _ = letterbox_batch(images, settings.canvas_size)
    expected = await onnx.infer(settings.detector_model, canvas)
    actual = await triton.infer(settings.detector_model, canvas)
    assert actual.keys() == expected.keys()
    for name in expected:
        assert actual[name].shape == expected[name].shape
        np.testing.assert_allclose(actual[name], expected[name], rtol=0, atol=TOLERANCE, err_msg=name)

    faces = np.stack([face.aligned for result in await pipeline.process(images) for face in result.faces])
    assert len(faces) >= len(PORTRAITS), "each portrait gives a face at least"
    expected = await onnx.infer(settings.embedder_model, faces)
    actual = await triton.infer(settings.embedder_model, faces)
    np.testing.assert_allclose(actual[SFACE.output], expected[SFACE.output], rtol=0, atol=TOLERANCE)


@pytest.mark.parametrize("fit", ["image", "square"])
async def test_pipeline_on_triton_gives_the_faces_of_onnx_runtime(triton, onnx, settings, photo_bytes, fit) -> None:
    settings = settings.replace(canvas_fit=fit)  # the same canvases on both (auto picks square for Triton only)
    on_onnx, on_triton = FacePipeline(onnx, settings), FacePipeline(triton, settings)
    images = [on_onnx.decode(data) for data in photo_bytes.values()]
    expected, actual = await on_onnx.process(images), await on_triton.process(images)
    assert sum(len(r.faces) for r in expected) >= len(PORTRAITS)
    for name, a, b in zip(photo_bytes, expected, actual, strict=True):
        assert len(b.faces) == len(a.faces), name
        for fa, fb in zip(a.faces, b.faces, strict=True):
            np.testing.assert_allclose(fb.embedding, fa.embedding, rtol=0, atol=TOLERANCE, err_msg=name)
            np.testing.assert_allclose(fb.bbox, fa.bbox, rtol=0, atol=1e-2, err_msg=name)
            np.testing.assert_allclose(fb.landmarks, fa.landmarks, rtol=0, atol=1e-2, err_msg=name)
            assert fb.score == pytest.approx(fa.score, abs=TOLERANCE), name


async def test_dead_address_is_not_ready_quickly_and_names_the_url() -> None:
    settings = Settings.from_env(None)
    with socket.socket() as s:
        s.bind(("127.0.0.1", 0))
        dead = f"127.0.0.1:{s.getsockname()[1]}"  # bound but not listening: connections are refused
        backend = TritonBackend(settings.replace(triton_url=dead))
        started = time.monotonic()
        with pytest.raises(BackendNotReady, match=dead):
            await backend.start()
        assert time.monotonic() - started < 2.0
    assert not await backend.is_ready()
    with pytest.raises(BackendNotReady, match="not started"):
        await backend.infer(settings.embedder_model, np.zeros((1, 112, 112, 3), np.uint8))


async def test_unknown_model_is_not_ready_naming_model_and_server(settings: Settings) -> None:
    backend = TritonBackend(settings, models=("no_such_model",))
    with pytest.raises(BackendNotReady, match=rf"'no_such_model' on Triton at {settings.triton_url}"):
        await backend.start()


class Relay:
    """A TCP relay in front of the Triton server that a test can cut or stall: real network failures, on demand."""

    def __init__(self, target: str) -> None:
        host, port = target.rsplit(":", 1)
        self._target = (host, int(port))
        self._server: asyncio.Server | None = None
        self._writers: list[asyncio.StreamWriter] = []
        self._flowing = asyncio.Event()
        self._flowing.set()
        self.port = 0

    @property
    def url(self) -> str:
        return f"127.0.0.1:{self.port}"

    async def open(self) -> None:
        self._server = await asyncio.start_server(self._relay, "127.0.0.1", self.port)
        self.port = self._server.sockets[0].getsockname()[1]

    async def cut(self) -> None:
        """Stop listening and drop every connection, as a crashed or restarting server does."""
        self._server.close()
        for writer in self._writers:
            writer.close()
        self._writers.clear()
        await self._server.wait_closed()

    def stall(self) -> None:
        """Keep connections open but forward nothing, as an overloaded or partitioned server looks."""
        self._flowing.clear()

    async def _relay(self, reader: asyncio.StreamReader, writer: asyncio.StreamWriter) -> None:
        upstream_reader, upstream_writer = await asyncio.open_connection(*self._target)
        self._writers += [writer, upstream_writer]
        await asyncio.gather(
            self._pipe(reader, upstream_writer), self._pipe(upstream_reader, writer), return_exceptions=True
        )

    async def _pipe(self, reader: asyncio.StreamReader, writer: asyncio.StreamWriter) -> None:
        while data := await reader.read(1 << 16):
            await self._flowing.wait()
            writer.write(data)
            await writer.drain()
        writer.close()


@pytest.fixture
async def relay(triton_url: str):
    relay = Relay(triton_url)
    await relay.open()
    yield relay
    await relay.cut()


def _retry_warnings(caplog: pytest.LogCaptureFixture) -> int:
    return len([r for r in caplog.records if r.name == "streams.inference.triton" and "retry" in r.getMessage()])


async def test_unavailable_server_is_retried_a_bounded_number_of_times_with_backoff(relay, settings, caplog) -> None:
    retries, backoff_s = 2, 0.05
    backend = TritonBackend(settings.replace(triton_url=relay.url, backend_retries=retries, retry_backoff_ms=50))
    await backend.start()
    await relay.cut()
    started = time.monotonic()
    with caplog.at_level(logging.WARNING, logger="streams.inference.triton"):
        with pytest.raises(BackendError, match=rf"{retries + 1} times, last: StatusCode.UNAVAILABLE"):
            await backend.infer(settings.embedder_model, FACES)
    elapsed = time.monotonic() - started
    await backend.close()
    assert _retry_warnings(caplog) == retries
    backoffs = backoff_s * (1 + 2)  # 50 ms, then 100 ms
    assert backoffs <= elapsed < backoffs + 2.0


async def test_a_server_back_within_the_retry_budget_serves_the_request(relay, settings, onnx, caplog) -> None:
    backend = TritonBackend(settings.replace(triton_url=relay.url, backend_retries=5, retry_backoff_ms=100))
    await backend.start()
    await relay.cut()

    async def restart_later() -> None:
        await asyncio.sleep(0.2)
        await relay.open()  # same port

    with caplog.at_level(logging.WARNING, logger="streams.inference.triton"):
        restarted = asyncio.create_task(restart_later())
        outputs = await backend.infer(settings.embedder_model, FACES)
        await restarted
    await backend.close()
    assert _retry_warnings(caplog) >= 1
    expected = await onnx.infer(settings.embedder_model, FACES)
    np.testing.assert_allclose(outputs[SFACE.output], expected[SFACE.output], rtol=0, atol=TOLERANCE)


async def test_a_silent_server_hits_the_per_request_timeout_on_every_attempt(relay, settings, caplog) -> None:
    timeout_s, retries = 0.3, 1
    backend = TritonBackend(
        settings.replace(triton_url=relay.url, triton_timeout_s=timeout_s, backend_retries=retries, retry_backoff_ms=50)
    )
    await backend.start()
    relay.stall()
    started = time.monotonic()
    with caplog.at_level(logging.WARNING, logger="streams.inference.triton"):
        with pytest.raises(BackendError, match="2 times, last: StatusCode.DEADLINE_EXCEEDED"):
            await backend.infer(settings.embedder_model, FACES)
    elapsed = time.monotonic() - started
    await backend.close()
    assert _retry_warnings(caplog) == retries
    assert 2 * timeout_s + 0.05 <= elapsed < 2 * timeout_s + 0.05 + 2.0


async def test_a_request_the_server_rejects_fails_at_once_without_retries(triton, settings, caplog) -> None:
    wrong_size = np.zeros((1, 100, 100, 3), np.uint8)  # the embedder takes 112x112
    with caplog.at_level(logging.WARNING, logger="streams.inference.triton"):
        with pytest.raises(BackendError, match="INVALID_ARGUMENT") as raised:
            await triton.infer(settings.embedder_model, wrong_size)
    assert not isinstance(raised.value, BackendNotReady)
    assert _retry_warnings(caplog) == 0


async def test_a_batch_the_model_cannot_take_is_refused_before_the_wire(triton, settings: Settings) -> None:
    limit = triton.model_info(settings.embedder_model).max_batch_size
    with pytest.raises(TypeError, match="UINT8"):
        await triton.infer(settings.embedder_model, np.zeros((1, 112, 112, 3), np.float32))
    with pytest.raises(ValueError, match=f"exceeds max_batch_size {limit}"):
        await triton.infer(settings.embedder_model, np.zeros((limit + 1, 112, 112, 3), np.uint8))


async def test_is_ready_follows_the_backend_lifecycle(settings: Settings) -> None:
    backend = TritonBackend(settings)
    assert not await backend.is_ready()
    await backend.start()
    assert await backend.is_ready()
    await backend.close()
    assert not await backend.is_ready()


def test_the_test_server_refuses_a_config_that_disagrees_with_the_graph(tmp_path: Path) -> None:
    source = REPO / Settings.from_env(None).model_repository / "face_embedder"
    model = tmp_path / "face_embedder"
    (model / "1").mkdir(parents=True)
    (model / "1" / "model.onnx").symlink_to(source / "1" / "model.onnx")
    config = (source / "config.pbtxt").read_text()
    (model / "config.pbtxt").write_text(config.replace('name: "embeddings"', 'name: "features"'))
    with pytest.raises(TritonServerError, match="differ from the ONNX graph"):
        with triton_server(tmp_path):
            pass


def test_create_backend_picks_the_named_backend_and_rejects_others() -> None:
    settings = Settings.from_env(None, backend="triton")
    assert isinstance(create_backend(settings), TritonBackend)
    assert isinstance(create_backend(settings.replace(backend="onnx")), OnnxBackend)
    with pytest.raises(ValueError, match="'grpc'"):
        create_backend(settings.replace(backend="grpc"))
