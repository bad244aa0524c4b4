"""Per-type evaluation of multi-type heatmaps in bounded memory (image, pixel and region metrics).

Image level (exact; scores are few, all kept): per type k, I-AUROC, AP (scikit-learn's step sum) and F1-max of the
image scores ``max`` (the authors' evaluation) or ``mean`` (Eq. 2) of channel k; positives = test images of type k,
negatives = every other test image. In mode ``single`` (M = 1) the positives are all defect images.

Pixel level (streamed into fixed-grid histograms, see :mod:`mtfcdd.metrics.pixel_curves`): P-AUROC and AUPRO
(FPR up to 0.3, divided by 0.3) of channel k under one of two protocols:

- ``paper``: the authors' demo code. Positive pixels = every defect pixel, whatever its type; AUPRO regions = the
  8-connected regions of every defect image's mask.
- ``typed``: one-vs-rest. Positive pixels and regions = those of type-k images only; other defects' pixels count
  as negatives, so a channel that lights up on the wrong type is penalised.

In mode ``single`` both protocols are the same: the one channel against every defect pixel.

Type classification (mode multi): for each anomalous test image, the type the inference pipeline predicted (by
default the argmax over the M image scores); accuracy, macro-F1 and the M x M confusion matrix (rows = true type).

All states are sums (histograms, region counts) or concatenations (image scores), so evaluators merge exactly
(:meth:`MultiTypeEvaluator.merge`) and :meth:`MultiTypeEvaluator.compute` sums them across ``torch.distributed``
ranks by itself. Each rank must see each test image once (no padded duplicates).
"""

from __future__ import annotations

import math
import warnings
from collections.abc import Sequence

import numpy as np
import torch
import torch.distributed as dist

from mtfcdd.metrics.aupro import AUPRO_FPR_LIMIT, aupro_from_counts, region_weights
from mtfcdd.metrics.image_metrics import (
    AP_DEFINITION,
    IMAGE_SCORES,
    binary_image_metrics,
    image_scores,
    type_classification,
)
from mtfcdd.metrics.pixel_curves import MANTISSA_BITS, PixelHistograms, roc_auc_from_counts

METRICS = ("i_auroc", "ap", "f1max", "p_auroc", "aupro")
"""Metric keys of every type entry (fractions in [0, 1])."""
PROTOCOLS = ("paper", "typed")
MODES = ("multi", "single")


class UndefinedMetricWarning(UserWarning):
    """A metric is NaN because its positives (or negatives) are absent from the evaluated images."""


def _choice(name: str, value: str, choices: Sequence[str]) -> str:
    if value not in choices:
        raise ValueError(f"{name}={value!r}: expected one of {', '.join(map(repr, choices))}")
    return value


def _nanmean(values: Sequence[float]) -> float:
    finite = [v for v in values if not math.isnan(v)]
    return float(np.mean(finite)) if finite else float("nan")


class MultiTypeEvaluator:
    """Streams heatmaps and masks batch by batch; :meth:`compute` returns every metric per type and their mean.

    Memory: image scores take 8 bytes x M per image; pixel histograms take at most a few MB per type and scope
    (one scope, or one per category with ``per_category``), independent of the number of images.

    Args:
        type_names: one name per heatmap channel (M names; M = 1 in mode single).
        protocol: ``"paper"`` or ``"typed"`` (module docstring).
        image_score: ``"max"`` or ``"mean"`` of each channel's map.
        mode: ``"multi"`` (channel k = defect type k, ``type_index`` indexes ``type_names``) or ``"single"``
            (one channel against any defect).
        per_category: also report every metric per object category.
        fpr_limit: AUPRO's integration limit (0.3).
    """

    def __init__(
        self,
        type_names: Sequence[str],
        protocol: str = "paper",
        image_score: str = "max",
        mode: str = "multi",
        per_category: bool = False,
        fpr_limit: float = AUPRO_FPR_LIMIT,
    ) -> None:
        self.type_names = list(type_names)
        self.protocol = _choice("protocol", protocol, PROTOCOLS)
        self.image_score = _choice("image_score", image_score, IMAGE_SCORES)
        self.mode = _choice("mode", mode, MODES)
        if not self.type_names or len(set(self.type_names)) != len(self.type_names):
            raise ValueError(f"type_names={self.type_names!r}: expected distinct names, one per heatmap channel")
        if self.mode == "single" and len(self.type_names) != 1:
            raise ValueError(f"mode='single' evaluates one channel, got type_names={self.type_names!r}")
        if not 0.0 < fpr_limit <= 1.0:
            raise ValueError(f"fpr_limit={fpr_limit}: expected a value in (0, 1]")
        self.per_category = per_category
        self.fpr_limit = fpr_limit
        self.reset()

    @property
    def num_types(self) -> int:
        """M, the number of heatmap channels."""
        return len(self.type_names)

    def reset(self) -> None:
        """Forget every image."""
        self._scores: list[np.ndarray] = []  # float64 [b, M] per batch
        self._types: list[np.ndarray] = []  # int64 [b] per batch
        self._predicted: list[np.ndarray] = []  # int64 [b] per batch: predicted types
        self._categories: list[str] = []  # one per image (per_category only)
        self._hists: dict[str | None, PixelHistograms] = {}  # key: category, or None for the one scope

    def update(
        self,
        maps: torch.Tensor,
        masks: torch.Tensor,
        type_index: torch.Tensor,
        category: Sequence[str] | None = None,
        scores: torch.Tensor | None = None,
        predicted_type: torch.Tensor | None = None,
    ) -> None:
        """Add one batch.

        Args:
            maps: float [B, M, H, W] heatmaps at mask resolution (any sign, any float dtype, any device).
            masks: bool [B, H, W] ground truth (all False for normal images).
            type_index: int [B]: -1 for normal images, else the index of the image's type in ``type_names``
                (mode single: any index >= 0 means defective).
            category: B object category names (required with ``per_category``).
            scores: float [B, M] image scores as the inference pipeline computed them; None: ``image_scores`` of
                ``maps`` with this evaluator's ``image_score``.
            predicted_type: int [B] the pipeline's predicted type per image; None: the argmax of ``scores``.
        """
        maps = maps.detach()
        self._check_batch(maps, masks, type_index, category)
        masks = masks.detach().to(maps.device)
        masks = masks if masks.dtype == torch.bool else masks != 0
        types = type_index.detach().cpu().long().numpy()
        masks_cpu = masks.cpu().numpy()
        normal_with_mask = np.flatnonzero((types < 0) & masks_cpu.any(axis=(1, 2)))
        if len(normal_with_mask):
            raise ValueError(
                f"masks: batch image {int(normal_with_mask[0])} is normal (type_index -1) but its mask has "
                f"{int(masks_cpu[normal_with_mask[0]].sum())} defect pixels; expected an empty mask"
            )
        scores = image_scores(maps, self.image_score) if scores is None else scores.detach()
        if tuple(scores.shape) != tuple(maps.shape[:2]):
            raise ValueError(f"scores: expected [B, M] = {tuple(maps.shape[:2])}, got {tuple(scores.shape)}")
        scores = scores.double().cpu()
        if bool(scores.isnan().any()):  # max and mean propagate NaN: no separate pass over the pixels
            raise ValueError("maps: contain NaN; expected finite heatmaps (did training diverge?)")
        predicted = scores.argmax(dim=1) if predicted_type is None else predicted_type.detach().cpu().long()
        if tuple(predicted.shape) != (len(types),):
            raise ValueError(f"predicted_type: expected [{len(types)}], got {tuple(predicted.shape)}")
        self._scores.append(scores.numpy())
        self._predicted.append(predicted.numpy())
        self._types.append(types)
        if self.per_category:
            self._categories.extend(category)
        weights, regions = region_weights(masks_cpu)
        keys = list(category) if self.per_category else [None] * len(types)
        for key in dict.fromkeys(keys):
            rows = [i for i, k in enumerate(keys) if k == key]
            if len(rows) == len(keys):
                part = (maps, masks, types, weights, regions)
            else:
                index = torch.tensor(rows, device=maps.device)
                part = (maps[index], masks[index], types[rows], weights[rows], regions[rows])
            if key not in self._hists:
                self._hists[key] = PixelHistograms(self.num_types, device=maps.device)
            self._add_pixels(self._hists[key], *part)

    def _check_batch(
        self, maps: torch.Tensor, masks: torch.Tensor, type_index: torch.Tensor, category: Sequence[str] | None
    ) -> None:
        if maps.ndim != 4 or maps.shape[1] != self.num_types or not maps.is_floating_point():
            raise ValueError(
                f"maps: expected a float tensor [B, {self.num_types}, H, W], got {maps.dtype} {tuple(maps.shape)}"
            )
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
        if batch and self.mode == "multi" and int(type_index.max()) >= self.num_types:
            raise ValueError(
                f"type_index: values must be < {self.num_types} (one per type name), got {int(type_index.max())}"
            )
        if self.per_category and (category is None or len(category) != batch):
            raise ValueError(f"category: per_category=True needs {batch} category names, got {category!r}")

    def _add_pixels(
        self,
        hist: PixelHistograms,
        maps: torch.Tensor,
        masks: torch.Tensor,
        types: np.ndarray,
        weights: np.ndarray,
        regions: np.ndarray,
    ) -> None:
        weight = torch.from_numpy(weights).to(maps.device)
        for k in range(self.num_types):
            if self.mode == "single" or self.protocol == "paper":
                hist.add(k, maps[:, k], masks, weight, int(regions.sum()))
            else:
                of_type = types == k
                positive = masks & torch.from_numpy(of_type).to(masks.device)[:, None, None]
                hist.add(k, maps[:, k], positive, weight, int(regions[of_type].sum()))

    def merge(self, other: MultiTypeEvaluator) -> None:
        """Add ``other``'s images (evaluated with the same settings) into this evaluator."""
        settings = ("type_names", "protocol", "image_score", "mode", "per_category", "fpr_limit")
        different = [name for name in settings if getattr(self, name) != getattr(other, name)]
        if different:
            raise ValueError(f"cannot merge evaluators whose settings differ: {', '.join(different)}")
        self._scores.extend(other._scores)
        self._types.extend(other._types)
        self._predicted.extend(other._predicted)
        self._categories.extend(other._categories)
        for key, hist in other._hists.items():
            self._hists.setdefault(key, PixelHistograms(self.num_types)).merge(hist)

    def _empty_copy(self) -> MultiTypeEvaluator:
        return MultiTypeEvaluator(
            self.type_names, self.protocol, self.image_score, self.mode, self.per_category, self.fpr_limit
        )

    def _synced(self) -> MultiTypeEvaluator:
        """This evaluator, or (under torch.distributed with several ranks) a copy holding every rank's images."""
        if not (dist.is_available() and dist.is_initialized()) or dist.get_world_size() < 2:
            return self
        local = {
            "scores": self._scores,
            "types": self._types,
            "predicted": self._predicted,
            "categories": self._categories,
            "blocks": {key: hist.blocks.cpu().tolist() for key, hist in self._hists.items()},
        }
        parts: list[dict] = [{} for _ in range(dist.get_world_size())]
        dist.all_gather_object(parts, local)
        merged = self._empty_copy()
        for part in parts:
            merged._scores.extend(part["scores"])
            merged._types.extend(part["types"])
            merged._predicted.extend(part["predicted"])
            merged._categories.extend(part["categories"])
        nccl = dist.get_backend() == "nccl"
        device = torch.device("cuda", torch.cuda.current_device()) if nccl else torch.device("cpu")
        keys = sorted({key for part in parts for key in part["blocks"]}, key=lambda key: key or "")
        for key in keys:
            blocks = sorted({block for part in parts for block in part["blocks"].get(key, [])})
            hist = PixelHistograms(self.num_types, device=device)
            if key in self._hists:
                hist.merge(self._hists[key])
            hist.expand_to(torch.tensor(blocks, dtype=torch.int64, device=device))
            for state in (hist.counts, hist.region_mass, hist.num_regions):
                dist.all_reduce(state)
            merged._hists[key] = hist
        return merged

    def compute(self) -> dict:
        """Every metric (fractions in [0, 1], NaN where undefined, with an :class:`UndefinedMetricWarning`).

        Returns a dict: ``protocol``, ``image_score``, ``mode``, ``type_names``, ``definitions`` (how each metric
        is computed), then for all images ``counts``, ``types`` (name -> ``i_auroc``, ``ap``, ``f1max``,
        ``f1_threshold``, ``p_auroc``, ``aupro``, ``positive_images``, ``positive_pixels``, ``regions``),
        ``mean`` (NaN-skipping mean over types of each of ``METRICS``) and ``type_classification`` (mode multi,
        else None); with ``per_category`` also ``per_category``: category -> the same four entries.
        """
        state = self._synced()
        scores = np.concatenate(state._scores) if state._scores else np.zeros((0, self.num_types))
        types = np.concatenate(state._types) if state._types else np.zeros(0, dtype=np.int64)
        predicted = np.concatenate(state._predicted) if state._predicted else np.zeros(0, dtype=np.int64)
        overall = PixelHistograms(self.num_types)
        for hist in state._hists.values():
            overall.merge(hist)
        results = {
            "protocol": self.protocol,
            "image_score": self.image_score,
            "mode": self.mode,
            "type_names": list(self.type_names),
            "definitions": {
                "ap": AP_DEFINITION,
                "f1max": "max over thresholds of 2PR / (P + R)",
                "aupro": f"PRO over FPR in [0, {self.fpr_limit}], trapezoid, divided by {self.fpr_limit}; "
                "regions = 8-connected mask components",
                "pixel_bins": f"float32 grid, relative bin width 2^-{MANTISSA_BITS}",
            },
            **self._scope_results("all images", scores, types, predicted, overall),
        }
        if self.per_category:
            categories = np.asarray(state._categories)
            results["per_category"] = {
                name: self._scope_results(
                    f"category {name}", scores[categories == name], types[categories == name],
                    predicted[categories == name], hist,
                )
                for name, hist in sorted(state._hists.items())
            }
        return results

    def _scope_results(
        self, scope: str, scores: np.ndarray, types: np.ndarray, predicted: np.ndarray, hist: PixelHistograms
    ) -> dict:
        entries: dict[str, dict] = {}
        for k, name in enumerate(self.type_names):
            positive = types >= 0 if self.mode == "single" else types == k
            image = binary_image_metrics(scores[:, k], positive)
            negatives, positives, mass, num_regions = hist.type_histograms(k)
            entries[name] = {
                "i_auroc": image.auroc,
                "ap": image.ap,
                "f1max": image.f1max,
                "f1_threshold": image.f1_threshold,
                "p_auroc": roc_auc_from_counts(negatives, positives),
                "aupro": aupro_from_counts(negatives, mass, num_regions, self.fpr_limit),
                "positive_images": int(positive.sum()),
                "positive_pixels": int(positives.sum()),
                "regions": num_regions,
            }
        self._warn_undefined(scope, entries, num_images=len(types))
        anomalous = types >= 0
        classification = None
        if self.mode == "multi":
            classification = type_classification(predicted[anomalous], types[anomalous], self.num_types)
        return {
            "counts": {"images": len(types), "anomalous_images": int(anomalous.sum())},
            "types": entries,
            "mean": {metric: _nanmean([entry[metric] for entry in entries.values()]) for metric in METRICS},
            "type_classification": classification,
        }

    @staticmethod
    def _warn_undefined(scope: str, entries: dict[str, dict], num_images: int) -> None:
        causes = {
            "no positive images (image metrics)": [n for n, e in entries.items() if e["positive_images"] == 0],
            "no negative images (image metrics)": [n for n, e in entries.items() if e["positive_images"] == num_images],
            "no positive pixels (P-AUROC)": [n for n, e in entries.items() if e["positive_pixels"] == 0],
            "no mask regions (AUPRO)": [n for n, e in entries.items() if e["regions"] == 0],
        }
        for cause, names in causes.items():
            if names:
                message = f"{scope}: {cause} for type(s) {', '.join(names)}: NaN"
                warnings.warn(message, UndefinedMetricWarning, stacklevel=4)

    @staticmethod
    def flat_metrics(results: dict, prefix: str) -> dict[str, float]:
        """``{prefix}/{metric}/{type or 'mean'}`` -> value for every metric of all images, plus
        ``{prefix}/type_accuracy`` and ``{prefix}/type_macro_f1`` in mode multi (for loggers)."""
        flat = {f"{prefix}/{m}/{name}": entry[m] for name, entry in results["types"].items() for m in METRICS}
        flat.update({f"{prefix}/{m}/mean": results["mean"][m] for m in METRICS})
        classification = results["type_classification"]
        if classification is not None:
            flat[f"{prefix}/type_accuracy"] = classification["accuracy"]
            flat[f"{prefix}/type_macro_f1"] = classification["macro_f1"]
        return flat

    @staticmethod
    def f1_thresholds(results: dict) -> list[float]:
        """Per type, the image-score threshold that reaches F1-max (``inf`` where undefined: never fires)."""
        return [
            math.inf if math.isnan(entry["f1_threshold"]) else entry["f1_threshold"]
            for entry in results["types"].values()
        ]
