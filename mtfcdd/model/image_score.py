"""The pipeline's image score: how a heatmap channel becomes one number per image."""

from __future__ import annotations

import torch

from mtfcdd.core.config import check_choice

IMAGE_SCORES = ("max", "mean")
"""How a heatmap channel becomes an image score: its maximum (the authors' evaluation) or its mean (Eq. 2)."""


def image_scores(heatmaps: torch.Tensor, kind: str) -> torch.Tensor:
    """Per-type image scores float32 [B, M] of heatmaps [B, M, H, W]: the ``max`` or the ``mean`` of each channel."""
    check_choice("image_score", kind, IMAGE_SCORES)
    flat = heatmaps.flatten(2)
    return flat.amax(dim=2) if kind == "max" else flat.mean(dim=2, dtype=torch.float32)
