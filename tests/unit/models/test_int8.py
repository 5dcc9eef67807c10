"""The int8 embedder's guard: near float32 on every real face, and no same/different-person decision changes."""

import asyncio
import itertools

import numpy as np
import onnx
import pytest

from streams.inference.onnx import OnnxBackend
from streams.models import int8
from streams.models.catalog import serving_path
from streams.models.families import SFACE
from streams.models.variants import write_variants
from streams.pipeline import FacePipeline
from tests.support.photos import CACHE, OBAMA, PHOTOS, side_by_side
from tests.unit.serving_models import serving_settings


async def _faces(precision: str, images: list[np.ndarray]) -> list:
    settings = serving_settings().replace(onnx_precision=precision)
    pipeline = FacePipeline(OnnxBackend(settings), settings)
    await pipeline.start()
    try:
        return await pipeline.process(images)
    finally:
        await pipeline.close()


@pytest.fixture(scope="module")
def images(photo_bytes):
    decode = FacePipeline(OnnxBackend(serving_settings()), serving_settings()).decode
    singles = {name: decode(photo_bytes[name]) for name in PHOTOS}
    group = side_by_side(side_by_side(singles["obama2.jpg"], singles["biden.jpg"]), singles["astronaut.png"])
    return {**singles, "group": group}


@pytest.fixture(scope="module")
def both(images):
    """(name, float32 face, int8 face) for every face of every real photo; both find the same faces."""
    names = list(images)
    float32 = asyncio.run(_faces("float32", list(images.values())))
    quantised = asyncio.run(_faces("int8", list(images.values())))
    out = []
    for name, a, b in zip(names, float32, quantised, strict=True):
        assert len(a.faces) == len(b.faces), name  # the detector is float32 in both
        out += [(f"{name}#{k}", fa, fb) for k, (fa, fb) in enumerate(zip(a.faces, b.faces, strict=True))]
    assert len(out) >= 12
    return out


def test_every_real_face_keeps_cosine_099_to_float32(both):
    cosines = {name: float(a.embedding @ b.embedding) for name, a, b in both}
    assert min(cosines.values()) >= int8.MIN_COSINE, cosines


def test_no_same_or_different_person_decision_changes(both):
    """Every pair of real faces is judged alike by both (SFace's same-person threshold), and Obama stays Obama."""
    for (n1, a1, b1), (n2, a2, b2) in itertools.combinations(both, 2):
        same_float, same_int8 = float(a1.embedding @ a2.embedding), float(b1.embedding @ b2.embedding)
        assert (same_float >= SFACE.same_person) == (same_int8 >= SFACE.same_person), (n1, n2, same_float, same_int8)
    by_name = {name: b.embedding for name, _, b in both}
    for x, y in itertools.combinations(OBAMA, 2):
        assert float(by_name[f"{x}#0"] @ by_name[f"{y}#0"]) > 0.5


def test_the_file_records_what_it_was_made_from_and_is_not_remade():
    settings = serving_settings()
    target = serving_path(settings, settings.embedder_model, precision="int8")
    before = target.stat().st_mtime_ns
    assert int8.write_int8_embedder(settings, CACHE) == target and target.stat().st_mtime_ns == before
    props = {p.key: p.value for p in onnx.load(target).metadata_props}
    assert float(props["facestream.worst_cosine"]) >= int8.MIN_COSINE
    ops = {n.op_type for n in onnx.load(target).graph.node}
    assert {"QuantizeLinear", "DequantizeLinear", "Conv"} <= ops and "PRelu" not in ops


def test_a_variant_that_misses_the_bar_is_refused_and_not_written(tmp_path, monkeypatch):
    settings = serving_settings().replace(model_repository=str(tmp_path / "repository"))
    write_variants(settings)
    monkeypatch.setattr(int8, "MIN_COSINE", 0.99999)
    with pytest.raises(int8.Int8Rejected, match=r"worst cosine to float32 on \d+ real faces 0\.9\d+ < 0\.99999"):
        int8.write_int8_embedder(settings, CACHE)
    assert not serving_path(settings, settings.embedder_model, precision="int8").exists()


async def test_the_onnx_backend_reads_the_file_of_its_precision(tmp_path):
    settings = serving_settings().replace(model_repository=str(tmp_path / "repository"))
    write_variants(settings)
    await OnnxBackend(settings.replace(onnx_precision="float32")).start()
    with pytest.raises(Exception, match=r"model\.int8\.onnx does not exist"):
        await OnnxBackend(settings.replace(onnx_precision="int8")).start()
