"""Run the frozen backbone in ONNX Runtime or OpenVINO while fitting on a CPU (train and validation steps)."""

from __future__ import annotations

import lightning as L
import torch

from mtfcdd.inference.backbone_runtime import BackboneRuntime, resolve_backbone_runtime


class BackboneRuntimeSwitch(L.Callback):
    """Sets the network's ``feature_runtime`` at fit start and clears it at fit end (or on an error), so that the
    test stage, checkpoints, export and the inference engines keep the torch backbone.

    ``runtime``: ``auto`` (ONNX Runtime on a CPU, torch on a GPU), ``torch``, ``onnxruntime`` or ``openvino``.
    ``threads``: the runtime's threads (None: torch's). A network without a ``feature_runtime`` attribute
    (PatchCore) keeps torch.
    """

    def __init__(self, runtime: str = "auto", threads: int | None = None) -> None:
        resolve_backbone_runtime(runtime, torch.device("cpu"))  # a typo fails at construction
        self.runtime = runtime
        self.threads = threads

    def on_fit_start(self, trainer: L.Trainer, pl_module: L.LightningModule) -> None:
        net = getattr(pl_module, "net", None)
        runtime = resolve_backbone_runtime(self.runtime, pl_module.device)
        if runtime != "torch" and hasattr(net, "feature_runtime"):
            net.feature_runtime = BackboneRuntime(net.backbone, runtime, self.threads)

    def on_fit_end(self, trainer: L.Trainer, pl_module: L.LightningModule) -> None:
        _clear(pl_module)

    def on_exception(self, trainer: L.Trainer, pl_module: L.LightningModule, exception: BaseException) -> None:
        _clear(pl_module)


def _clear(pl_module: L.LightningModule) -> None:
    net = getattr(pl_module, "net", None)
    if getattr(net, "feature_runtime", None) is not None:
        net.feature_runtime = None
