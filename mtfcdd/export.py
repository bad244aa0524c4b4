"""Export a trained checkpoint's inference pipeline as a self-contained ONNX model.

``python -m mtfcdd.export ckpt_path=PATH [format=onnx|onnx_int8] [output=FILE] [input_format=uint8|float01]``

The graph is ``InferencePipeline`` itself: RGB images [B, 3, H, W] (uint8 0..255 or
float in [0, 1]; the trained input size, any batch) in; the fields of
``PipelineOutput`` out, by name (the output contract). ``metadata_props`` hold, as
JSON: type names and colours (RGB 0-255, the run vocabulary's), input size/format/layout, mean/std,
heat_min/heat_max, image thresholds (null where none was calibrated), the any-defect scales and threshold, the
image score, the type rule, the backbone, the mode, the outputs. The file is written atomically and only after its
outputs matched PyTorch's (``verify``).
"""

from __future__ import annotations

import importlib.metadata
import json
import logging
import math
from pathlib import Path
from typing import Any

import numpy as np
import torch
from omegaconf import DictConfig, OmegaConf

from mtfcdd.core.atomic_io import write_bytes_atomic
from mtfcdd.core.checksum import sha256_file
from mtfcdd.core.config import ConfigError, check_choice
from mtfcdd.core.errors import UserError
from mtfcdd.inference.calibration import int8_calibration_images
from mtfcdd.inference.onnx_pipeline import (
    INPUT_FORMATS,
    OUTPUT_NAMES,
    Int8Options,
    example_images,
    pipeline_to_onnx,
    quantize_pipeline,
    run_session,
)
from mtfcdd.inference.onnx_runtime import make_session
from mtfcdd.metrics.tables import model_title
from mtfcdd.model.outputs import output_descriptions
from mtfcdd.model.pipeline import InferencePipeline
from mtfcdd.model.registry import model_titles
from mtfcdd.run.lifecycle import entry_point

log = logging.getLogger(__name__)

FORMATS = ("onnx", "onnx_int8")


class ExportError(UserError, RuntimeError):
    """The exported model does not reproduce the PyTorch pipeline, or the export cannot be written."""


def _floats(tensor: torch.Tensor) -> list[float | None]:
    """JSON-safe floats (inf/nan -> null)."""
    return [value if math.isfinite(value) else None for value in tensor.detach().float().flatten().tolist()]


def export_metadata(
    pipeline: InferencePipeline,
    cfg: DictConfig,
    input_format: str,
    size: tuple[int, int],
    precision: str,
    checkpoint: Path | None,
) -> dict[str, str]:
    """``metadata_props`` of the exported model: everything a user of the file needs, as JSON strings."""
    from mtfcdd.model.components.config import type_colours, type_names

    any_defect = pipeline.detector if pipeline.detector is not None else pipeline  # who answers "whether"
    values: dict[str, Any] = {
        "producer": f"mtfcdd {_version()}",
        "model": model_title(pipeline.model_name, model_titles()),
        "precision": precision,
        "type_names": type_names(cfg),
        "type_colours": [list(colour) for colour in type_colours(cfg)],
        "mode": cfg.mode,
        "backbone": cfg.model.backbone.name,
        "input_size": list(size),
        "input_format": input_format,
        "input_layout": "NCHW RGB",
        "input_range": [0, 255] if input_format == "uint8" else [0.0, 1.0],
        "mean": _floats(pipeline.pixel_mean),
        "std": _floats(pipeline.pixel_std),
        "heat_min": _floats(pipeline.heat_min),
        "heat_max": _floats(pipeline.heat_max),
        "image_threshold": _floats(pipeline.image_threshold),
        "anomaly_scale": _floats(pipeline.anomaly_scale) if pipeline.detector is None else None,
        "anomaly_threshold": _floats(any_defect.anomaly_threshold)[0],
        "image_score": pipeline.image_score,
        "type_rule": pipeline.type_rule,
        "upsample": pipeline.net.upsample,
        "outputs": output_descriptions(detector=pipeline.detector is not None),
    }
    if pipeline.detector is not None:
        values["detector"] = {
            "model": model_title(pipeline.detector.model_name, model_titles()),
            "backbone": pipeline.detector.net.backbone.name,
        }
    if checkpoint is not None:
        values["checkpoint"] = checkpoint.name
        values["checkpoint_sha256"] = sha256_file(checkpoint)
    return {key: value if isinstance(value, str) else json.dumps(value) for key, value in values.items()}


def _version() -> str:
    try:
        return importlib.metadata.version("mtfcdd")
    except importlib.metadata.PackageNotFoundError:
        return "unknown"


def _add_metadata(model: bytes, metadata: dict[str, str]) -> bytes:
    import onnx

    proto = onnx.load_from_string(model)
    del proto.metadata_props[:]
    for key, value in metadata.items():
        proto.metadata_props.add(key=key, value=value)
    proto.doc_string = "MultiTypeFCDD anomaly heatmaps, one channel per defect type (see metadata_props)"
    return proto.SerializeToString()


def verify_parity(model: bytes, pipeline: InferencePipeline, inputs: torch.Tensor) -> dict[str, float]:
    """Per output of ONNX Runtime vs the PyTorch pipeline: max abs and max relative (to the output's largest
    magnitude) error of float outputs, count of differing values of bool/int outputs."""
    got = run_session(make_session(model), inputs)
    with torch.no_grad():
        want = pipeline(inputs)
    errors: dict[str, float] = {}
    for name, ours, theirs in zip(OUTPUT_NAMES, got, want):
        ours, theirs = ours.numpy(), theirs.numpy()
        if not np.issubdtype(theirs.dtype, np.floating):
            errors[f"{name}_mismatches"] = float((ours != theirs).sum())
            continue
        diff = float(np.abs(ours - theirs).max())
        errors[f"{name}_max_abs"] = diff
        errors[f"{name}_max_rel"] = diff / max(float(np.abs(theirs).max()), 1e-30)
    return errors


def build_onnx(
    pipeline: InferencePipeline,
    cfg: DictConfig,
    fmt: str = "onnx",
    input_format: str = "uint8",
    size: tuple[int, int] | None = None,
    opset: int = 17,
    dynamo: bool = False,
    calibration: torch.Tensor | None = None,
    int8_options: Int8Options | None = None,
    checkpoint: Path | None = None,
) -> bytes:
    """The serialised ONNX model of ``pipeline`` with its metadata.

    ``calibration`` (``onnx_int8`` only): raw images [N, 3, H, W] in the export's ``input_format``.
    """
    check_formats(fmt, input_format)
    size = size or (int(cfg.data.image_size),) * 2
    model = pipeline_to_onnx(pipeline.cpu().eval(), input_format, size, opset=opset, dynamo=dynamo)
    if fmt == "onnx_int8":
        if calibration is None:
            raise ConfigError("format=onnx_int8 needs calibration images")
        model = quantize_pipeline(model, calibration, int8_options or Int8Options())
    metadata = export_metadata(pipeline, cfg, input_format, size, "int8" if fmt == "onnx_int8" else "fp32", checkpoint)
    return _add_metadata(model, metadata)


def check_formats(fmt: str, input_format: str) -> None:
    """Reject a ``format`` or ``input_format`` outside its choices (``ConfigError``)."""
    check_choice("format", fmt, FORMATS)
    check_choice("input_format", input_format, INPUT_FORMATS)


def default_output(ckpt_path: Path, fmt: str) -> Path:
    """The checkpoint's path with ``.onnx`` (``.int8.onnx`` for ``onnx_int8``) in place of its suffix."""
    return ckpt_path.with_suffix(".int8.onnx" if fmt == "onnx_int8" else ".onnx")


def export(cfg: DictConfig) -> Path:
    """Export ``cfg.ckpt_path`` per ``conf/export.yaml``; returns the written file."""
    from mtfcdd.model.checkpoint import load_pipeline

    ckpt_path = Path(cfg.ckpt_path)
    pipeline, trained = load_pipeline(ckpt_path, detector_ckpt=cfg.detector_ckpt)
    fmt, input_format = cfg.format, cfg.input_format
    size = (int(trained.data.image_size),) * 2
    calibration = None
    if fmt == "onnx_int8":
        images = torch.stack(int8_calibration_images(cfg.int8, size=size, int8_images=cfg.int8_images))
        calibration = (images * 255).round().to(torch.uint8) if input_format == "uint8" else images
    model = build_onnx(
        pipeline,
        trained,
        fmt,
        input_format,
        size,
        opset=cfg.opset,
        dynamo=cfg.dynamo,
        calibration=calibration,
        int8_options=Int8Options.from_settings(OmegaConf.to_container(cfg.int8, resolve=True)),
        checkpoint=ckpt_path,
    )
    if cfg.verify.enabled:
        inputs = example_images(cfg.verify.images, size, input_format, seed=cfg.seed)
        if calibration is not None:  # int8 is judged on real images, with its own tolerance
            inputs = calibration[: cfg.verify.images]
        errors = verify_parity(model, pipeline, inputs)
        rtol = cfg.verify.rtol if fmt == "onnx" else cfg.verify.rtol_int8
        worst = max(errors["heatmaps_max_rel"], errors["scores_max_rel"])
        log.info("parity vs PyTorch: %s", {k: f"{v:.3g}" for k, v in errors.items()})
        if not worst <= rtol:
            raise ExportError(
                f"the ONNX model differs from PyTorch (max relative error {worst:.3g} > {rtol}); nothing was written"
            )
    output = Path(cfg.output) if cfg.output else default_output(ckpt_path, fmt)
    write_bytes_atomic(output, model)
    print(f"wrote {output} ({len(model) / 1e6:.2f} MB, {fmt}, input {input_format} [B, 3, {size[0]}, {size[1]}])")
    return output


main = entry_point("export", checks=[lambda cfg: check_formats(cfg.format, cfg.input_format)])(export)


if __name__ == "__main__":
    main()
