import asyncio
import os
import threading

import cv2
import numpy as np
import pytest

from streams.errors import BackendError, BackendNotReady
from streams.inference.onnx import DETECTOR_MAX_BATCH, EMBEDDER_MAX_BATCH, OnnxBackend
from streams.models.families import SFACE, YUNET
from tests.unit.serving_models import serving_settings


@pytest.fixture
async def backend():
    b = OnnxBackend(serving_settings(), max_batch_size=8)
    await b.start()
    yield b
    await b.close()


async def test_metadata_describes_the_serving_variants(backend):
    settings = serving_settings()
    detector = backend.model_info(settings.detector_model)
    assert [(t.name, t.datatype, t.shape) for t in detector.inputs] == [(YUNET.input, "UINT8", (-1, -1, -1, 3))]
    assert [t.name for t in detector.outputs] == list(YUNET.outputs)
    assert detector.max_batch_size == 8 and detector.version == "1"
    embedder = backend.model_info(settings.embedder_model)
    assert [(t.name, t.datatype, t.shape) for t in embedder.inputs] == [(SFACE.input, "UINT8", (-1, 112, 112, 3))]
    assert [(t.name, t.datatype, t.shape) for t in embedder.outputs] == [(SFACE.output, "FP32", (-1, 128))]
    assert await backend.is_ready()


async def test_infer_returns_outputs_by_name(backend, photo_bytes):
    face = cv2.resize(
        cv2.imdecode(np.frombuffer(photo_bytes["astronaut.png"], np.uint8), cv2.IMREAD_COLOR)[60:180, 170:280],
        (112, 112),
    )
    out = await backend.infer(serving_settings().embedder_model, np.stack([face, face[:, ::-1]]))
    assert list(out) == [SFACE.output]
    assert out[SFACE.output].shape == (2, 128) and out[SFACE.output].dtype == np.float32
    assert not np.allclose(out[SFACE.output][0], out[SFACE.output][1])


async def test_a_wrong_batch_is_a_backend_error(backend):
    with pytest.raises(BackendError, match="float32"):
        await backend.infer(serving_settings().embedder_model, np.zeros((1, 112, 112, 3), np.float32))


async def test_not_ready_before_start_and_when_files_are_missing(tmp_path):
    settings = serving_settings().replace(model_repository=str(tmp_path))
    backend = OnnxBackend(settings)
    assert not await backend.is_ready()
    with pytest.raises(BackendNotReady, match="not loaded"):
        backend.model_info(settings.detector_model)
    with pytest.raises(BackendNotReady, match="facestream models fetch"):
        await backend.start()


async def test_cpu_runs_are_small_batches_by_default():
    settings = serving_settings()
    b = OnnxBackend(settings)
    await b.start()
    assert b.model_info(settings.detector_model).max_batch_size == DETECTOR_MAX_BATCH <= 2
    assert b.model_info(settings.embedder_model).max_batch_size == EMBEDDER_MAX_BATCH <= 8
    await b.close()


@pytest.mark.parametrize("runs", [1, 2])
async def test_concurrent_calls_run_at_most_onnx_threads_at_once_each_on_a_pool_thread(runs, monkeypatch):
    """Concurrent infer calls (two batches in flight, pieces of one batch) share ``onnx_threads`` runs."""
    settings = serving_settings().replace(onnx_threads=runs)
    backend = OnnxBackend(settings)
    await backend.start()
    assert backend.parallel_calls == runs
    running, overlap, threads = 0, 0, set()
    run = backend.run
    lock = threading.Lock()

    def counted(model, batch):
        nonlocal running, overlap
        with lock:
            running += 1
            overlap = max(overlap, running)
        threads.add(threading.get_ident())
        try:
            return run(model, batch)
        finally:
            with lock:
                running -= 1

    monkeypatch.setattr(backend, "run", counted)
    faces = np.zeros((2, 112, 112, 3), np.uint8)
    await asyncio.gather(*(backend.infer(settings.embedder_model, faces) for _ in range(6)))
    assert overlap <= runs and len(threads) <= runs and threading.get_ident() not in threads
    await backend.close()


async def test_one_core_by_default_per_run_and_one_run_per_core():
    backend = OnnxBackend(serving_settings())
    assert backend.parallel_calls == len(os.sched_getaffinity(0))
