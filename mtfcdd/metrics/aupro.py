"""AUPRO (MVTec's area under the per-region-overlap curve) from streamed histograms.

PRO(t) = mean over ALL regions of the test set (not per image) of the share of the region's pixels scoring >= t.
Each region pixel carries the weight ``1 / |region|``; the weighted count of region pixels at or above t divided by
the number of regions R is PRO(t). Regions are the 8-connected components of each image's mask.
"""

from __future__ import annotations

import numpy as np
from scipy import ndimage

AUPRO_FPR_LIMIT = 0.3
"""The FPR up to which PRO is integrated (the result is divided by it)."""

_EIGHT_CONNECTED = np.ones((3, 3), dtype=bool)


def region_weights(masks: np.ndarray) -> tuple[np.ndarray, np.ndarray]:
    """Connected regions (8-connectivity) of each mask.

    Args:
        masks: bool [B, H, W].

    Returns:
        (weights float64 [B, H, W]: ``1 / |region|`` on each mask pixel, 0 elsewhere; regions int64 [B] per image).
    """
    weights = np.zeros(masks.shape, dtype=np.float64)
    regions = np.zeros(len(masks), dtype=np.int64)
    for i in np.flatnonzero(masks.any(axis=(1, 2))):
        rows, cols = np.flatnonzero(masks[i].any(axis=1)), np.flatnonzero(masks[i].any(axis=0))
        box = (slice(rows[0], rows[-1] + 1), slice(cols[0], cols[-1] + 1))
        labels, count = ndimage.label(masks[i][box], structure=_EIGHT_CONNECTED)
        inverse_size = np.zeros(count + 1)
        inverse_size[1:] = 1.0 / np.bincount(labels.ravel(), minlength=count + 1)[1:]
        weights[i][box] = inverse_size[labels]
        regions[i] = count
    return weights, regions


def aupro_from_counts(
    negatives: np.ndarray, region_mass: np.ndarray, num_regions: int, fpr_limit: float = AUPRO_FPR_LIMIT
) -> float:
    """Normalised AUPRO in [0, 1] from per-bin counts (bins in ascending score order).

    Args:
        negatives: negative pixels per bin (the FPR's denominator is their total).
        region_mass: sum of ``1 / |region|`` over region pixels per bin.
        num_regions: R, the number of regions.
        fpr_limit: integrate PRO over FPR in [0, fpr_limit], then divide by fpr_limit.

    The curve starts at (0, 0); thresholds sweep the bin edges from high to low; PRO is interpolated linearly at
    FPR = fpr_limit; trapezoid rule. NaN without regions or negative pixels.
    """
    total_neg = float(negatives.sum())
    if num_regions == 0 or total_neg == 0:
        return float("nan")
    fpr = np.concatenate([[0.0], np.cumsum(negatives[::-1], dtype=np.float64) / total_neg])
    pro = np.concatenate([[0.0], np.cumsum(region_mass[::-1]) / num_regions])
    end = int(np.searchsorted(fpr, fpr_limit, side="left"))  # first point with fpr >= limit (fpr[-1] == 1)
    share = (fpr_limit - fpr[end - 1]) / (fpr[end] - fpr[end - 1])
    fpr = np.concatenate([fpr[:end], [fpr_limit]])
    pro = np.concatenate([pro[:end], [pro[end - 1] + share * (pro[end] - pro[end - 1])]])
    area = float(np.sum(np.diff(fpr) * (pro[1:] + pro[:-1]) / 2.0)) / fpr_limit
    return min(max(area, 0.0), 1.0)
