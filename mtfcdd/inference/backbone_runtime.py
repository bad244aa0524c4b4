"""The frozen backbone run by ONNX Runtime or OpenVINO while fitting on a CPU (``callbacks.backbone_runtime``).

The backbone never trains, so its forward pass can run in an inference runtime: the same float32 features as torch
(about 2e-6 relative), computed much faster on a CPU. On the demo network (EfficientNet-Lite0 cut at stride 8, 32
images of 224x224, Intel Xeon @ 2.80GHz, AVX-512 VNNI, 2 threads), measured in one run: torch channels-last 1.07 s,
ONNX Runtime 0.40 s (2.7x), OpenVINO 0.33 s (3.2x); the backbone was 85 % of a training step. Checkpoints, test,
evaluate, predict and export still run the torch backbone.
"""

from __future__ import annotations

import copy
import importlib.util
import logging
from collections.abc import Callable

import torch
from torch import nn

from mtfcdd.core.config import ConfigError, check_choice
from mtfcdd.inference.onnx_runtime import export_onnx, make_openvino_request, make_session

log = logging.getLogger(__name__)

RUNTIME_KEY = "callbacks.backbone_runtime.runtime"

BACKBONE_RUNTIMES = ("auto", "torch", "onnxruntime", "openvino")
"""``callbacks.backbone_runtime.runtime`` values. ``auto``: ONNX Runtime on a CPU, torch on a GPU. ``openvino`` (the
``deploy`` extra) is faster still but not the default: in the test suite a process that had run an OpenVINO model
earlier crashed (SIGSEGV) when Lightning's SLURM requeue handler ran later."""


def openvino_available() -> bool:
    """Whether the optional OpenVINO runtime is installed."""
    return importlib.util.find_spec("openvino") is not None


def resolve_backbone_runtime(choice: str, device: torch.device) -> str:
    """The runtime ``choice`` stands for on ``device``: ``torch``, ``onnxruntime`` or ``openvino``."""
    check_choice(RUNTIME_KEY, choice, BACKBONE_RUNTIMES)
    if device.type != "cpu":
        if choice not in ("auto", "torch"):
            raise ConfigError(
                f"{RUNTIME_KEY}={choice!r} runs on the CPU only, but the model is on {device}; use auto or torch"
            )
        return "torch"
    if choice == "openvino" and not openvino_available():
        raise ConfigError(f"{RUNTIME_KEY}='openvino' needs OpenVINO: pip install 'mtfcdd[deploy]', or use onnxruntime")
    return "onnxruntime" if choice == "auto" else choice


class BackboneRuntime:
    """Callable: normalised images [B, 3, H, W] float32 on the CPU -> the backbone's features [B, C, h, w] float32
    in the images' memory format, from ``backbone`` exported to ONNX (one model per input size H x W, built at the
    first batch of that size, dynamic batch) and run by ``runtime`` (``onnxruntime`` or ``openvino``) on
    ``threads`` threads (None: torch's thread count). Not pickled or copied: a copy builds its own sessions."""

    def __init__(self, backbone: nn.Module, runtime: str, threads: int | None = None) -> None:
        check_choice(RUNTIME_KEY, runtime, ("onnxruntime", "openvino"))
        self.backbone = backbone
        self.runtime = runtime
        self.threads = threads
        self._runners: dict[tuple[int, int], Callable] = {}

    def __call__(self, images: torch.Tensor) -> torch.Tensor:
        size = (int(images.shape[-2]), int(images.shape[-1]))
        runner = self._runners.get(size)
        if runner is None:
            runner = self._runners[size] = self._build(size)
        features = torch.from_numpy(runner(images.detach().float().contiguous().numpy()))
        if images.is_contiguous(memory_format=torch.channels_last):
            return features.contiguous(memory_format=torch.channels_last)
        return features

    def _build(self, size: tuple[int, int]) -> Callable:
        threads = int(self.threads or torch.get_num_threads())
        example = torch.zeros(2, 3, *size)
        model = export_onnx(
            copy.deepcopy(self.backbone).float().cpu(),
            example,
            ["images"],
            ["features"],
            {"images": {0: "batch"}, "features": {0: "batch"}},
        )
        log.info("backbone runs in %s while fitting (%dx%d inputs, %d threads)", self.runtime, *size, threads)
        if self.runtime == "onnxruntime":
            session = make_session(model, threads)
            return lambda array: session.run(None, {"images": array})[0]
        compiled, request = make_openvino_request(model, threads)  # the runner keeps both alive
        return lambda array: request.infer({"images": array})[compiled.output(0)].copy()

    def __getstate__(self) -> dict:
        return {**self.__dict__, "_runners": {}}

    def __deepcopy__(self, memo: dict) -> BackboneRuntime:
        return BackboneRuntime(copy.deepcopy(self.backbone, memo), self.runtime, self.threads)
