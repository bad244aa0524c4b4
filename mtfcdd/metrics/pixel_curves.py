"""Streaming pixel histograms on a fixed float32 grid, and the pixel ROC area computed from them.

Bins follow the float32 bit pattern: sign, the 8 exponent bits and the top ``MANTISSA_BITS`` mantissa bits. That
is an exact log-spaced grid over the whole float range (relative bin width ``2**-MANTISSA_BITS``, about 0.1 %),
monotone in the value, identical for every run and every rank, so histograms add exactly. Outliers land in far
bins and leave the resolution elsewhere untouched; tied values always share a bin, so the only difference from an
exact sort-based curve comes from distinct values that share a bin.

Storage is block-sparse: one block of ``BLOCK_SIZE`` bins per (sign, exponent) octave, allocated when a value first
falls into it. Memory therefore follows the range of octaves the scores occupy (a few dozen for real heatmaps, at
most 512 = ``NUM_BINS / BLOCK_SIZE``), never the number of pixels. Each ``add`` costs
O(pixels + bins spanned by those pixels' values).
"""

from __future__ import annotations

import numpy as np
import torch

MANTISSA_BITS = 10
"""Mantissa bits kept in a bin index: relative bin width ``2**-10``."""
_DROPPED_BITS = 23 - MANTISSA_BITS
NUM_BINS = 1 << (32 - _DROPPED_BITS)
"""Bins of the whole float32 range (both signs): ``2**19``."""
BLOCK_SIZE = 1 << MANTISSA_BITS
"""Bins per octave block (one sign and exponent)."""


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


class PixelHistograms:
    """Per-type pixel histograms of one evaluation scope, on the :func:`float_bins` grid.

    States (all sums, so scopes, batches and ranks combine by addition):
    ``counts`` int64 [T, 2, L]: negative (0) and positive (1) pixels per bin; ``region_mass`` float64 [T, L]: sum of
    ``1 / |region|`` over the region pixels in each bin (AUPRO); ``num_regions`` int64 [T]. ``L = len(blocks) *
    BLOCK_SIZE`` with ``blocks`` the sorted ids of the stored octave blocks. States live on the device of the
    first values added.
    """

    def __init__(self, num_types: int, device: torch.device | str | None = None) -> None:
        self.num_types = num_types
        self.device = torch.device(device) if device is not None else None
        self.blocks = torch.empty(0, dtype=torch.int64)
        self.counts = torch.zeros(num_types, 2, 0, dtype=torch.int64)
        self.region_mass = torch.zeros(num_types, 0, dtype=torch.float64)
        self.num_regions = torch.zeros(num_types, dtype=torch.int64)
        if self.device is not None:
            self._move(self.device)

    def _move(self, device: torch.device) -> None:
        self.device = device
        for name in ("blocks", "counts", "region_mass", "num_regions"):
            setattr(self, name, getattr(self, name).to(device))

    def _blocks_view(self, state: torch.Tensor) -> torch.Tensor:
        """``state`` [..., L] viewed as [..., n_blocks, BLOCK_SIZE]."""
        return state.view(*state.shape[:-1], -1, BLOCK_SIZE)

    def expand_to(self, blocks: torch.Tensor) -> None:
        """Re-lay the states over ``blocks`` (sorted block ids, a superset of the stored ones); new bins are 0."""
        blocks = blocks.to(self.blocks.device)
        if torch.equal(blocks, self.blocks):
            return
        positions = torch.searchsorted(blocks, self.blocks)
        counts = self.counts.new_zeros(self.num_types, 2, blocks.numel(), BLOCK_SIZE)
        counts[:, :, positions] = self._blocks_view(self.counts)
        mass = self.region_mass.new_zeros(self.num_types, blocks.numel(), BLOCK_SIZE)
        mass[:, positions] = self._blocks_view(self.region_mass)
        self.counts, self.region_mass, self.blocks = counts.flatten(2), mass.flatten(1), blocks

    def add(
        self,
        type_k: int,
        values: torch.Tensor,
        positive: torch.Tensor,
        region_weight: torch.Tensor,
        num_regions: int,
    ) -> None:
        """Add the pixels of one type's maps.

        Args:
            type_k: type (channel) index.
            values: scores of any shape (float; converted to float32).
            positive: bool, same shape: the pixels that are positive for this type.
            region_weight: float64, same shape: ``1 / |region|`` on region pixels (read at positive pixels only).
            num_regions: regions these pixels belong to (added to ``num_regions[type_k]``).
        """
        if self.device is None:
            self._move(values.device)
        self.num_regions[type_k] += num_regions
        if values.numel() == 0:
            return
        bins = float_bins(values.to(self.device)).flatten()
        positive = positive.to(self.device).flatten()
        # count over the blocks spanned by this batch only (cost follows the data's range, not the whole grid)
        low, high = (int(b) >> MANTISSA_BITS for b in torch.aminmax(bins))
        span = (high - low + 1) * BLOCK_SIZE
        bins -= low * BLOCK_SIZE
        positive_bins = bins[positive]
        every = torch.bincount(bins, minlength=span).view(-1, BLOCK_SIZE)
        positives = torch.bincount(positive_bins, minlength=span).view(-1, BLOCK_SIZE)
        weights = region_weight.to(self.device, torch.float64).flatten()[positive]
        mass = _weighted_bincount(positive_bins, weights, span).view(-1, BLOCK_SIZE)
        used = every.any(dim=1).nonzero().flatten()
        self.expand_to(torch.unique(torch.cat([self.blocks, used + low])))
        slots = torch.searchsorted(self.blocks, used + low)
        self._blocks_view(self.counts[type_k, 0])[slots] += (every - positives)[used]
        self._blocks_view(self.counts[type_k, 1])[slots] += positives[used]
        self._blocks_view(self.region_mass[type_k])[slots] += mass[used]

    def merge(self, other: PixelHistograms) -> None:
        """Add ``other``'s states (any block layout) into this one."""
        if other.num_types != self.num_types:
            raise ValueError(f"cannot merge histograms of {other.num_types} types into {self.num_types}")
        if other.device is None:
            return
        if self.device is None:
            self._move(other.device)
        other_blocks = other.blocks.to(self.device)
        self.expand_to(torch.unique(torch.cat([self.blocks, other_blocks])))
        positions = torch.searchsorted(self.blocks, other_blocks)
        other_counts, other_mass = other.counts.to(self.device), other.region_mass.to(self.device)
        self._blocks_view(self.counts).index_add_(2, positions, self._blocks_view(other_counts))
        self._blocks_view(self.region_mass).index_add_(1, positions, self._blocks_view(other_mass))
        self.num_regions += other.num_regions.to(self.device)

    def type_histograms(self, type_k: int) -> tuple[np.ndarray, np.ndarray, np.ndarray, int]:
        """(negatives, positives, region mass, number of regions) of one type; bins ascending, empty bins dropped."""
        counts = self.counts[type_k].cpu().numpy()
        mass = self.region_mass[type_k].cpu().numpy()
        used = (counts[0] > 0) | (counts[1] > 0)
        return counts[0][used], counts[1][used], mass[used], int(self.num_regions[type_k])


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
