"""What the evaluator adds to a batch before measuring it: image scores of bare maps (``update`` without ``scores``)
and the any-defect view as one more channel."""

from __future__ import annotations

import torch

from mtfcdd.metrics.batch_checks import check_any_defect

BARE_MAP_SCORES = ("max", "mean")
"""How the evaluator scores the images of bare maps (``update`` without ``scores``): each channel's maximum or mean,
the reductions of the pipeline's image score (``mtfcdd.model.image_score``; the model passes its own scores)."""


def bare_map_scores(maps: torch.Tensor, kind: str) -> torch.Tensor:
    """Image scores [B, M] of bare maps [B, M, H, W]: each channel's ``max`` or ``mean`` (``BARE_MAP_SCORES``)."""
    flat = maps.flatten(2)
    return flat.amax(dim=2) if kind == "max" else flat.mean(dim=2, dtype=torch.float32)


def with_any_defect(
    maps: torch.Tensor, scores: torch.Tensor, anomaly_map: torch.Tensor | None, anomaly_score: torch.Tensor | None
) -> tuple[torch.Tensor, torch.Tensor]:
    """Type maps [B, M, H, W] and scores float64 [B, M] with the any-defect view appended as channel M: the pipeline's
    ``anomaly_map`` [B, H, W] and ``anomaly_score`` [B], or (both None) the maximum over the channels."""
    if (anomaly_map is None) != (anomaly_score is None):
        raise ValueError("anomaly_map and anomaly_score: give both (the pipeline's any-defect view) or neither")
    if anomaly_map is None:
        anomaly_map, anomaly_score = maps.amax(dim=1), scores.amax(dim=1)
    anomaly_map, anomaly_score = anomaly_map.detach().to(maps.device), anomaly_score.detach()
    check_any_defect(maps, anomaly_map, anomaly_score)
    maps = torch.cat([maps, anomaly_map[:, None].to(maps.dtype)], dim=1)
    return maps, torch.cat([scores, anomaly_score.to(scores)[:, None]], dim=1)
