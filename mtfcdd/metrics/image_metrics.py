"""Exact image-level metrics (few scores: kept and sorted, never binned) and type classification."""

from __future__ import annotations

from dataclasses import dataclass

import numpy as np

AP_DEFINITION = (
    "average precision as scikit-learn defines it: sum over thresholds of (R_n - R_(n-1)) * P_n "
    "(a step sum, not the trapezoid area under PR)"
)


@dataclass(frozen=True)
class BinaryImageMetrics:
    """One type's image-level detection metrics (fractions in [0, 1]; NaN when a class is absent).

    ``f1_threshold``: the score t at which "anomalous iff score >= t" reaches ``f1max``.
    """

    auroc: float
    ap: float
    f1max: float
    f1_threshold: float


def binary_image_metrics(scores: np.ndarray, positive: np.ndarray) -> BinaryImageMetrics:
    """I-AUROC (trapezoid ROC, ties together), AP (scikit-learn step sum) and F1-max over all distinct thresholds.

    Args:
        scores: float [N] image scores (higher = more anomalous).
        positive: bool [N] image labels.
    """
    positive = np.asarray(positive, dtype=bool)
    num_pos = int(positive.sum())
    if num_pos == 0 or num_pos == len(positive):
        nan = float("nan")
        return BinaryImageMetrics(nan, nan, nan, nan)
    order = np.argsort(-np.asarray(scores, dtype=np.float64), kind="stable")
    sorted_scores = np.asarray(scores, dtype=np.float64)[order]
    # last index of each group of tied scores: one threshold per distinct score, high to low
    ends = np.flatnonzero(np.r_[sorted_scores[1:] != sorted_scores[:-1], True])
    tp = np.cumsum(positive[order])[ends].astype(np.float64)
    fp = (ends + 1) - tp
    tpr = np.r_[0.0, tp / num_pos]
    fpr = np.r_[0.0, fp / fp[-1]]
    auroc = float(np.sum(np.diff(fpr) * (tpr[1:] + tpr[:-1]) / 2.0))
    precision = tp / (tp + fp)
    ap = float(np.sum(np.diff(tpr) * precision))
    f1 = 2.0 * tp / (tp + fp + num_pos)
    best = int(np.argmax(f1))
    return BinaryImageMetrics(auroc, ap, float(f1[best]), float(sorted_scores[ends[best]]))


def type_classification(predicted: np.ndarray, true_types: np.ndarray, num_types: int) -> dict:
    """How well are the types of anomalous images predicted?

    Args:
        predicted: int [N] predicted types in [0, M) of anomalous images.
        true_types: int [N] in [0, M).
        num_types: M.

    Returns:
        ``accuracy``, ``macro_f1`` (mean over the types that occur as truth or prediction of
        2 TP / (2 TP + FP + FN), as scikit-learn's macro F1), ``confusion`` (M x M list, rows = true type,
        columns = predicted) and ``num_images``. NaN metrics when N = 0.
    """
    predicted = np.asarray(predicted, dtype=np.int64)
    confusion = np.zeros((num_types, num_types), dtype=np.int64)
    np.add.at(confusion, (true_types, predicted), 1)
    tp = np.diag(confusion).astype(np.float64)
    denominator = 2 * tp + (confusion.sum(axis=0) - tp) + (confusion.sum(axis=1) - tp)
    present = denominator > 0
    n = len(true_types)
    return {
        "accuracy": float(tp.sum() / n) if n else float("nan"),
        "macro_f1": float(np.mean(2 * tp[present] / denominator[present])) if n else float("nan"),
        "confusion": confusion.tolist(),
        "num_images": n,
    }
