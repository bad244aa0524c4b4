"""What the benchmark measures: the network (a checkpoint's, or untrained weights whose BatchNorm statistics are
measured on real images so that heatmaps depend on the image) and the machine it runs on."""

from __future__ import annotations

import logging
import os
from pathlib import Path
from typing import Any

import torch
from omegaconf import DictConfig, open_dict

from mtfcdd.inference.cpu import (
    cpu_has_int8_dot_product,
    cpu_name,
    cpu_supports_bf16,
    hidden_instruction_sets,
    instruction_sets,
    isa_level,
    physical_cores,
)
from mtfcdd.model.pipeline import InferencePipeline

log = logging.getLogger(__name__)


def build_benchmark_pipeline(cfg: DictConfig) -> tuple[InferencePipeline, DictConfig, dict[str, Any]]:
    """(pipeline in eval mode, its config, notes): from ``ckpt_path`` or from ``cfg.model``."""
    from mtfcdd.model.build import build_pipeline
    from mtfcdd.model.components.backbones import BackboneWeightsError

    if cfg.ckpt_path:
        from mtfcdd.model.checkpoint import load_pipeline

        pipeline, trained = load_pipeline(cfg.ckpt_path)
        return (
            pipeline,
            trained,
            {"weights": f"checkpoint {Path(cfg.ckpt_path).name}", "trained": True, "pretrained_backbone": True},
        )
    pretrained = bool(cfg.model.backbone.pretrained)
    note = "untrained head"
    try:
        pipeline = build_pipeline(cfg)
    except Exception as err:  # hydra wraps the backbone's error in an InstantiationException
        cause = _cause_of_type(err, BackboneWeightsError)
        if cause is None:
            raise
        log.warning("benchmark: %s -- timing with random backbone weights instead", cause)
        with open_dict(cfg):
            cfg.model.backbone.pretrained = False
        pipeline = build_pipeline(cfg)
        pretrained = False
    note += ", pretrained backbone" if pretrained else ", random backbone (no offline weights)"
    return pipeline.eval(), cfg, {"weights": note, "trained": False, "pretrained_backbone": pretrained}


def _cause_of_type(err: BaseException | None, kind: type) -> BaseException | None:
    seen = set()
    while err is not None and id(err) not in seen:
        if isinstance(err, kind):
            return err
        seen.add(id(err))
        err = err.__cause__ or err.__context__
    return None


@torch.no_grad()
def recalibrate_batchnorm(
    net: torch.nn.Module, images: torch.Tensor, batch_size: int = 8, backbone: bool = True, head: bool = True
) -> int:
    """Replace the BatchNorm running statistics of an untrained network with those of ``images``, in place.

    A network with random weights and the initial statistics (mean 0, variance 1) gives nearly the same heatmap for
    every image (scores differ by ~0.3 %), so no comparison of decisions means anything on it. With statistics
    measured on real images every layer is standardised as in a trained network and scores spread (~30 %): a fair
    stand-in for trained weights when timing engines and measuring their deviations. The backbone is recalibrated
    first, then the head on the recalibrated features. Returns how many BatchNorm layers were reset.
    """
    parts = [part for part, wanted in ((net.backbone, backbone), (net.head, head)) if wanted]
    count = 0
    for part in parts:
        layers = [m for m in part.modules() if isinstance(m, torch.nn.modules.batchnorm._BatchNorm)]
        saved = [(m.momentum, m.training) for m in layers]
        for layer in layers:
            layer.reset_running_stats()
            layer.momentum = None  # cumulative average over all batches
            torch.nn.Module.train(layer, True)
        try:
            for start in range(0, len(images), batch_size):
                batch = images[start : start + batch_size]
                features = net.backbone(batch)
                if part is net.head:
                    net.head(features)
        finally:
            for layer, (momentum, training) in zip(layers, saved):
                layer.momentum = momentum
                torch.nn.Module.train(layer, training)
        count += len(layers)
    return count


def _version(package: str) -> str | None:
    from importlib.metadata import PackageNotFoundError, version

    try:
        return version(package)
    except PackageNotFoundError:
        return None


def machine_info() -> dict[str, Any]:
    """The machine the benchmark runs on: CPU, cores and threads, instruction sets, load average (1 min), GPU and the
    versions of torch, onnxruntime and openvino (None when not installed)."""
    import onnxruntime

    info = {
        "cpu": cpu_name(),
        "physical_cores": physical_cores(),
        "torch_threads": torch.get_num_threads(),
        "cpu_capability": torch.backends.cpu.get_cpu_capability(),
        "native_bf16": cpu_supports_bf16(),
        "int8_vnni": cpu_has_int8_dot_product(),
        "instruction_sets": instruction_sets(),
        "hidden_instruction_sets": hidden_instruction_sets(),
        "isa_level": isa_level(),
        "load_average_1min_start": os.getloadavg()[0],
        "torch": torch.__version__,
        "onnxruntime": onnxruntime.__version__,
        "openvino": _version("openvino"),
        "gpu": torch.cuda.get_device_name(0) if torch.cuda.is_available() else None,
    }
    return info
