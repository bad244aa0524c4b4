"""Inference engines that run the ``InferencePipeline`` (eager, fast PyTorch, ONNX
Runtime fp32/int8), int8 calibration images and deviation checks.

``build_engine(pipeline, cfg.inference, calibration)`` returns a callable ``raw images -> PipelineOutput`` (see
``mtfcdd.inference.engines``); ``conf/inference/<engine>.yaml`` holds each engine's settings;
``int8_calibration_images(cfg.inference, ...)`` gives any engine its calibration images (None where it needs none).
"""

from mtfcdd.inference.calibration import int8_calibration_images
from mtfcdd.inference.cpu import cpu_supports_bf16
from mtfcdd.inference.engines import ENGINES, EagerEngine, Engine, FastTorchEngine, OnnxRuntimeEngine, build_engine
from mtfcdd.inference.fidelity import median_thresholds, output_deviation
from mtfcdd.inference.folding import fold_batchnorm
from mtfcdd.inference.int8_images import load_images

__all__ = [
    "ENGINES",
    "EagerEngine",
    "Engine",
    "FastTorchEngine",
    "OnnxRuntimeEngine",
    "build_engine",
    "cpu_supports_bf16",
    "fold_batchnorm",
    "int8_calibration_images",
    "load_images",
    "median_thresholds",
    "output_deviation",
]
