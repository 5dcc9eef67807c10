"""Serve the model repository's ONNX variants on a real Triton server, CPU only.

Run from the repository root as ``.venv-triton/bin/python -m scripts.triton_serve``:
PyTriton bundles Triton 2.51 but pins numpy<2, hence its own venv (see
``scripts/triton-venv``), where ``streams`` is not installed but importable from
the root. Each model named by a ``<repo>/<model>/config.pbtxt`` is bound to a
Triton model of the same name, whose inputs, outputs, max_batch_size and dynamic
batcher are read from that config; the inference function runs
``<repo>/<model>/1/model.onnx`` with ONNX Runtime. A mismatch between config and graph stops the server at start-up, so
the committed configs are checked against the generated models on every run.

Why not point tritonserver at the repository directly: the bundled server has
no onnxruntime backend, only the Python backend PyTriton drives. Clients see
the same Triton gRPC/HTTP API either way.

Prints ``READY grpc=<host:port> http=<host:port>`` and writes it to
``--ready-file`` once every model is loaded; SIGTERM or SIGINT stops it.
"""

from __future__ import annotations

import argparse
import os
import signal
import sys
import sysconfig
from pathlib import Path

import numpy as np
import onnxruntime as ort
from google.protobuf import text_format
from pytriton.decorators import batch
from pytriton.model_config import DynamicBatcher, ModelConfig, Tensor
from pytriton.triton import Triton, TritonConfig
from tritonclient.grpc import model_config_pb2
from tritonclient.utils import triton_to_np_dtype

from streams.inference.backend import ONNX_DATATYPES

REPO = Path(__file__).resolve().parents[1]
DEFAULT_REPOSITORY = REPO / "triton-infer-custom" / "model_repository"


class ConfigMismatch(SystemExit):
    """A committed config.pbtxt disagrees with the ONNX graph it describes."""


def main(argv: list[str] | None = None) -> int:
    args = _parse_args(argv)
    _use_interpreter_libpython()
    signal.signal(signal.SIGTERM, _interrupt)
    models = [_load(args.model_repository / name, args.threads) for name in _model_names(args)]
    config = TritonConfig(
        grpc_address=args.address,
        grpc_port=args.grpc_port,
        http_address=args.address,
        http_port=args.http_port,
        metrics_address=args.address,
        metrics_port=args.metrics_port,
        allow_gpu_metrics=False,
    )
    with Triton(config=config) as triton:
        for name, inputs, outputs, model_config, infer in models:
            triton.bind(model_name=name, infer_func=infer, inputs=inputs, outputs=outputs, config=model_config, strict=True)
        triton.run()
        marker = f"READY grpc={args.address}:{args.grpc_port} http={args.address}:{args.http_port}"
        if args.ready_file:
            args.ready_file.write_text(marker + "\n")
        print(marker, flush=True)
        triton.serve()
    return 0


def _parse_args(argv: list[str] | None) -> argparse.Namespace:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--model-repository", type=Path, default=DEFAULT_REPOSITORY)
    parser.add_argument("--models", nargs="*", help="model names (default: every folder with a config.pbtxt)")
    parser.add_argument("--address", default="127.0.0.1")
    parser.add_argument("--grpc-port", type=int, default=8001)
    parser.add_argument("--http-port", type=int, default=8000)
    parser.add_argument("--metrics-port", type=int, default=8002)
    parser.add_argument("--threads", type=int, default=0, help="ONNX Runtime intra-op threads per model; 0 lets it choose")
    parser.add_argument("--ready-file", type=Path, help="file written once every model is loaded")
    return parser.parse_args(argv)


def _use_interpreter_libpython() -> None:
    """Put this interpreter's lib dir first on LD_LIBRARY_PATH, which tritonserver passes to the Python stub.

    Without it, a pyenv interpreter's stub loads another libpython and model
    initialisation fails (``'_thread.RLock' object has no attribute '_recursion_count'``).
    """
    libdir = sysconfig.get_config_var("LIBDIR")
    current = os.environ.get("LD_LIBRARY_PATH", "")
    if libdir and libdir not in current.split(":"):
        os.environ["LD_LIBRARY_PATH"] = f"{libdir}:{current}" if current else libdir


def _interrupt(signum: int, frame: object) -> None:
    raise KeyboardInterrupt  # Triton.serve() stops the server and cleans its workspace on it


def _model_names(args: argparse.Namespace) -> list[str]:
    if args.models:
        return args.models
    return sorted(p.parent.name for p in args.model_repository.glob("*/config.pbtxt"))


def _load(model_dir: Path, threads: int):
    """Binding arguments of one model: its config as PyTriton objects and an ONNX Runtime infer function."""
    config = text_format.Parse((model_dir / "config.pbtxt").read_text(), model_config_pb2.ModelConfig())
    options = ort.SessionOptions()
    options.intra_op_num_threads = threads
    session = ort.InferenceSession(str(model_dir / "1" / "model.onnx"), options, providers=["CPUExecutionProvider"])
    _check_matches(config, session)
    inputs = [_tensor(t) for t in config.input]
    outputs = [_tensor(t) for t in config.output]
    batcher = config.dynamic_batching
    model_config = ModelConfig(
        max_batch_size=config.max_batch_size,
        batcher=DynamicBatcher(
            max_queue_delay_microseconds=batcher.max_queue_delay_microseconds,
            preferred_batch_size=list(batcher.preferred_batch_size) or None,
        ),
    )
    return config.name, inputs, outputs, model_config, _infer_function(session)


def _tensor(spec: model_config_pb2.ModelInput | model_config_pb2.ModelOutput) -> Tensor:
    datatype = model_config_pb2.DataType.Name(spec.data_type).removeprefix("TYPE_")
    return Tensor(name=spec.name, dtype=triton_to_np_dtype(datatype), shape=tuple(spec.dims))


def _check_matches(config: model_config_pb2.ModelConfig, session: ort.InferenceSession) -> None:
    """Names, datatypes and per-item dims of the config must be those of the graph (batch dim excluded)."""
    for kind, declared, actual in (
        ("input", config.input, session.get_inputs()),
        ("output", config.output, session.get_outputs()),
    ):
        want = {t.name: (model_config_pb2.DataType.Name(t.data_type).removeprefix("TYPE_"), list(t.dims)) for t in declared}
        have = {
            a.name: (ONNX_DATATYPES.get(a.type, a.type), [d if isinstance(d, int) else -1 for d in a.shape[1:]])
            for a in actual
        }
        if want != have:
            raise ConfigMismatch(f"{config.name}: config.pbtxt {kind}s {want} differ from the ONNX graph's {have}")


def _infer_function(session: ort.InferenceSession):
    output_names = [o.name for o in session.get_outputs()]

    @batch
    def infer(**inputs: np.ndarray) -> dict[str, np.ndarray]:
        return dict(zip(output_names, session.run(output_names, inputs), strict=True))

    return infer


if __name__ == "__main__":
    sys.exit(main())
