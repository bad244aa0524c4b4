"""Inference engines (eager, fast PyTorch, ONNX Runtime fp32/int8), calibration images and deviation checks.

``build_engine(net, cfg.inference, calibration)`` returns a callable ``images -> heatmaps`` (see
:mod:`mtfcdd.inference.engines`); ``conf/inference/<engine>.yaml`` holds each engine's settings.
"""

from mtfcdd.inference.calibration import load_images
from mtfcdd.inference.deviation import decision_thresholds, heatmap_deviation, image_scores
from mtfcdd.inference.engines import (
    ENGINES,
    EagerEngine,
    Engine,
    FastTorchEngine,
    OnnxRuntimeEngine,
    build_engine,
    cpu_supports_bf16,
)
from mtfcdd.inference.folding import fold_batchnorm

__all__ = [
    "ENGINES",
    "EagerEngine",
    "Engine",
    "FastTorchEngine",
    "OnnxRuntimeEngine",
    "build_engine",
    "cpu_supports_bf16",
    "decision_thresholds",
    "fold_batchnorm",
    "heatmap_deviation",
    "image_scores",
    "load_images",
]
