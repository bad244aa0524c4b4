"""ONNX export of the network's compute graph, ONNX Runtime sessions and OpenVINO infer requests on the CPU, and
static int8 quantisation (QDQ)."""

from __future__ import annotations

import contextlib
import io
import logging
import tempfile
import warnings
from collections.abc import Iterator, Sequence
from pathlib import Path

import numpy as np
import torch
from torch import nn

from mtfcdd.inference.cpu import cpu_has_int8_dot_product, physical_cores

OPTIMIZATION_LEVELS = ("disable", "basic", "extended", "all")


@contextlib.contextmanager
def _quiet_exporter() -> Iterator[None]:
    with warnings.catch_warnings():
        warnings.simplefilter("ignore", DeprecationWarning)  # the TorchScript exporter: 3 s here vs 30 s for dynamo
        warnings.simplefilter("ignore", torch.jit.TracerWarning)
        warnings.simplefilter("ignore", UserWarning)
        yield


@contextlib.contextmanager
def _quiet_root_logger() -> Iterator[None]:
    """onnxruntime.quantization logs every weight-scale adjustment at INFO on the root logger."""
    root = logging.getLogger()
    level = root.level
    root.setLevel(max(level, logging.WARNING))
    try:
        yield
    finally:
        root.setLevel(level)


def export_onnx(
    module: nn.Module,
    example: torch.Tensor,
    input_names: Sequence[str],
    output_names: Sequence[str],
    dynamic_axes: dict[str, dict[int, str]],
    opset: int = 17,
    dynamo: bool = False,
) -> bytes:
    """The ONNX model of ``module`` (put in eval mode) traced on ``example``, as serialised bytes (one file, no
    external data). ``dynamo=False`` uses the TorchScript exporter (seconds); ``True`` the torch.export one."""
    module = module.eval()
    example = example.detach().cpu()
    if dynamo:
        dims = dict.fromkeys(dynamic_axes.get(input_names[0], {}), torch.export.Dim.AUTO)
        program = torch.onnx.export(
            module,
            (example,),
            input_names=list(input_names),
            output_names=list(output_names),
            dynamic_shapes=(dims,),
            opset_version=max(opset, 18),
            dynamo=True,
            external_data=False,
        )
        return program.model_proto.SerializeToString()
    buffer = io.BytesIO()
    with _quiet_exporter(), torch.no_grad():
        torch.onnx.export(
            module,
            (example,),
            buffer,
            input_names=list(input_names),
            output_names=list(output_names),
            dynamic_axes=dynamic_axes,
            opset_version=opset,
            do_constant_folding=True,
            dynamo=False,
        )
    return buffer.getvalue()


def make_session(model: bytes, threads: int | None = None, optimization: str = "all"):
    """A CPU ONNX Runtime session: ``threads`` intra-op threads (None: physical cores), graph optimisations on."""
    import onnxruntime as ort

    if optimization not in OPTIMIZATION_LEVELS:
        raise ValueError(f"graph optimisation {optimization!r}: expected one of {OPTIMIZATION_LEVELS}")
    options = ort.SessionOptions()
    options.intra_op_num_threads = int(threads or physical_cores())
    options.inter_op_num_threads = 1
    options.execution_mode = ort.ExecutionMode.ORT_SEQUENTIAL
    options.graph_optimization_level = {
        "disable": ort.GraphOptimizationLevel.ORT_DISABLE_ALL,
        "basic": ort.GraphOptimizationLevel.ORT_ENABLE_BASIC,
        "extended": ort.GraphOptimizationLevel.ORT_ENABLE_EXTENDED,
        "all": ort.GraphOptimizationLevel.ORT_ENABLE_ALL,
    }[optimization]
    options.log_severity_level = 3
    return ort.InferenceSession(model, options, providers=["CPUExecutionProvider"])


def make_openvino_request(model: bytes, threads: int | None = None, precision: str = "f32"):
    """(compiled model, infer request) of OpenVINO for the CPU: ``threads`` inference threads (None: physical cores),
    ``precision`` the float layers' (``f32`` or ``bf16``), one stream. OpenVINO is the optional ``deploy`` extra."""
    try:
        import openvino
    except ImportError as err:
        raise ImportError("OpenVINO is not installed: pip install 'mtfcdd[deploy]'") from err
    core = openvino.Core()
    config = {
        "INFERENCE_NUM_THREADS": int(threads or physical_cores()),
        "INFERENCE_PRECISION_HINT": precision,
        "PERFORMANCE_HINT": "LATENCY",
        "NUM_STREAMS": 1,
    }
    compiled = core.compile_model(core.read_model(model, b""), "CPU", config)
    return compiled, compiled.create_infer_request()


def shape_arithmetic_nodes(graph) -> list[str]:
    """Names of the nodes that compute on tensor shapes, not on data (e.g. TF-style "same" padding amounts, computed
    in float from ``Shape``): quantising those would change the padding itself, so they stay in float."""
    constants = {init.name for init in graph.initializer}
    derived: set[str] = set()
    names = []
    for node in graph.node:
        inputs = [name for name in node.input if name]
        if node.op_type == "Constant":
            constants.update(node.output)
            continue
        if (
            node.op_type in ("Shape", "Size")
            or inputs
            and all(n in derived or n in constants for n in inputs)
            and any(n in derived for n in inputs)
        ):
            derived.update(node.output)
        else:
            continue
        if node.name:
            names.append(node.name)
    return names


QUANT_TYPES = ("quint8", "qint8")
CALIBRATION_METHODS = ("minmax", "entropy", "percentile")


def quantize_int8(
    model: bytes,
    calibration: np.ndarray,
    input_name: str = "images",
    *,
    per_channel: bool = True,
    reduce_range: bool | str = "auto",
    activation_type: str = "quint8",
    weight_type: str = "qint8",
    method: str = "minmax",
    op_types: Sequence[str] | None = None,
    exclude_nodes: Sequence[str] = (),
    quantize_prefixes: Sequence[str] | None = ("/backbone", "/head"),
    float_first_convs: int = 1,
    batch_size: int = 8,
    preprocess: bool = True,
) -> bytes:
    """Static int8 quantisation of ``model`` in QDQ format, calibrated on ``calibration`` [N, 3, H, W] (the
    dtype of the model's input).

    ``reduce_range="auto"``: 7-bit weights on CPUs without VNNI, where ONNX Runtime's u8 x s8 kernels (AVX2
    ``vpmaddubsw``) can saturate; full 8 bits on VNNI CPUs. ``quantize_prefixes``: only nodes whose name starts
    with one of them are quantised (the TorchScript exporter names nodes after module paths, so the default keeps
    input normalisation, the pseudo-Huber transform, upsampling and post-processing in float32); None: every node.
    ``float_first_convs``: keep the first convolutions in float (the first one works on the image itself, so the
    input is never rounded to 8 bits; a few MFLOP each).
    """
    import onnx
    from onnxruntime.quantization import (
        CalibrationDataReader,
        CalibrationMethod,
        QuantFormat,
        QuantType,
        quant_pre_process,
        quantize_static,
    )

    if activation_type not in QUANT_TYPES or weight_type not in QUANT_TYPES:
        raise ValueError(f"int8 types must be one of {QUANT_TYPES}, got {activation_type!r}/{weight_type!r}")
    if method not in CALIBRATION_METHODS:
        raise ValueError(f"calibration method {method!r}: expected one of {CALIBRATION_METHODS}")
    if calibration.ndim != 4 or len(calibration) == 0:
        raise ValueError(f"calibration images must be [N, 3, H, W] with N > 0, got shape {calibration.shape}")
    if reduce_range == "auto":
        reduce_range = not cpu_has_int8_dot_product()
    types = {"quint8": QuantType.QUInt8, "qint8": QuantType.QInt8}
    batches = [calibration[i : i + batch_size] for i in range(0, len(calibration), batch_size)]

    class Reader(CalibrationDataReader):
        def __init__(self) -> None:
            self._batches = iter(batches)

        def get_next(self):
            batch = next(self._batches, None)
            return None if batch is None else {input_name: np.ascontiguousarray(batch)}

    with tempfile.TemporaryDirectory(prefix="mtfcdd-int8-") as tmp, _quiet_root_logger():
        source, prepared, target = Path(tmp, "fp32.onnx"), Path(tmp, "prepared.onnx"), Path(tmp, "int8.onnx")
        source.write_bytes(model)
        if preprocess:
            quant_pre_process(str(source), str(prepared), skip_symbolic_shape=False)
        else:
            prepared = source
        graph = onnx.load(str(prepared), load_external_data=False).graph
        exclude = list(exclude_nodes) + shape_arithmetic_nodes(graph)
        exclude += [node.name for node in graph.node if node.op_type == "Conv"][:float_first_convs]
        if quantize_prefixes:
            exclude += [n.name for n in graph.node if n.name and not n.name.startswith(tuple(quantize_prefixes))]
        quantize_static(
            str(prepared),
            str(target),
            Reader(),
            quant_format=QuantFormat.QDQ,
            op_types_to_quantize=list(op_types) if op_types else None,
            nodes_to_exclude=exclude or None,
            per_channel=per_channel,
            reduce_range=bool(reduce_range),
            activation_type=types[activation_type],
            weight_type=types[weight_type],
            calibrate_method={
                "minmax": CalibrationMethod.MinMax,
                "entropy": CalibrationMethod.Entropy,
                "percentile": CalibrationMethod.Percentile,
            }[method],
        )
        return target.read_bytes()
