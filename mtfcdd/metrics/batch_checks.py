"""Argument checks of ``mtfcdd.metrics.evaluator.MultiTypeEvaluator.update``: a wrong batch fails with the
argument named and what was expected."""

from __future__ import annotations

from collections.abc import Sequence

import numpy as np
import torch


def check_batch(
    maps: torch.Tensor,
    masks: torch.Tensor,
    type_index: torch.Tensor,
    category: Sequence[str] | None,
    num_types: int,
    mode: str,
    per_category: bool,
) -> None:
    """Maps float [B, M, H, W], masks bool [B, H, W], type_index int [B] in [-1, M), B category names when
    ``per_category``."""
    if maps.ndim != 4 or maps.shape[1] != num_types or not maps.is_floating_point():
        raise ValueError(f"maps: expected a float tensor [B, {num_types}, H, W], got {maps.dtype} {tuple(maps.shape)}")
    batch, _, height, width = maps.shape
    if tuple(masks.shape) != (batch, height, width) or masks.is_floating_point() or masks.is_complex():
        raise ValueError(
            f"masks: expected a bool tensor [{batch}, {height}, {width}] matching maps, "
            f"got {masks.dtype} {tuple(masks.shape)}"
        )
    if tuple(type_index.shape) != (batch,) or type_index.is_floating_point():
        raise ValueError(
            f"type_index: expected an int tensor [{batch}], got {type_index.dtype} {tuple(type_index.shape)}"
        )
    if batch and int(type_index.min()) < -1:
        raise ValueError(f"type_index: values must be >= -1 (-1 = normal), got {int(type_index.min())}")
    if batch and mode == "multi" and int(type_index.max()) >= num_types:
        raise ValueError(f"type_index: values must be < {num_types} (one per type name), got {int(type_index.max())}")
    if per_category and (category is None or len(category) != batch):
        raise ValueError(f"category: per_category=True needs {batch} category names, got {category!r}")


def check_normal_masks(types: np.ndarray, masks: np.ndarray) -> None:
    """A normal image (type -1) must have an empty mask. types int [B], masks bool [B, H, W]."""
    normal_with_mask = np.flatnonzero((types < 0) & masks.any(axis=(1, 2)))
    if len(normal_with_mask):
        raise ValueError(
            f"masks: batch image {int(normal_with_mask[0])} is normal (type_index -1) but its mask has "
            f"{int(masks[normal_with_mask[0]].sum())} defect pixels; expected an empty mask"
        )


def check_any_defect(maps: torch.Tensor, anomaly_map: torch.Tensor, anomaly_score: torch.Tensor) -> None:
    """The any-defect map [B, H, W] and score [B] must match maps [B, M, H, W]."""
    if tuple(anomaly_map.shape) != (maps.shape[0], *maps.shape[2:]) or tuple(anomaly_score.shape) != maps.shape[:1]:
        raise ValueError(
            f"anomaly_map/anomaly_score: expected [{maps.shape[0]}, {maps.shape[2]}, {maps.shape[3]}] and "
            f"[{maps.shape[0]}], got {tuple(anomaly_map.shape)} and {tuple(anomaly_score.shape)}"
        )
