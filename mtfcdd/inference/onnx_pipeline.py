"""The inference pipeline as an ONNX graph (what ``mtfcdd.export`` writes and the ONNX Runtime engines run).

Input ``images``: RGB [B, 3, H, W], uint8 0..255 or float in [0, 1] (``input_format``); batch, height and width are
dynamic. Outputs: the fields of ``PipelineOutput``, in order and by name, each dimension
but M dynamic (named by ``mtfcdd.model.outputs.DIMS``).
"""

from __future__ import annotations

from collections.abc import Mapping
from dataclasses import dataclass, fields
from typing import Any

import numpy as np
import torch
from torch import nn

from mtfcdd.inference.cpu import cpu_has_int8_dot_product
from mtfcdd.inference.onnx_runtime import export_onnx, quantize_int8
from mtfcdd.model.outputs import DIMS, OUTPUT_NAMES, OUTPUTS, PipelineOutput
from mtfcdd.model.pipeline import InferencePipeline

INPUT_FORMATS = ("uint8", "float01")
BACKBONE_PREFIX, HEAD_PREFIX = "/pipeline/net/backbone", "/pipeline/net/head"
"""Graph nodes that int8 quantisation may touch: the backbone's and (unless ``float_head``) the head's;
normalisation, pseudo-Huber, upsampling, calibration and decisions stay in float32."""


class _TupleOutputs(nn.Module):
    """The pipeline with its named outputs as a plain tuple (what the exporter traces)."""

    def __init__(self, pipeline: InferencePipeline) -> None:
        super().__init__()
        self.pipeline = pipeline

    def forward(self, images: torch.Tensor) -> tuple[torch.Tensor, ...]:
        return tuple(self.pipeline(images))


def example_images(count: int, size: tuple[int, int], input_format: str, seed: int = 0) -> torch.Tensor:
    """Random raw images [count, 3, H, W] in ``input_format``."""
    if input_format not in INPUT_FORMATS:
        raise ValueError(f"input_format={input_format!r}: expected one of {INPUT_FORMATS}")
    generator = torch.Generator().manual_seed(seed)
    if input_format == "uint8":
        return torch.randint(0, 256, (count, 3, *size), generator=generator, dtype=torch.uint8)
    return torch.rand(count, 3, *size, generator=generator)


def pipeline_to_onnx(
    pipeline: InferencePipeline,
    input_format: str = "float01",
    size: tuple[int, int] = (64, 64),
    opset: int = 17,
    dynamo: bool = False,
) -> bytes:
    """The serialised ONNX model of ``pipeline`` (eval mode, CPU copy) traced on a ``size`` example."""
    graph = _TupleOutputs(pipeline).eval()
    example = example_images(1, size, input_format)  # a uint8 example traces the cast to float into the graph
    axes = {"images": {0: DIMS["B"], 2: DIMS["H"], 3: DIMS["W"]}}
    for name, spec in OUTPUTS.items():
        axes[name] = {i: DIMS[symbol] for i, symbol in enumerate(spec.dims) if symbol != "M"}
    return export_onnx(graph, example, ["images"], list(OUTPUT_NAMES), axes, opset, dynamo)


def run_session(session, images: torch.Tensor) -> PipelineOutput:
    """The outputs of an ONNX Runtime ``session`` of ``pipeline_to_onnx`` for ``images`` (CPU tensors)."""
    array = np.ascontiguousarray(images.detach().cpu().numpy())
    return PipelineOutput(*(torch.from_numpy(part) for part in session.run(list(OUTPUT_NAMES), {"images": array})))


@dataclass(frozen=True)
class Int8Options:
    """Static int8 quantisation settings (the ``inference/onnx_int8`` config group, used by the engine and export).

    calibration_images, calibration_batch: how many raw training images calibrate, fed in batches of this size.
    per_channel: per output channel weight scales. reduce_range: 7-bit weights; ``auto`` = on CPUs without VNNI
    (AVX2 u8 x s8 products can saturate). activation_type, weight_type: ``quint8`` | ``qint8``.
    calibration_method: ``minmax`` | ``entropy`` | ``percentile``. float_first_convs: how many leading convolutions stay
    in float (1: the one on the image, never rounding the input to 8 bits; 2 also keeps EfficientNet-Lite's first
    depthwise convolution, which alone triples the demo network's int8 error). float_head: keep the head (whose
    output is the heatmap) in float. op_types, exclude_nodes: restrict quantisation further (None: every
    backbone/head node).
    """

    calibration_images: int = 128
    calibration_batch: int = 8
    per_channel: bool = True
    reduce_range: bool | str = "auto"
    activation_type: str = "quint8"
    weight_type: str = "qint8"
    calibration_method: str = "minmax"
    float_first_convs: int = 2
    float_head: bool = False
    op_types: tuple[str, ...] | None = None
    exclude_nodes: tuple[str, ...] = ()

    @classmethod
    def from_settings(cls, settings: Mapping[str, Any]) -> Int8Options:
        """The options among ``settings`` (an engine config also holds engine keys, which are left out)."""
        names = {field.name for field in fields(cls)}
        return cls(**{key: value for key, value in settings.items() if key in names})

    def describe(self) -> dict[str, Any]:
        return {field.name: getattr(self, field.name) for field in fields(self)}


def quantize_pipeline(model: bytes, calibration: torch.Tensor, options: Int8Options) -> bytes:
    """Static int8 (QDQ) of the backbone and head nodes of a ``pipeline_to_onnx`` model, calibrated on the first
    ``options.calibration_images`` of ``calibration`` [N, 3, H, W] (the model's input format)."""
    reduce_range = not cpu_has_int8_dot_product() if options.reduce_range == "auto" else bool(options.reduce_range)
    return quantize_int8(
        model,
        calibration[: options.calibration_images].numpy(),
        per_channel=options.per_channel,
        reduce_range=reduce_range,
        activation_type=options.activation_type,
        weight_type=options.weight_type,
        method=options.calibration_method,
        op_types=options.op_types,
        exclude_nodes=options.exclude_nodes,
        quantize_prefixes=(BACKBONE_PREFIX,) if options.float_head else (BACKBONE_PREFIX, HEAD_PREFIX),
        float_first_convs=options.float_first_convs,
        batch_size=options.calibration_batch,
    )
