"""PatchCore as a plain ``torch.nn.Module`` with the interface ``InferencePipeline`` runs.

``normalised images -> frozen backbone stages (e.g. stride 8 and 16) -> coarser stages bilinearly upsampled to the
finest, concatenated, 3x3 local average -> patch features [B, D, h, w] -> Euclidean distance of each patch to its
nearest memory-bank row -> maps [B, 1, h, w]``; heatmaps = maps bilinearly upsampled to the input size, then a
Gaussian blur (sigma 4 px, as PatchCore).
"""

from __future__ import annotations

import math
from typing import NamedTuple

import torch
import torch.nn.functional as F
from torch import nn

from mtfcdd.model.components.backbones import FrozenBackbone

QUERY_CHUNK = 4096
"""Patches compared with the bank at once (bounds the distance matrix to QUERY_CHUNK x bank rows)."""


class PatchCoreOutput(NamedTuple):
    """``maps``: nearest-neighbour distances [B, 1, h, w] at feature resolution; ``heatmaps``: blurred at the input
    size [B, 1, H, W] (None when not asked for)."""

    maps: torch.Tensor
    heatmaps: torch.Tensor | None


def gaussian_kernel(sigma: float) -> torch.Tensor:
    """Normalised 1-D Gaussian [2 * ceil(4 sigma) + 1]."""
    radius = math.ceil(4.0 * sigma)
    offsets = torch.arange(-radius, radius + 1, dtype=torch.float32)
    kernel = torch.exp(-0.5 * (offsets / sigma) ** 2)
    return kernel / kernel.sum()


class PatchCoreNet(nn.Module):
    """Frozen multi-stage backbone + memory bank of normal patch features (a buffer [N, D], empty until fitted).

    Input: images [B, 3, H, W] normalised as the backbone expects. ``num_types`` is 1 (one any-defect channel).
    """

    num_types = 1
    model_name = "patchcore"
    """``model.name`` of this network's config (conf/model/patchcore.yaml)."""
    upsample = "bilinear"
    """How maps reach the input size (then the Gaussian blur), as ``MultiTypeFCDD``'s ``upsample`` says."""

    def __init__(self, backbone: FrozenBackbone, blur_sigma: float = 4.0) -> None:
        super().__init__()
        if len(backbone.stage_channels) < 1:
            raise ValueError("PatchCoreNet needs a backbone with at least one stage")
        self.backbone = backbone
        self.feature_dim = sum(backbone.stage_channels)
        self.blur_sigma = blur_sigma
        self.register_buffer("memory_bank", torch.empty(0, self.feature_dim))
        self.register_buffer("blur_kernel", gaussian_kernel(blur_sigma) if blur_sigma > 0 else torch.ones(1))

    @property
    def fitted(self) -> bool:
        """Whether the memory bank holds any rows."""
        return self.memory_bank.shape[0] > 0

    def patch_features(self, images: torch.Tensor) -> torch.Tensor:
        """Locally aware patch features [B, D, h, w] at the finest stage's resolution (no autograd graph)."""
        with torch.no_grad():
            stages = self.backbone.stages(images)
            size = stages[0].shape[-2:]
            upsampled = [stages[0]] + [
                F.interpolate(f, size=size, mode="bilinear", align_corners=False) for f in stages[1:]
            ]
            return F.avg_pool2d(torch.cat(upsampled, dim=1), kernel_size=3, stride=1, padding=1)

    def set_memory_bank(self, bank: torch.Tensor) -> None:
        """Replace the memory bank with ``bank`` [N, D] (N >= 1)."""
        if bank.dim() != 2 or bank.shape[1] != self.feature_dim or bank.shape[0] < 1:
            raise ValueError(f"memory bank: expected [N >= 1, {self.feature_dim}], got {tuple(bank.shape)}")
        self.memory_bank = bank.to(self.memory_bank.device, torch.float32).contiguous()

    def nearest_distance(self, features: torch.Tensor) -> torch.Tensor:
        """Euclidean distance of each row of ``features`` [P, D] to its nearest bank row -> [P]. Computed in chunks of
        QUERY_CHUNK rows; an ONNX export computes all rows at once (a traced chunk count would not follow the batch)."""
        bank = self.memory_bank
        bank_norms = bank.square().sum(dim=1)
        parts = []
        for chunk in [features] if torch.onnx.is_in_onnx_export() else features.split(QUERY_CHUNK):
            square = chunk.square().sum(dim=1, keepdim=True) - 2.0 * chunk @ bank.T + bank_norms
            parts.append(square.amin(dim=1).clamp_min(0.0).sqrt())
        return torch.cat(parts)

    def forward(self, images: torch.Tensor, upsample: bool = True) -> PatchCoreOutput:
        if not self.fitted:
            raise RuntimeError(
                "PatchCoreNet: the memory bank is empty; fit it (python -m mtfcdd.train model=patchcore)"
            )
        features = self.patch_features(images)
        b, d, h, w = features.shape
        flat = features.permute(0, 2, 3, 1).reshape(-1, d).float()
        maps = self.nearest_distance(flat).view(b, 1, h, w)
        return PatchCoreOutput(maps, self.upsample_maps(maps, images.shape[-2:]) if upsample else None)

    def upsample_maps(self, maps: torch.Tensor, size: tuple[int, int] | torch.Size) -> torch.Tensor:
        """Maps [B, 1, h, w] -> heatmaps [B, 1, H, W]: bilinear to ``size``, then the Gaussian blur (reflect
        padding)."""
        heatmaps = F.interpolate(maps, size=tuple(size), mode="bilinear", align_corners=False)
        if self.blur_kernel.numel() == 1:
            return heatmaps
        radius = self.blur_kernel.numel() // 2
        kernel = self.blur_kernel.to(heatmaps.dtype)
        # one channel (num_types): fixed kernel shapes, so that the blur exports to ONNX
        heatmaps = F.conv2d(F.pad(heatmaps, (radius, radius, 0, 0), mode="reflect"), kernel.view(1, 1, 1, -1))
        return F.conv2d(F.pad(heatmaps, (0, 0, radius, radius), mode="reflect"), kernel.view(1, 1, -1, 1))

    def _load_from_state_dict(
        self, state_dict, prefix, local_metadata, strict, missing_keys, unexpected_keys, error_msgs
    ):
        """Resize the memory bank to the stored one (its row count is only known after fitting), then load."""
        stored = state_dict.get(prefix + "memory_bank")
        if stored is not None and stored.dim() == 2 and stored.shape[1] == self.feature_dim:
            self.memory_bank = torch.empty_like(stored, dtype=torch.float32, device=self.memory_bank.device)
        super()._load_from_state_dict(
            state_dict, prefix, local_metadata, strict, missing_keys, unexpected_keys, error_msgs
        )

    def parameter_counts(self) -> dict[str, int]:
        """Parameters: total, trainable (none), frozen (backbone); the memory bank is a buffer, not counted."""
        total = sum(p.numel() for p in self.parameters())
        return {"total": total, "trainable": 0, "frozen": total}
