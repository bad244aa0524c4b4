"""Inference engines: the same heatmaps as ``MultiTypeFCDD.forward`` from eager PyTorch, a fast PyTorch path and
ONNX Runtime (fp32 or static int8).

Every engine maps normalised images [B, 3, H, W] float32 to the upsampled heatmaps A'_k [B, M, H, W] float32,
equal to ``net(images).heatmaps`` up to the engine's precision. Pick one with :func:`build_engine` and a config of
the ``inference`` group (``conf/inference/*.yaml``).
"""

from __future__ import annotations

import contextlib
import copy
import logging
import warnings
from abc import ABC, abstractmethod
from collections.abc import Iterable, Mapping
from typing import Any

import numpy as np
import torch
from omegaconf import DictConfig, OmegaConf
from torch import nn

from mtfcdd.inference.folding import FoldingError, fold_batchnorm
from mtfcdd.inference.onnx_runtime import (
    cpu_has_int8_dot_product,
    export_onnx,
    make_session,
    physical_cores,
    quantize_int8,
)
from mtfcdd.model.network import MultiTypeFCDD, pseudo_huber

log = logging.getLogger(__name__)

ENGINES = ("eager", "fast", "onnx_fp32", "onnx_int8")
AUTOCAST_CHOICES = ("auto", "none", "bf16", "fp16")


class Engine(ABC):
    """Callable ``images [B, 3, H, W] (normalised float32) -> heatmaps A'_k [B, M, H, W] float32``.

    Inputs are moved to the engine's device; outputs stay there. ``maps`` gives the low-resolution A_k.
    """

    name: str = "engine"

    def __init__(self, net: MultiTypeFCDD, device: str | torch.device = "cpu") -> None:
        self.net = net
        self.device = torch.device(device)
        self.num_types = net.num_types

    @abstractmethod
    def maps(self, images: torch.Tensor) -> torch.Tensor:
        """Pseudo-Huber maps A_k [B, M, h, w] float32 at feature resolution."""

    def __call__(self, images: torch.Tensor) -> torch.Tensor:
        images = self._check(images)
        with torch.inference_mode():
            return self.net.upsample_maps(self.maps(images), images.shape[-2:])

    def _check(self, images: torch.Tensor) -> torch.Tensor:
        if images.dim() != 4 or images.shape[1] != 3:
            raise ValueError(f"{self.name} engine: expected images [B, 3, H, W], got {tuple(images.shape)}")
        return images.to(self.device, torch.float32)

    def describe(self) -> dict[str, Any]:
        """Name, precision and settings, for reports."""
        return {"engine": self.name, "device": str(self.device)}


class EagerEngine(Engine):
    """The network's own forward in float32, no changes: the reference every other engine is held against."""

    name = "eager"

    def __init__(self, net: MultiTypeFCDD, device: str | torch.device = "cpu") -> None:
        device = torch.device(device)
        if _device_of(net) != device:
            net = copy.deepcopy(net).to(device)
        super().__init__(net.eval(), device)

    def maps(self, images: torch.Tensor) -> torch.Tensor:
        with torch.inference_mode():
            return self.net(self._check(images), upsample=False).maps

    def __call__(self, images: torch.Tensor) -> torch.Tensor:
        with torch.inference_mode():
            return self.net(self._check(images)).heatmaps

    def describe(self) -> dict[str, Any]:
        return {**super().describe(), "precision": "fp32"}


def cpu_supports_bf16() -> bool:
    """Whether oneDNN runs bfloat16 natively on this CPU (AVX-512 BF16 or AMX); emulated bf16 is slower than fp32."""
    try:
        return bool(torch.backends.mkldnn.is_available() and torch.ops.mkldnn._is_mkldnn_bf16_supported())
    except (AttributeError, RuntimeError):
        return False


def resolve_autocast(choice: str, device: torch.device) -> torch.dtype | None:
    """``auto``: bf16 on CPUs with native bf16, fp16 on CUDA, none otherwise; or the named dtype; or None."""
    if choice not in AUTOCAST_CHOICES:
        raise ValueError(f"inference.autocast={choice!r}: expected one of {AUTOCAST_CHOICES}")
    if choice == "none":
        return None
    if choice == "bf16":
        return torch.bfloat16
    if choice == "fp16":
        return torch.float16
    if device.type == "cuda":
        return torch.float16
    return torch.bfloat16 if cpu_supports_bf16() else None


class FastTorchEngine(Engine):
    """PyTorch tuned for inference: BatchNorm folded into the convolutions, channels-last memory format, and
    reduced-precision autocast of the backbone and head where the hardware runs it natively.

    Works on a copy of the network; the pseudo-Huber transform and the upsampling run in float32.
    """

    name = "fast"

    def __init__(
        self,
        net: MultiTypeFCDD,
        device: str | torch.device = "cpu",
        channels_last: bool = True,
        fold_bn: bool = True,
        autocast: str = "auto",
        autocast_head: bool = True,
        jit: bool = False,
        threads: int | None = None,
        example_size: int = 64,
    ) -> None:
        device = torch.device(device)
        super().__init__(net, device)
        self.threads = threads
        self.channels_last = channels_last and device.type in ("cpu", "cuda")
        self.autocast = resolve_autocast(autocast, device)
        self.autocast_head = autocast_head
        backbone = copy.deepcopy(net.backbone).eval()
        head = copy.deepcopy(net.head).eval()
        self.folded = 0
        if fold_bn:
            example = torch.randn(2, 3, example_size, example_size, generator=torch.Generator().manual_seed(0))
            try:
                backbone, n_backbone = fold_batchnorm(backbone, example)
                with torch.no_grad():
                    features = backbone(example)
                head, n_head = fold_batchnorm(head, features)
                self.folded = n_backbone + n_head
            except FoldingError as err:  # keep the exact network rather than a wrong one
                log.warning("fast engine: BatchNorm folding skipped: %s", err)
        self.backbone = backbone.to(device)
        self.head = head.to(device)
        if self.channels_last:
            self.backbone = self.backbone.to(memory_format=torch.channels_last)
            self.head = self.head.to(memory_format=torch.channels_last)
        for module in (self.backbone, self.head):
            for parameter in module.parameters():
                parameter.requires_grad_(False)
        self.jit = None
        if jit and self.autocast is None:  # TorchScript freezing: conv + ReLU/add fusion by oneDNN; fp32 only
            example = torch.randn(1, 3, example_size, example_size, device=device)
            if self.channels_last:
                example = example.contiguous(memory_format=torch.channels_last)
            graph = nn.Sequential(self.backbone, self.head).eval()
            with torch.no_grad(), warnings.catch_warnings():
                warnings.simplefilter("ignore")
                self.jit = torch.jit.freeze(torch.jit.trace(graph, example))
        elif jit:
            log.warning("fast engine: jit=true is ignored under autocast")

    def _autocast(self, enabled: bool):
        if not enabled or self.autocast is None:
            return contextlib.nullcontext()
        return torch.autocast(self.device.type, dtype=self.autocast)

    def maps(self, images: torch.Tensor) -> torch.Tensor:
        images = self._check(images)
        if self.threads:
            torch.set_num_threads(int(self.threads))
        if self.channels_last:
            images = images.contiguous(memory_format=torch.channels_last)
        use_autocast = self.autocast is not None
        if self.jit is not None:
            with torch.no_grad():
                return pseudo_huber(self.jit(images).float()).contiguous()
        with torch.inference_mode():
            with self._autocast(use_autocast):
                features = self.backbone(images)
            with self._autocast(use_autocast and self.autocast_head):
                phi = self.head(features if self.autocast_head else features.float())
            return pseudo_huber(phi.float()).contiguous()

    def describe(self) -> dict[str, Any]:
        precision = {None: "fp32", torch.bfloat16: "bf16", torch.float16: "fp16"}[self.autocast]
        return {
            **super().describe(),
            "precision": precision if self.autocast_head or self.autocast is None else f"{precision} backbone",
            "channels_last": self.channels_last,
            "folded_batchnorms": self.folded,
            "jit": self.jit is not None,
        }


class _ComputeGraph(nn.Module):
    """Normalised images -> A_k (or A'_k when ``upsample``): what the ONNX engines run."""

    def __init__(self, net: MultiTypeFCDD, upsample: bool) -> None:
        super().__init__()
        self.backbone, self.head = net.backbone, net.head
        self.upsample = upsample
        self._upsample_maps = net.upsample_maps

    def forward(self, images: torch.Tensor) -> torch.Tensor:
        maps = pseudo_huber(self.head(self.backbone(images)))
        return self._upsample_maps(maps, images.shape[-2:]) if self.upsample else maps


class OnnxRuntimeEngine(Engine):
    """ONNX Runtime on the CPU, fp32 or static int8 (QDQ, per-channel weights, calibrated on real images).

    ``upsample``: ``torch`` runs the graph up to the low-resolution maps and upsamples in PyTorch; ``graph`` puts
    the bilinear resize inside the ONNX graph. The model bytes are kept in ``model_bytes``.
    """

    def __init__(
        self,
        net: MultiTypeFCDD,
        int8: bool = False,
        calibration: Iterable[torch.Tensor] | None = None,
        threads: int | None = None,
        optimization: str = "all",
        upsample: str = "torch",
        opset: int = 17,
        example_size: int = 64,
        calibration_images: int = 32,
        calibration_batch: int = 8,
        per_channel: bool = True,
        reduce_range: bool | str = "auto",
        activation_type: str = "quint8",
        weight_type: str = "qint8",
        calibration_method: str = "minmax",
        op_types: list[str] | None = None,
        exclude_nodes: list[str] | None = None,
        quantize_prefixes: list[str] | None = ("/backbone", "/head"),
        float_first_conv: bool = True,
    ) -> None:
        super().__init__(net, "cpu")
        if upsample not in ("torch", "graph"):
            raise ValueError(f"inference.upsample={upsample!r}: expected 'torch' or 'graph'")
        self.name = "onnx_int8" if int8 else "onnx_fp32"
        self.upsample_in_graph = upsample == "graph"
        self.threads = int(threads or physical_cores())
        self.settings: dict[str, Any] = {"threads": self.threads, "optimization": optimization, "upsample": upsample}
        graph = _ComputeGraph(copy.deepcopy(net).cpu().eval(), upsample=self.upsample_in_graph).eval()
        example = torch.randn(1, 3, example_size, example_size, generator=torch.Generator().manual_seed(0))
        output = "heatmaps" if self.upsample_in_graph else "maps"
        axes = {0: "batch", 2: "height", 3: "width"}
        model = export_onnx(graph, example, ["images"], [output], {"images": axes, output: axes}, opset=opset)
        if int8:
            images = collect_images(calibration, calibration_images)
            if reduce_range == "auto":
                reduce_range = not cpu_has_int8_dot_product()
            model = quantize_int8(
                model,
                images.numpy(),
                per_channel=per_channel,
                reduce_range=reduce_range,
                activation_type=activation_type,
                weight_type=weight_type,
                method=calibration_method,
                op_types=op_types,
                exclude_nodes=exclude_nodes or (),
                quantize_prefixes=quantize_prefixes,
                float_first_conv=float_first_conv,
                batch_size=calibration_batch,
            )
            self.settings.update(
                calibration_images=len(images), per_channel=per_channel, reduce_range=reduce_range,
                activation_type=activation_type, weight_type=weight_type, calibration_method=calibration_method,
                float_first_conv=float_first_conv,
            )
        self.model_bytes = model
        self.session = make_session(model, self.threads, optimization)

    def _run(self, images: torch.Tensor) -> torch.Tensor:
        array = np.ascontiguousarray(self._check(images).numpy())
        return torch.from_numpy(self.session.run(None, {"images": array})[0])

    def maps(self, images: torch.Tensor) -> torch.Tensor:
        out = self._run(images)
        if self.upsample_in_graph:
            raise RuntimeError("this engine's graph outputs upsampled heatmaps; build it with upsample='torch'")
        return out

    def __call__(self, images: torch.Tensor) -> torch.Tensor:
        if self.upsample_in_graph:
            return self._run(images)
        return super().__call__(images)

    def describe(self) -> dict[str, Any]:
        return {
            **super().describe(),
            "precision": "int8" if self.name == "onnx_int8" else "fp32",
            "onnx_bytes": len(self.model_bytes),
            **self.settings,
        }


def collect_images(images: Iterable[torch.Tensor] | None, limit: int) -> torch.Tensor:
    """Up to ``limit`` images [N, 3, H, W] float32 from an iterable of images [3, H, W] or batches [B, 3, H, W]."""
    if images is None:
        raise ValueError(
            "the int8 engine needs calibration images: pass real (training) images, normalised like the network's "
            "input, e.g. from mtfcdd.inference.calibration.load_images"
        )
    if isinstance(images, torch.Tensor):
        images = [images]
    chunks, count = [], 0
    for item in images:
        if isinstance(item, Mapping):  # a data-loader batch dict
            item = item["image"]
        item = torch.as_tensor(item).float()
        item = item.unsqueeze(0) if item.dim() == 3 else item
        if item.dim() != 4 or item.shape[1] != 3:
            raise ValueError(f"calibration images must be [3, H, W] or [B, 3, H, W], got {tuple(item.shape)}")
        chunks.append(item[: limit - count].cpu())
        count += len(chunks[-1])
        if count >= limit:
            break
    if not count:
        raise ValueError("the calibration iterable gave no images")
    return torch.cat(chunks)


def _device_of(net: nn.Module) -> torch.device:
    parameter = next(net.parameters(), None)
    return parameter.device if parameter is not None else torch.device("cpu")


def _as_dict(cfg: DictConfig | Mapping[str, Any] | None) -> dict[str, Any]:
    if cfg is None:
        return {}
    if isinstance(cfg, DictConfig):
        return OmegaConf.to_container(cfg, resolve=True)  # type: ignore[return-value]
    return dict(cfg)


def build_engine(
    net: MultiTypeFCDD,
    cfg_inference: DictConfig | Mapping[str, Any] | None = None,
    calibration: Iterable[torch.Tensor] | None = None,
) -> Engine:
    """The engine named by ``cfg_inference.engine`` (``eager`` when None) with the config's other keys as its
    settings (``conf/inference/<engine>.yaml``). ``calibration``: real images for ``onnx_int8`` (ignored by
    the others). ``net`` must be in eval mode with its final weights; engines that need it work on copies."""
    options = _as_dict(cfg_inference)
    engine = options.pop("engine", "eager")
    options.pop("_name", None)
    if engine not in ENGINES:
        raise ValueError(f"inference.engine={engine!r}: expected one of {ENGINES}")
    net = net.eval()
    if engine == "eager":
        return EagerEngine(net, **options)
    if engine == "fast":
        return FastTorchEngine(net, **options)
    return OnnxRuntimeEngine(net, int8=engine == "onnx_int8", calibration=calibration, **options)
