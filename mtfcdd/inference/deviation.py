"""How far an engine's outputs are from the fp32 reference, and whether its decisions agree."""

from __future__ import annotations

import torch

from mtfcdd.model.pipeline import PipelineOutput


def median_thresholds(image_threshold: torch.Tensor, reference_scores: torch.Tensor) -> torch.Tensor:
    """The pipeline's per-type thresholds [M]; a type without one (inf: untrained) gets the median of its fp32
    reference scores [N, M], so that decisions split the images and a comparison means something."""
    thresholds = image_threshold.detach().float().cpu().clone()
    medians = torch.quantile(reference_scores.float().cpu(), 0.5, dim=0)  # even count: midway, never on a score
    missing = ~torch.isfinite(thresholds)
    thresholds[missing] = medians[missing]
    return thresholds


def output_deviation(outputs: PipelineOutput, reference: PipelineOutput) -> dict[str, float | int | bool]:
    """Relative L2 error ``||h - h32|| / ||h32||`` and max abs error of the heatmaps; how many per-type decisions
    and predicted types differ from the reference's."""
    heatmaps, expected = outputs.heatmaps.float().cpu(), reference.heatmaps.float().cpu()
    if heatmaps.shape != expected.shape:
        raise ValueError(f"heatmaps {tuple(heatmaps.shape)} vs reference {tuple(expected.shape)}")
    rel = torch.linalg.vector_norm(heatmaps - expected) / torch.linalg.vector_norm(expected).clamp_min(1e-30)
    mismatches = int((outputs.decisions.cpu() != reference.decisions.cpu()).sum())
    return {
        "rel_l2": float(rel),
        "max_abs": float((heatmaps - expected).abs().max()),
        "decisions": int(reference.decisions.numel()),
        "decision_mismatches": mismatches,
        "decisions_identical": mismatches == 0,
        "type_mismatches": int((outputs.predicted_type.cpu() != reference.predicted_type.cpu()).sum()),
    }
