"""The any-defect view: one map and one score per image for "is there any defect?", from the M type channels.

Any-defect map = max over channels k of A'_k / scale_k; any-defect image score = max over k of s_k / scale_k (with
image score ``max`` this is the maximum of the map). The default scale is 1 for every channel, on purpose: Eq. 3
trains every channel against the same target (z -> 0 on images without that type, 1 - exp(-z) -> 1 on images with
it), so the channels already share one scale. Measured on the demo's test set (any-defect I-AUROC of the earlier and
the current demo checkpoint; raw maximum 95.8 / 98.0): normal-image 0.95 quantile 95.6 / 96.7, normal-image maximum
96.1 / 97.6, normal-image std 96.4 / 97.0, normal-image z-score 95.8 / 96.8, square root of the 0.95 quantile
96.0 / 98.1, sum of channels 93.2 / 94.6; on the earlier one also min/max heat range 93.6 and F1 thresholds 93.5.
Only the square root was better on both, by 0.2 and 0.1 points; every other lost up to 4 points on one of them.
``quantile`` offers the normal-referenced scale for other data: channel k divided by that quantile of its scores on
the normal validation images ("how far above what this channel reaches on defect-free parts"; no shift, so 0 stays
"perfectly normal"). With one channel (mode single, PatchCore) there is nothing to normalise across: the scale is 1
and the any-defect view is that channel.
"""

from __future__ import annotations

import math

import numpy as np
import torch

from mtfcdd.metrics.image_metrics import binary_image_metrics

ANY_DEFECT_QUANTILE: float | None = None
"""Quantile of the normal validation images' per-type scores that becomes each channel's scale (None: scale 1)."""


def any_defect_map(heatmaps: torch.Tensor, scale: torch.Tensor) -> torch.Tensor:
    """Heatmaps [B, M, H, W] and per-channel scales [M] -> any-defect map [B, H, W] (max over scaled channels)."""
    return (heatmaps / scale.view(1, -1, 1, 1)).amax(dim=1)


def any_defect_scores(scores: torch.Tensor, scale: torch.Tensor) -> torch.Tensor:
    """Per-type image scores [B, M] and scales [M] -> any-defect image scores [B] (max over scaled types).

    With image score ``max`` this equals the maximum of ``any_defect_map``."""
    return (scores / scale.view(1, -1)).amax(dim=1)


def fit_any_defect(
    scores: np.ndarray, types: np.ndarray, quantile: float | None = ANY_DEFECT_QUANTILE
) -> tuple[np.ndarray, float]:
    """(scales [M], threshold) of the any-defect view from validation image scores [N, M] and types [N] (-1 = normal).

    Scales: the ``quantile`` of each channel's scores over the normal images; ones where ``quantile`` is None or
    there is one channel or no normal image; a channel whose quantile is not positive gets a tiny positive scale (it
    never fired on normal parts, so any response of it counts as far above normal). Threshold: where the scaled
    any-defect score reaches its F1-max on these images (``inf`` where undefined: no defective or no normal image)."""
    scores = np.asarray(scores, dtype=np.float64)
    types = np.asarray(types)
    normal = scores[types < 0]
    scale = np.ones(scores.shape[1])
    if quantile is not None and scores.shape[1] > 1 and len(normal):
        scale = np.maximum(np.quantile(normal, quantile, axis=0), 1e-6)
    scale = scale.astype(np.float32)  # the pipeline's buffer dtype: its scaled scores are these, bit for bit
    scaled = (scores.astype(np.float32) / scale).max(axis=1)
    threshold = binary_image_metrics(scaled, types >= 0).f1_threshold
    return scale, math.inf if math.isnan(threshold) else threshold
