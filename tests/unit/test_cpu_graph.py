"""The CPU graph rewrite changes speed only: outputs equal the original graph's bit for bit."""

import cv2
import numpy as np
import onnx
import onnxruntime as ort
import pytest
from onnx import TensorProto, helper, numpy_helper

from streams.inference.cpu_graph import split_prelu
from streams.models.catalog import serving_path
from tests.unit.serving_models import serving_settings


def _session(model: onnx.ModelProto) -> ort.InferenceSession:
    return ort.InferenceSession(model.SerializeToString(), providers=["CPUExecutionProvider"])


def _prelu_model(slope: np.ndarray) -> onnx.ModelProto:
    graph = helper.make_graph(
        [helper.make_node("PRelu", ["x", "slope"], ["y"])],
        "prelu",
        [helper.make_tensor_value_info("x", TensorProto.FLOAT, [1, 4, 8, 8])],
        [helper.make_tensor_value_info("y", TensorProto.FLOAT, [1, 4, 8, 8])],
        [numpy_helper.from_array(slope.reshape(4, 1, 1), "slope")],
    )
    return helper.make_model(graph, opset_imports=[helper.make_opsetid("", 13)])


@pytest.mark.parametrize(
    ("slopes", "kernels"),
    [
        ([-0.8, 0.0, 0.25, 1.0], ["Mul", "Max"]),  # every slope at most 1
        ([-0.8, 0.0, 0.25, 1.1], ["Relu", "Min", "Mul", "Add"]),  # one above 1
    ],
)
def test_split_prelu_is_prelu_exactly_for_slopes_of_any_sign(slopes, kernels):
    slope = np.array(slopes, np.float32)
    model = _prelu_model(slope)
    x = np.random.default_rng(3).normal(0, 1e3, (1, 4, 8, 8)).astype(np.float32)
    x[0, :, 0, :3] = [0.0, -0.0, np.float32(-1e-40)]  # zeros and a subnormal
    rewritten = split_prelu(model)
    assert [n.op_type for n in rewritten.graph.node] == kernels
    (expected,), (actual,) = _session(model).run(None, {"x": x}), _session(rewritten).run(None, {"x": x})
    np.testing.assert_array_equal(actual, expected)
    np.testing.assert_array_equal(actual, np.where(x > 0, x, slope.reshape(4, 1, 1) * x))


def test_the_embedder_without_prelu_gives_the_files_embeddings_on_real_faces(photo_bytes):
    settings = serving_settings()
    original = onnx.load(serving_path(settings, settings.embedder_model))
    rewritten = split_prelu(original)
    assert any(n.op_type == "PRelu" for n in original.graph.node)
    assert not any(n.op_type == "PRelu" for n in rewritten.graph.node)
    faces = np.stack(
        [
            cv2.resize(cv2.imdecode(np.frombuffer(photo_bytes[name], np.uint8), cv2.IMREAD_COLOR), (112, 112))
            for name in ("obama.jpg", "biden.jpg", "astronaut.png")
        ]
    )
    (expected,) = _session(original).run(None, {"faces": faces})
    (actual,) = _session(rewritten).run(None, {"faces": faces})
    np.testing.assert_array_equal(actual, expected)
