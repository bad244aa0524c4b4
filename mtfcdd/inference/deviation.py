"""How far an engine's heatmaps are from the fp32 reference, and whether its per-type decisions agree."""

from __future__ import annotations

import torch


def image_scores(heatmaps: torch.Tensor) -> torch.Tensor:
    """Per-type image score [B, M]: the maximum of each heatmap channel (the authors' evaluation)."""
    return heatmaps.float().flatten(2).amax(dim=2)


def decision_thresholds(image_threshold: torch.Tensor, reference_scores: torch.Tensor) -> torch.Tensor:
    """The network's per-type thresholds [M]; a type without one (inf: untrained) gets the median of its fp32
    reference scores, so that decisions split the images and a comparison means something."""
    thresholds = image_threshold.detach().float().cpu().clone()
    medians = torch.quantile(reference_scores.float().cpu(), 0.5, dim=0)  # even count: midway, never on a score
    missing = ~torch.isfinite(thresholds)
    thresholds[missing] = medians[missing]
    return thresholds


def heatmap_deviation(
    heatmaps: torch.Tensor, reference: torch.Tensor, thresholds: torch.Tensor
) -> dict[str, float | int | bool]:
    """Relative L2 error ``||h - h32|| / ||h32||``, max abs error, and decision agreement (score >= threshold)."""
    heatmaps, reference = heatmaps.float().cpu(), reference.float().cpu()
    if heatmaps.shape != reference.shape:
        raise ValueError(f"heatmaps {tuple(heatmaps.shape)} vs reference {tuple(reference.shape)}")
    rel = torch.linalg.vector_norm(heatmaps - reference) / torch.linalg.vector_norm(reference).clamp_min(1e-30)
    decided = image_scores(heatmaps) >= thresholds
    expected = image_scores(reference) >= thresholds
    mismatches = int((decided != expected).sum())
    return {
        "rel_l2": float(rel),
        "max_abs": float((heatmaps - reference).abs().max()),
        "decisions": int(decided.numel()),
        "decision_mismatches": mismatches,
        "decisions_identical": mismatches == 0,
    }
