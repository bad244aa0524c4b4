"""The any-defect view: one map and one image score per image for "is there any defect?", from the M type channels.

Cross-channel normalisation: channel k is divided by ``scale_k``, a high quantile (``ANY_DEFECT_QUANTILE``) of its
image scores on the *normal* validation images, so every channel is measured in units of "how far above what this
channel reaches on defect-free parts". The pseudo-Huber maps are >= 0 with 0 = perfectly normal, so a pure scale
(no shift) keeps that zero and keeps every channel's ranking; the any-defect map is the maximum over the scaled
channels and its image score the maximum over the scaled per-type scores. Why not the alternatives: the raw maximum
lets channels with a wide range on normal parts (their false alarms) dominate; the min/max heat-range calibration
stretches each channel by its extremes (mostly set by defects, not by normal parts) and measured worse; a z-score
with a shift moves normal pixels below zero and ranked pixels worse. With one channel (mode single, PatchCore)
there is nothing to normalise across: the scale is 1 and the any-defect view is that channel.
"""

from __future__ import annotations

import math

import numpy as np
import torch

from mtfcdd.metrics.image_metrics import binary_image_metrics

ANY_DEFECT_QUANTILE = 0.95
"""Quantile of the normal validation images' per-type scores that becomes each channel's scale."""


def any_defect_map(heatmaps: torch.Tensor, scale: torch.Tensor) -> torch.Tensor:
    """Heatmaps [B, M, H, W] and per-channel scales [M] -> any-defect map [B, H, W] (max over scaled channels)."""
    return (heatmaps / scale.view(1, -1, 1, 1)).amax(dim=1)


def any_defect_scores(scores: torch.Tensor, scale: torch.Tensor) -> torch.Tensor:
    """Per-type image scores [B, M] and scales [M] -> any-defect image scores [B] (max over scaled types).

    With image score ``max`` this equals the maximum of :func:`any_defect_map`."""
    return (scores / scale.view(1, -1)).amax(dim=1)


def fit_any_defect(
    scores: np.ndarray, types: np.ndarray, quantile: float = ANY_DEFECT_QUANTILE
) -> tuple[np.ndarray, float]:
    """(scales [M], threshold) of the any-defect view from validation image scores [N, M] and types [N] (-1 = normal).

    Scales: the ``quantile`` of each channel's scores over the normal images; ones where there is one channel or no
    normal image; a channel whose quantile is not positive gets a tiny positive scale (it never fired on normal parts,
    so any response of it counts as far above normal). Threshold: where the scaled any-defect score reaches its
    F1-max on these images (``inf`` where undefined: no defective or no normal image)."""
    scores = np.asarray(scores, dtype=np.float64)
    types = np.asarray(types)
    normal = scores[types < 0]
    scale = np.ones(scores.shape[1])
    if scores.shape[1] > 1 and len(normal):
        scale = np.maximum(np.quantile(normal, quantile, axis=0), 1e-6)
    scale = scale.astype(np.float32)  # the pipeline's buffer dtype: its scaled scores are these, bit for bit
    scaled = (scores.astype(np.float32) / scale).max(axis=1)
    threshold = binary_image_metrics(scaled, types >= 0).f1_threshold
    return scale, math.inf if math.isnan(threshold) else threshold
