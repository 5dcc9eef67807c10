"""Serving variants: the upstream graphs with a uint8 NHWC input prefix and dynamic shapes.

Why a prefix: images cross the wire (gRPC to Triton) as bytes, 4x smaller than
float32, and the cast/transpose/channel-order work runs inside the model where
a GPU does it for free. What each network expects (read from OpenCV's own
``FaceDetectorYN`` / ``FaceRecognizerSF``, which feed these exact files):

* YuNet: BGR, raw 0..255 float, NCHW; no mean or scale.
* SFace: RGB, 0..255 float, NCHW; its graph already subtracts 127.5 and
  multiplies by 1/128, so the prefix only casts, swaps BGR->RGB and transposes.

Why dynamic shapes: Triton batches requests (batch dimension) and YuNet's
fully-convolutional body works at any size that is a multiple of 32, but the
upstream file bakes ``[1, 3, 640, 640]`` into its input, its reshape targets
(``[1, -1, k]``) and its recorded output shapes (ONNX Runtime warns on every
call when recorded and actual shapes differ). All three are rewritten here;
weights are untouched.
"""

from __future__ import annotations

import os
import shutil
import tempfile
from pathlib import Path

import numpy as np
import onnx
from onnx import TensorProto, helper, numpy_helper

from streams.config import Settings
from streams.models import catalog, families
from streams.models.catalog import LICENCE_DIR, serving_path

BATCH = "batch"


def detector_variant(original: onnx.ModelProto) -> onnx.ModelProto:
    """YuNet with input ``images`` uint8 [batch, height, width, 3] BGR and dynamic batch/H/W outputs."""
    model = _copy(original)
    graph = model.graph
    (net_input,) = _real_inputs(graph)
    _prepend_uint8_prefix(graph, net_input.name, families.YUNET.input, ["height", "width"], bgr_to_rgb=False)
    for node in graph.node:
        if node.op_type == "Reshape":
            _copy_batch_in_reshape(graph, node.input[1])
    del graph.value_info[:]  # recorded intermediate shapes are those of 640x640, batch 1
    for out in graph.output:
        stride = out.name.rsplit("_", 1)[1]
        _set_shape(out, [BATCH, f"anchors_{stride}", _last_dim(out)])
    assert sorted(o.name for o in graph.output) == sorted(families.YUNET.outputs), "unexpected YuNet outputs"
    onnx.checker.check_model(model)
    return model


def embedder_variant(original: onnx.ModelProto) -> onnx.ModelProto:
    """SFace with input ``faces`` uint8 [batch, 112, 112, 3] BGR and output ``embeddings`` [batch, 128]."""
    model = _copy(original)
    graph = model.graph
    initialisers = {i.name for i in graph.initializer}
    kept = [i for i in graph.input if i.name not in initialisers]  # old IR listed weights as inputs
    del graph.input[:]
    graph.input.extend(kept)
    (net_input,) = _real_inputs(graph)
    sface = families.SFACE
    _prepend_uint8_prefix(graph, net_input.name, sface.input, [sface.input_size, sface.input_size], bgr_to_rgb=True)
    (out,) = graph.output
    _rename_value(graph, out.name, sface.output)
    assert _last_dim(out) == sface.dim, "unexpected SFace embedding dimension"
    _set_shape(out, [BATCH, sface.dim])
    del graph.value_info[:]
    onnx.checker.check_model(model)
    return model


def write_variants(settings: Settings) -> list[Path]:
    """Generate both variants from the cached upstream files into the model repository; return their paths."""
    plan = [
        (catalog.YUNET, detector_variant, settings.detector_model),
        (catalog.SFACE, embedder_variant, settings.embedder_model),
    ]
    written = []
    for pretrained, make, name in plan:
        variant = make(onnx.load(settings.model_path / pretrained.filename))
        target = serving_path(settings, name)
        write_atomically(variant, target)
        for licence in pretrained.licence_files:  # a derived file carries its upstream licence
            shutil.copyfile(LICENCE_DIR / licence, target.parent / licence)
        written.append(target)
    return written


def _copy(model: onnx.ModelProto) -> onnx.ModelProto:
    out = onnx.ModelProto()
    out.CopyFrom(model)
    out.producer_name = "facestream.models.variants"
    return out


def _real_inputs(graph: onnx.GraphProto) -> list[onnx.ValueInfoProto]:
    initialisers = {i.name for i in graph.initializer}
    return [i for i in graph.input if i.name not in initialisers]


def _prepend_uint8_prefix(
    graph: onnx.GraphProto, net_input: str, wire_name: str, spatial: list, *, bgr_to_rgb: bool
) -> None:
    """Replace float NCHW input ``net_input`` by uint8 NHWC ``wire_name``: Cast, [channel swap], Transpose."""
    wire = helper.make_tensor_value_info(wire_name, TensorProto.UINT8, [BATCH, *spatial, 3])
    nodes = [helper.make_node("Cast", [wire_name], [f"{wire_name}_float"], to=TensorProto.FLOAT)]
    nhwc = f"{wire_name}_float"
    if bgr_to_rgb:
        graph.initializer.append(numpy_helper.from_array(np.array([2, 1, 0], np.int64), f"{wire_name}_rgb_order"))
        nodes.append(helper.make_node("Gather", [nhwc, f"{wire_name}_rgb_order"], [f"{wire_name}_rgb"], axis=3))
        nhwc = f"{wire_name}_rgb"
    nodes.append(helper.make_node("Transpose", [nhwc], [net_input], perm=[0, 3, 1, 2]))
    kept = [i for i in graph.input if i.name != net_input]
    del graph.input[:]
    graph.input.extend([wire, *kept])
    existing = list(graph.node)
    del graph.node[:]
    graph.node.extend(nodes + existing)


def _copy_batch_in_reshape(graph: onnx.GraphProto, shape_name: str) -> None:
    """``[1, -1, k]`` -> ``[0, -1, k]``: 0 copies the batch dimension of the input instead of fixing it."""
    for i, init in enumerate(graph.initializer):
        if init.name == shape_name:
            shape = numpy_helper.to_array(init).copy()
            if shape.size and shape[0] == 1:
                shape[0] = 0
                graph.initializer[i].CopyFrom(numpy_helper.from_array(shape, shape_name))
            return
    raise ValueError(f"reshape target {shape_name} is not an initialiser")


def _rename_value(graph: onnx.GraphProto, old: str, new: str) -> None:
    for node in graph.node:
        node.output[:] = [new if o == old else o for o in node.output]
        node.input[:] = [new if i == old else i for i in node.input]
    for out in graph.output:
        if out.name == old:
            out.name = new


def _last_dim(value: onnx.ValueInfoProto) -> int:
    return value.type.tensor_type.shape.dim[-1].dim_value


def _set_shape(value: onnx.ValueInfoProto, dims: list) -> None:
    shape = value.type.tensor_type.shape
    del shape.dim[:]
    for d in dims:
        dim = shape.dim.add()
        if isinstance(d, str):
            dim.dim_param = d
        else:
            dim.dim_value = d


def write_atomically(model: onnx.ModelProto, target: Path) -> None:
    target.parent.mkdir(parents=True, exist_ok=True)
    fd, tmp = tempfile.mkstemp(dir=target.parent, suffix=".onnx.tmp")
    os.close(fd)
    try:
        onnx.save(model, tmp)
        os.chmod(tmp, 0o644)  # mkstemp makes 0600; a Triton container runs as another user
        os.replace(tmp, target)
    except BaseException:
        Path(tmp).unlink(missing_ok=True)
        raise
