"""The multi-type FCDD objective (Eq. 3), numerically stable for z near 0 and for large z."""

from __future__ import annotations

import math

import torch
from torch import nn

LN2 = math.log(2.0)


def log1mexp(z: torch.Tensor) -> torch.Tensor:
    """``log(1 - exp(-z))`` for z > 0 without cancellation: ``log(-expm1(-z))`` below ln 2, ``log1p(-exp(-z))`` above.

    Each branch only ever sees inputs from its own stable range, so neither value nor gradient of the unused branch
    can turn into inf/NaN.
    """
    small = z < LN2
    z_small = torch.where(small, z, torch.full_like(z, LN2))
    z_large = torch.where(small, torch.full_like(z, LN2), z)
    return torch.where(small, torch.log(-torch.expm1(-z_small)), torch.log1p(-torch.exp(-z_large)))


def floor_straight_through(z: torch.Tensor, floor: float) -> torch.Tensor:
    """``max(z, floor)`` in value, identity in gradient: a clamp that does not stop learning below the floor."""
    return z + (floor - z).clamp_min(0.0).detach()


class MultiTypeFCDDLoss(nn.Module):
    """Eq. 3: mean over images i and types k of ``(1 - y_ik) z_ik - y_ik log(1 - exp(-z_ik))``.

    ``scores`` z [B, M] (any float dtype; computed in float32) are the Eq. 2 image scores (mean of the pseudo-Huber
    map, >= 0); ``labels`` y [B, M] in {0, 1}.
    ``z_floor`` bounds the anomalous term away from z = 0 where ``log(1 - e^-z)`` is -inf (value at the floor,
    gradient passed through unchanged); 1e-6 keeps the loss below 14 per element and gradients finite in float32.
    """

    def __init__(self, z_floor: float = 1e-6) -> None:
        super().__init__()
        if not z_floor > 0:
            raise ValueError(f"model.loss.z_floor must be > 0, got {z_floor}")
        self.z_floor = z_floor

    def forward(self, scores: torch.Tensor, labels: torch.Tensor) -> torch.Tensor:
        if scores.shape != labels.shape:
            raise ValueError(
                f"scores {tuple(scores.shape)} and labels {tuple(labels.shape)} must have one shape [B, M]"
            )
        scores = scores.float()  # half-precision scores (autocast) are evaluated in float32
        labels = labels.to(scores.dtype)
        anomalous = -log1mexp(floor_straight_through(scores, self.z_floor))
        return ((1.0 - labels) * scores + labels * anomalous).mean()
