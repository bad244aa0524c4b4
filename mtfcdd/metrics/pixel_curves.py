"""Streaming pixel histograms on a fixed float32 grid, and the pixel ROC area computed from them.

Bins follow the float32 bit pattern: sign, the 8 exponent bits and the top ``MANTISSA_BITS`` mantissa bits. That
is an exact log-spaced grid over the whole float range (relative bin width ``2**-MANTISSA_BITS``, about 0.1 %),
monotone in the value, identical for every run and every rank, so histograms add exactly. Outliers land in far
bins and leave the resolution elsewhere untouched; tied values always share a bin, so the only difference from an
exact sort-based curve comes from distinct values that share a bin.

Storage is block-sparse (``HistogramRows``): one row of ``BLOCK_SIZE`` bins per (sign, exponent) octave that
holds a value. Memory therefore follows the range of octaves the scores occupy (a few dozen for real heatmaps, at
most ``NUM_BLOCKS`` = 512), never the number of pixels.
"""

from __future__ import annotations

from typing import NamedTuple

import numpy as np
import torch

MANTISSA_BITS = 10
"""Mantissa bits kept in a bin index: relative bin width ``2**-10``."""
_DROPPED_BITS = 23 - MANTISSA_BITS
NUM_BINS = 1 << (32 - _DROPPED_BITS)
"""Bins of the whole float32 range (both signs): ``2**19``."""
BLOCK_SIZE = 1 << MANTISSA_BITS
"""Bins per octave block (one sign and exponent)."""
NUM_BLOCKS = NUM_BINS // BLOCK_SIZE
"""Octave blocks of the whole grid: 512."""


def float_bins(values: torch.Tensor) -> torch.Tensor:
    """Bin index (int32, same shape, contiguous, in ``[0, NUM_BINS)``) of each value after conversion to float32.

    Monotone: ``a <= b`` implies ``bin(a) <= bin(b)``. ``-0.0`` and ``+0.0`` share a bin; infinities get the two end
    bins. NaN has no place on the grid: callers reject it first.
    """
    bits = values.to(torch.float32).contiguous().view(torch.int32)
    sign = bits >> 31  # -1 for negative values, else 0
    key = bits & 0x7FFFFFFF
    key ^= sign
    key -= sign  # the magnitude with the value's sign: monotone in the value, one key for -0.0 and +0.0
    key >>= _DROPPED_BITS
    key += NUM_BINS // 2
    return key


def _weighted_bincount(bins: torch.Tensor, weights: torch.Tensor, length: int) -> torch.Tensor:
    """``torch.bincount(bins, weights, minlength=length)``. CUDA's version is nondeterministic (it raises under
    ``torch.use_deterministic_algorithms``); there the few region pixels are counted on the CPU instead."""
    if bins.is_cuda and torch.are_deterministic_algorithms_enabled():
        return torch.bincount(bins.cpu(), weights=weights.cpu(), minlength=length).to(bins.device)
    return torch.bincount(bins, weights=weights, minlength=length)


class HistogramRows(NamedTuple):
    """Sparse per-type pixel histograms on the ``float_bins`` grid, one row per stored octave block.

    ``keys`` int64 [R]: ``scope * NUM_BLOCKS + block`` (scope: an evaluation scope's code, 0 for one scope; block:
    the octave block id, ``bin >> MANTISSA_BITS``), sorted and distinct after ``fold_rows``; ``counts`` int64
    [R, T, 2, BLOCK_SIZE]: negative (0) and positive (1) pixels per bin of each type; ``region_mass`` float64
    [R, T, BLOCK_SIZE]: sum of ``1 / |region|`` over the region pixels in each bin (AUPRO). All sums: histograms of
    batches, scopes and ranks combine by concatenating rows and summing equal keys.
    """

    keys: torch.Tensor
    counts: torch.Tensor
    region_mass: torch.Tensor


def histogram_rows(
    values: torch.Tensor, positive: torch.Tensor, region_weight: torch.Tensor, scope: int = 0
) -> HistogramRows:
    """The histogram rows of one batch.

    Args:
        values: float [B, T, H, W] scores of T types (converted to float32).
        positive: bool [B, T, H, W]: the pixels that are positive for each type.
        region_weight: float [B, H, W]: ``1 / |region|`` on region pixels (read at positive pixels only).
        scope: the scope code of every row (see ``HistogramRows``).

    Cost: O(pixels + T x the bins spanned by this batch's values), never the whole grid.
    """
    num_types = values.shape[1]
    if values.numel() == 0:
        return HistogramRows(
            torch.zeros(0, dtype=torch.int64, device=values.device),
            torch.zeros(0, num_types, 2, BLOCK_SIZE, dtype=torch.int64, device=values.device),
            torch.zeros(0, num_types, BLOCK_SIZE, dtype=torch.float64, device=values.device),
        )
    bins = float_bins(values)
    low, high = (int(b) >> MANTISSA_BITS for b in torch.aminmax(bins))
    span = (high - low + 1) * BLOCK_SIZE
    type_offset = torch.arange(num_types, device=bins.device).view(1, -1, 1, 1) * span
    flat = (bins.long() - low * BLOCK_SIZE + type_offset).flatten()
    positive = positive.flatten()
    positive_bins = flat[positive]
    every = torch.bincount(flat, minlength=num_types * span).view(num_types, -1, BLOCK_SIZE)
    positives = torch.bincount(positive_bins, minlength=num_types * span).view(num_types, -1, BLOCK_SIZE)
    weights = region_weight.to(values.device, torch.float64)[:, None].expand(values.shape).flatten()[positive]
    mass = _weighted_bincount(positive_bins, weights, num_types * span).view(num_types, -1, BLOCK_SIZE)
    mass = mass.to(torch.float64)  # bincount of no pixels is int64
    used = every.any(dim=2).any(dim=0).nonzero().flatten()
    counts = torch.stack([every - positives, positives], dim=1)[:, :, used].permute(2, 0, 1, 3)
    keys = scope * NUM_BLOCKS + low + used
    return HistogramRows(keys, counts.contiguous(), mass[:, used].permute(1, 0, 2).contiguous())


def fold_rows(keys: torch.Tensor, *values: torch.Tensor) -> tuple[torch.Tensor, ...]:
    """(sorted distinct keys, then each of ``values`` [R, ...] with the rows of equal keys summed)."""
    distinct, inverse = torch.unique(keys, sorted=True, return_inverse=True)
    if distinct.numel() == keys.numel() and torch.equal(distinct, keys):
        return (keys, *values)
    return (distinct, *(v.new_zeros((distinct.numel(), *v.shape[1:])).index_add_(0, inverse, v) for v in values))


def add_rows(state: tuple[torch.Tensor, ...], new: tuple[torch.Tensor, ...]) -> tuple[torch.Tensor, ...]:
    """``state`` (folded: keys sorted and distinct) plus the rows ``new``, folded; in place when every key of
    ``new`` is already in ``state`` (the usual case once a few batches have set the range of octaves)."""
    new = tuple(rows.to(state[0].device) for rows in new)
    keys, new_keys = state[0], new[0]
    slots = torch.searchsorted(keys, new_keys)
    if new_keys.numel() and bool((slots < keys.numel()).all()) and torch.equal(keys[slots], new_keys):
        for target, rows in zip(state[1:], new[1:]):
            target.index_add_(0, slots, rows)
        return state
    return fold_rows(*(torch.cat([a, b]) for a, b in zip(state, new)))


def type_histograms(rows: HistogramRows, type_k: int) -> tuple[np.ndarray, np.ndarray, np.ndarray]:
    """(negatives, positives, region mass) of one type over ``rows`` (folded, of one scope, block-sorted); bins
    ascending, empty bins dropped."""
    counts = rows.counts[:, type_k].transpose(0, 1).flatten(1).cpu().numpy()
    mass = rows.region_mass[:, type_k].flatten().cpu().numpy()
    used = (counts[0] > 0) | (counts[1] > 0)
    return counts[0][used], counts[1][used], mass[used]


def roc_auc_from_counts(negatives: np.ndarray, positives: np.ndarray) -> float:
    """Area under the ROC curve from per-bin negative/positive counts (bins in ascending score order).

    Thresholds sweep the bin edges from high to low; the curve starts at (0, 0), ends at (1, 1) and is integrated
    with the trapezoid rule (the pixels of one bin move together, like tied scores). NaN without positives or
    negatives.
    """
    total_neg, total_pos = float(negatives.sum()), float(positives.sum())
    if total_neg == 0 or total_pos == 0:
        return float("nan")
    tpr = np.concatenate([[0.0], np.cumsum(positives[::-1], dtype=np.float64) / total_pos])
    fpr = np.concatenate([[0.0], np.cumsum(negatives[::-1], dtype=np.float64) / total_neg])
    return float(np.sum(np.diff(fpr) * (tpr[1:] + tpr[:-1]) / 2.0))
