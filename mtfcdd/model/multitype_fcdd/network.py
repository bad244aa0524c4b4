"""MultiTypeFCDD as a plain ``torch.nn.Module``: frozen backbone, FCDD head, pseudo-Huber maps, heatmaps.

``normalised images -> backbone -> head -> pseudo-Huber maps A -> bilinear upsampling to the input size``.
Input normalisation, calibration and decisions wrap it in ``mtfcdd.model.pipeline.InferencePipeline``, the one
module every path (training, validation, test, prediction, export) runs.
"""

from __future__ import annotations

from collections.abc import Callable
from typing import NamedTuple

import torch
import torch.nn.functional as F
from torch import nn

from mtfcdd.model.components.backbones import FrozenBackbone


def pseudo_huber(phi: torch.Tensor) -> torch.Tensor:
    """Eq. 1, ``sqrt(phi^2 + 1) - 1``, written as ``phi^2 / (sqrt(phi^2 + 1) + 1)`` to avoid cancellation."""
    square = phi.square()
    return square / (torch.sqrt(square + 1.0) + 1.0)


def map_scores(maps: torch.Tensor) -> torch.Tensor:
    """Eq. 2: image scores z_k = mean of A_k over the map, [B, M, h, w] -> [B, M] (what the loss is computed on)."""
    return maps.mean(dim=(2, 3))


class FCDDHead(nn.Module):
    """The paper's head: two (conv3x3 -> BN -> ReLU) blocks of ``width`` channels, then a 1x1 conv to M channels."""

    def __init__(self, in_channels: int, num_types: int, width: int = 512) -> None:
        super().__init__()
        self.block1 = _conv_bn_relu(in_channels, width)
        self.block2 = _conv_bn_relu(width, width)
        self.out = nn.Conv2d(width, num_types, kernel_size=1)

    def forward(self, features: torch.Tensor) -> torch.Tensor:
        return self.out(self.block2(self.block1(features)))


def _conv_bn_relu(in_channels: int, out_channels: int) -> nn.Sequential:
    return nn.Sequential(
        nn.Conv2d(in_channels, out_channels, kernel_size=3, padding=1, bias=False),
        nn.BatchNorm2d(out_channels),
        nn.ReLU(inplace=True),
    )


class FCDDOutput(NamedTuple):
    """Network outputs. ``maps``: A_k at feature resolution [B, M, h, w]; ``heatmaps``: A'_k bilinearly upsampled to
    the input size [B, M, H, W] (None when not asked for); ``scores``: Eq. 2 image scores z_k = mean of A_k [B, M]."""

    maps: torch.Tensor
    heatmaps: torch.Tensor | None
    scores: torch.Tensor


class MultiTypeFCDD(nn.Module):
    """Frozen backbone + trainable FCDD head with one pseudo-Huber heatmap channel per defect type.

    Input: images [B, 3, H, W] normalised as the backbone expects (the pipeline's ``normalise``).
    """

    model_name = "mtfcdd"
    """``model.name`` of this network's config (conf/model/mtfcdd.yaml)."""

    def __init__(
        self, backbone: FrozenBackbone, num_types: int = 8, head_width: int = 512, upsample: str = "bilinear"
    ) -> None:
        super().__init__()
        if upsample not in ("bilinear", "bicubic", "nearest"):
            raise ValueError(f"model.upsample={upsample!r}: expected 'bilinear', 'bicubic' or 'nearest'")
        self.backbone = backbone
        self.head = FCDDHead(backbone.out_channels, num_types, head_width)
        self.num_types = num_types
        self.upsample = upsample

    backbone_autocast: torch.dtype | None = None
    """Run the frozen backbone under ``torch.autocast`` with this dtype (``torch.bfloat16`` on CPUs with native bf16,
    ``torch.float16``/``torch.bfloat16`` on GPUs); the features come back as float32. None: full precision."""

    feature_runtime: Callable[[torch.Tensor], torch.Tensor] | None = None
    """Computes the backbone's features instead of torch while set: the ``backbone_runtime`` callback sets it for
    fitting on a CPU (``mtfcdd.inference.backbone_runtime.BackboneRuntime``, same float32 features)."""

    def features(self, images: torch.Tensor) -> torch.Tensor:
        """Backbone features [B, C, h, w], computed without an autograd graph (the backbone is frozen)."""
        with torch.no_grad():
            if self.feature_runtime is not None:
                return self.feature_runtime(images)
            if self.backbone_autocast is None:
                return self.backbone(images)
            with torch.autocast(device_type=images.device.type, dtype=self.backbone_autocast):
                return self.backbone(images).float()

    def forward(self, images: torch.Tensor, upsample: bool = True) -> FCDDOutput:
        maps = pseudo_huber(self.head(self.features(images)))
        scores = map_scores(maps)
        heatmaps = self.upsample_maps(maps, images.shape[-2:]) if upsample else None
        return FCDDOutput(maps, heatmaps, scores)

    def upsample_maps(self, maps: torch.Tensor, size: tuple[int, int] | torch.Size) -> torch.Tensor:
        """A_k [B, M, h, w] -> A'_k [B, M, H, W] by the configured interpolation."""
        align = False if self.upsample in ("bilinear", "bicubic") else None
        return F.interpolate(maps, size=tuple(size), mode=self.upsample, align_corners=align)

    def parameter_counts(self) -> dict[str, int]:
        """Parameters: total, trainable (head), frozen (backbone)."""
        total = sum(p.numel() for p in self.parameters())
        trainable = sum(p.numel() for p in self.parameters() if p.requires_grad)
        return {"total": total, "trainable": trainable, "frozen": total - trainable}
