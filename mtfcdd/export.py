"""Export a trained checkpoint as a self-contained ONNX model.

``python -m mtfcdd.export ckpt_path=PATH [format=onnx|onnx_int8] [output=FILE] [input_format=uint8|float01]``

The graph takes RGB images [B, 3, H, W] at the trained input size (uint8 0..255, or float in [0, 1]), normalises
them with the network's ``pixel_mean``/``pixel_std`` inside the graph, and returns

- ``heatmaps`` [B, M, H, W]: A'_k, the pseudo-Huber maps bilinearly upsampled to the input size;
- ``calibrated_heatmaps`` [B, M, H, W]: A'_k mapped to [0, 1] per type with ``heat_min``/``heat_max``;
- ``scores`` [B, M]: image scores, the maximum of each heatmap;
- ``anomalous`` [B, M] bool: ``scores >= image_threshold`` per type.

``metadata_props`` hold, as JSON: type names, input size/format/layout, mean/std, heat_min/heat_max, image
thresholds (null where none was calibrated), the backbone, the mode, the outputs. The file is written atomically
(temporary file, then rename) and only after its outputs matched PyTorch's on random inputs (``verify``).
"""

from __future__ import annotations

import hashlib
import importlib.metadata
import json
import logging
import math
from pathlib import Path
from typing import Any

import hydra
import numpy as np
import torch
from omegaconf import DictConfig, OmegaConf
from torch import nn

from mtfcdd.atomic_io import write_bytes_atomic
from mtfcdd.config import ConfigError, config_dir
from mtfcdd.errors import UserError, exit_on_user_error
from mtfcdd.inference.calibration import load_images
from mtfcdd.inference.onnx_runtime import export_onnx, make_session, quantize_int8
from mtfcdd.model.network import MultiTypeFCDD, pseudo_huber

log = logging.getLogger(__name__)

FORMATS = ("onnx", "onnx_int8")
INPUT_FORMATS = ("uint8", "float01")
OUTPUT_NAMES = ("heatmaps", "calibrated_heatmaps", "scores", "anomalous")


class ExportError(UserError, RuntimeError):
    """The exported model does not reproduce the PyTorch network, or the export cannot be written."""


class ExportedMultiTypeFCDD(nn.Module):
    """Raw RGB images -> (heatmaps, calibrated heatmaps, image scores, per-type decisions): the whole pipeline."""

    def __init__(self, net: MultiTypeFCDD, input_format: str = "uint8") -> None:
        super().__init__()
        if input_format not in INPUT_FORMATS:
            raise ConfigError(f"input_format={input_format!r}: expected one of {INPUT_FORMATS}")
        self.backbone, self.head = net.backbone, net.head
        self.input_format = input_format
        self.upsample = net.upsample
        scale = 255.0 if input_format == "uint8" else 1.0
        # (x / scale - mean) / std == x * a + b: one multiply-add for the whole input normalisation
        self.register_buffer("input_scale", 1.0 / (scale * net.pixel_std.detach().float().clone()))
        self.register_buffer("input_shift", -(net.pixel_mean / net.pixel_std).detach().float().clone())
        self.register_buffer("heat_min", net.heat_min.detach().float().view(1, -1, 1, 1).clone())
        self.register_buffer(
            "heat_span", (net.heat_max - net.heat_min).detach().float().clamp_min(1e-12).view(1, -1, 1, 1).clone()
        )
        self.register_buffer("image_threshold", net.image_threshold.detach().float().view(1, -1).clone())

    def forward(self, images: torch.Tensor) -> tuple[torch.Tensor, ...]:
        x = images.float() * self.input_scale + self.input_shift
        maps = pseudo_huber(self.head(self.backbone(x)))
        align = False if self.upsample in ("bilinear", "bicubic") else None
        heatmaps = nn.functional.interpolate(maps, size=x.shape[-2:], mode=self.upsample, align_corners=align)
        calibrated = ((heatmaps - self.heat_min) / self.heat_span).clamp(0.0, 1.0)
        scores = heatmaps.flatten(2).amax(dim=2)
        return heatmaps, calibrated, scores, scores >= self.image_threshold


def _floats(tensor: torch.Tensor) -> list[float | None]:
    """JSON-safe floats (inf/nan -> null)."""
    return [value if math.isfinite(value) else None for value in tensor.detach().float().flatten().tolist()]


def export_metadata(net: MultiTypeFCDD, cfg: DictConfig, input_format: str, size: tuple[int, int],
                    precision: str, checkpoint: Path | None) -> dict[str, str]:
    """``metadata_props`` of the exported model: everything a user of the file needs, as JSON strings."""
    from mtfcdd.model.build import type_names

    values: dict[str, Any] = {
        "producer": f"mtfcdd {_version()}",
        "model": "MultiTypeFCDD",
        "precision": precision,
        "type_names": type_names(cfg),
        "mode": cfg.mode,
        "backbone": cfg.model.backbone.name,
        "input_size": list(size),
        "input_format": input_format,
        "input_layout": "NCHW RGB",
        "input_range": [0, 255] if input_format == "uint8" else [0.0, 1.0],
        "mean": _floats(net.pixel_mean),
        "std": _floats(net.pixel_std),
        "heat_min": _floats(net.heat_min),
        "heat_max": _floats(net.heat_max),
        "image_threshold": _floats(net.image_threshold),
        "image_score": "max",
        "upsample": net.upsample,
        "outputs": {
            "heatmaps": "A'_k [B, M, H, W], pseudo-Huber maps upsampled to the input size",
            "calibrated_heatmaps": "A'_k normalised per type with heat_min/heat_max, clamped to [0, 1]",
            "scores": "[B, M] image score per type: max of the heatmap",
            "anomalous": "[B, M] scores >= image_threshold (all false where no threshold was calibrated)",
        },
    }
    if checkpoint is not None:
        values["checkpoint"] = checkpoint.name
        values["checkpoint_sha256"] = _sha256(checkpoint)
    return {key: value if isinstance(value, str) else json.dumps(value) for key, value in values.items()}


def _version() -> str:
    try:
        return importlib.metadata.version("mtfcdd")
    except importlib.metadata.PackageNotFoundError:
        return "unknown"


def _sha256(path: Path) -> str:
    digest = hashlib.sha256()
    with path.open("rb") as handle:
        for block in iter(lambda: handle.read(1 << 20), b""):
            digest.update(block)
    return digest.hexdigest()


def _add_metadata(model: bytes, metadata: dict[str, str]) -> bytes:
    import onnx

    proto = onnx.load_from_string(model)
    del proto.metadata_props[:]
    for key, value in metadata.items():
        proto.metadata_props.add(key=key, value=value)
    proto.doc_string = "MultiTypeFCDD anomaly heatmaps, one channel per defect type (see metadata_props)"
    return proto.SerializeToString()


def _random_inputs(count: int, size: tuple[int, int], input_format: str, seed: int) -> torch.Tensor:
    generator = torch.Generator().manual_seed(seed)
    if input_format == "uint8":
        return torch.randint(0, 256, (count, 3, *size), generator=generator, dtype=torch.uint8)
    return torch.rand(count, 3, *size, generator=generator)


def verify_parity(model: bytes, wrapper: ExportedMultiTypeFCDD, inputs: torch.Tensor) -> dict[str, float]:
    """Max abs and max relative (to each output's max magnitude) error of ONNX Runtime vs PyTorch, per output."""
    session = make_session(model)
    onnx_outputs = session.run(None, {"images": inputs.numpy()})
    with torch.no_grad():
        torch_outputs = wrapper(inputs)
    errors: dict[str, float] = {}
    for name, got, want in zip(OUTPUT_NAMES, onnx_outputs, torch_outputs):
        want = want.numpy()
        if want.dtype == np.bool_:
            errors[f"{name}_mismatches"] = float((got != want).sum())
            continue
        diff = float(np.abs(got - want).max())
        errors[f"{name}_max_abs"] = diff
        errors[f"{name}_max_rel"] = diff / max(float(np.abs(want).max()), 1e-30)
    return errors


def build_onnx(
    net: MultiTypeFCDD,
    cfg: DictConfig,
    fmt: str = "onnx",
    input_format: str = "uint8",
    size: tuple[int, int] | None = None,
    opset: int = 17,
    dynamo: bool = False,
    calibration: torch.Tensor | None = None,
    int8_options: dict[str, Any] | None = None,
    checkpoint: Path | None = None,
) -> tuple[bytes, ExportedMultiTypeFCDD]:
    """The serialised ONNX model of ``net`` (and the PyTorch wrapper it was traced from).

    ``calibration`` (``onnx_int8`` only): raw images [N, 3, H, W] in the export's ``input_format``.
    """
    if fmt not in FORMATS:
        raise ConfigError(f"format={fmt!r}: expected one of {FORMATS}")
    size = size or (int(cfg.data.image_size),) * 2
    wrapper = ExportedMultiTypeFCDD(net.eval(), input_format).eval()
    example = _random_inputs(1, size, input_format, seed=0)  # uint8 traces the Cast to float into the graph
    batch = {0: "batch"}
    model = export_onnx(
        wrapper,
        example,
        ["images"],
        list(OUTPUT_NAMES),
        {"images": batch, **{name: batch for name in OUTPUT_NAMES}},
        opset=opset,
        dynamo=dynamo,
    )
    if fmt == "onnx_int8":
        if calibration is None:
            raise ConfigError("format=onnx_int8 needs calibration images")
        model = quantize_int8(model, calibration.numpy(), **(int8_options or {}))
    metadata = export_metadata(net, cfg, input_format, size, "int8" if fmt == "onnx_int8" else "fp32", checkpoint)
    return _add_metadata(model, metadata), wrapper


def default_output(ckpt_path: Path, fmt: str) -> Path:
    return ckpt_path.with_suffix(".int8.onnx" if fmt == "onnx_int8" else ".onnx")


def export(cfg: DictConfig) -> Path:
    """Export ``cfg.ckpt_path`` per ``conf/export.yaml``; returns the written file."""
    from mtfcdd.model.checkpoint import load_network

    ckpt_path = Path(cfg.ckpt_path)
    net, trained = load_network(ckpt_path)
    fmt, input_format = cfg.format, cfg.input_format
    size = (int(trained.data.image_size),) * 2
    calibration = None
    if fmt == "onnx_int8":
        images = load_images(
            cfg.calibration.images, size, mean=(0.0,) * 3, std=(1.0,) * 3, source=cfg.calibration.source,
            seed=cfg.calibration.seed, root=cfg.calibration.root,
        )  # raw [0, 1] images: the graph normalises
        calibration = (images * 255).round().to(torch.uint8) if input_format == "uint8" else images
    model, wrapper = build_onnx(
        net, trained, fmt, input_format, size, opset=cfg.opset, dynamo=cfg.dynamo, calibration=calibration,
        int8_options=OmegaConf.to_container(cfg.int8, resolve=True) if fmt == "onnx_int8" else None,
        checkpoint=ckpt_path,
    )
    if cfg.verify.enabled:
        inputs = _random_inputs(cfg.verify.images, size, input_format, seed=cfg.seed)
        if calibration is not None:  # int8 is judged on real images, with its own tolerance
            inputs = calibration[: cfg.verify.images]
        errors = verify_parity(model, wrapper, inputs)
        rtol = cfg.verify.rtol if fmt == "onnx" else cfg.verify.rtol_int8
        worst = max(errors["heatmaps_max_rel"], errors["scores_max_rel"])
        log.info("parity vs PyTorch: %s", {k: f"{v:.3g}" for k, v in errors.items()})
        if not worst <= rtol:
            raise ExportError(f"the ONNX model differs from PyTorch (max relative error {worst:.3g} > {rtol}); "
                              "nothing was written")
    output = Path(cfg.output) if cfg.output else default_output(ckpt_path, fmt)
    write_bytes_atomic(output, model)
    print(f"wrote {output} ({len(model) / 1e6:.2f} MB, {fmt}, input {input_format} [B, 3, {size[0]}, {size[1]}])")
    return output


@hydra.main(version_base="1.3", config_path=config_dir(), config_name="export")
def main(cfg: DictConfig) -> None:
    with exit_on_user_error():
        export(cfg)


if __name__ == "__main__":
    main()
