"""Per-type evaluation of multi-type heatmaps in bounded memory (image, pixel and region metrics).

Image level (exact; scores are few, all kept): per type k, I-AUROC, AP (scikit-learn's step sum) and F1-max of the
image scores ``max`` (the authors' evaluation) or ``mean`` (Eq. 2) of channel k; positives = test images of type k,
negatives = every other test image. In mode ``single`` (M = 1) the positives are all defect images.

Pixel level (streamed into fixed-grid histograms, see ``mtfcdd.metrics.pixel_curves``): P-AUROC and AUPRO
(FPR up to 0.3, divided by 0.3) of channel k under one of two protocols:

- ``paper``: the authors' demo code. Positive pixels = every defect pixel, whatever its type; AUPRO regions = the
  8-connected regions of every defect image's mask.
- ``typed``: one-vs-rest. Positive pixels and regions = those of type-k images only; other defects' pixels count
  as negatives, so a channel that lights up on the wrong type is penalised.

In mode ``single`` both protocols are the same: the one channel against every defect pixel. A defective image
without a known mask (``has_mask`` False: a folder data set's image without a mask file) counts in the image
metrics only; a type none of whose images has a mask gets NaN pixel metrics (no positive pixels).

Type classification (mode multi): for each anomalous test image, the type the inference pipeline predicted (by
default the argmax over the M image scores); accuracy, macro-F1 and the M x M confusion matrix (rows = true type).

The evaluator is a ``torchmetrics.Metric`` whose states are concatenations (image scores) and sparse histogram rows
that add up (pixel counts, region mass, region counts), so evaluators merge exactly
(``MultiTypeEvaluator.merge``) and torchmetrics gathers the states of every ``torch.distributed`` rank in
``MultiTypeEvaluator.compute``. Each rank must see each test image once (no padded duplicates).
"""

from __future__ import annotations

import math
import warnings
from collections.abc import Sequence

import numpy as np
import torch
from torchmetrics import Metric
from torchmetrics.utilities import dim_zero_cat

from mtfcdd.core.config import check_choice
from mtfcdd.core.defect_types import MODES
from mtfcdd.metrics.any_defect_channel import BARE_MAP_SCORES, bare_map_scores, with_any_defect
from mtfcdd.metrics.aupro import AUPRO_FPR_LIMIT, aupro_from_counts, region_weights
from mtfcdd.metrics.batch_checks import check_batch, check_normal_masks
from mtfcdd.metrics.image_metrics import AP_DEFINITION, binary_image_metrics, type_classification
from mtfcdd.metrics.pixel_curves import (
    BLOCK_SIZE,
    MANTISSA_BITS,
    NUM_BLOCKS,
    HistogramRows,
    add_rows,
    fold_rows,
    histogram_rows,
    roc_auc_from_counts,
    type_histograms,
)
from mtfcdd.metrics.scopes import NAME_BYTES, category_code, decode_name, encode_name

METRICS = ("i_auroc", "ap", "f1max", "p_auroc", "aupro")
"""Metric keys of every type entry (fractions in [0, 1])."""
PROTOCOLS = ("paper", "typed")
ANY_DEFECT = "any_defect"
"""Results key (and logger key part) of the any-defect view (``mtfcdd.model.any_defect``)."""
_HIST = ("hist_keys", "hist_counts", "hist_mass")
_STATES = ("scores", "types", "predicted", "image_scopes", "scope_names", *_HIST, "region_scopes", "region_counts")


class UndefinedMetricWarning(UserWarning):
    """A metric is NaN because its positives (or negatives) are absent from the evaluated images."""


def _nanmean(values: Sequence[float]) -> float:
    finite = [v for v in values if not math.isnan(v)]
    return float(np.mean(finite)) if finite else float("nan")


def _rows(state: list[torch.Tensor] | torch.Tensor) -> torch.Tensor:
    """A cat state as one tensor: its local list (one folded entry) or, after a cross-rank sync, the ranks' rows."""
    return dim_zero_cat(state) if isinstance(state, list) else state


class MultiTypeEvaluator(Metric):
    """Streams heatmaps and masks batch by batch; ``compute`` returns every metric per type and their mean.

    A ``torchmetrics.Metric``: every state is a ``cat`` state (below), so under ``torch.distributed`` ``compute``
    gathers the states of all ranks by itself (torchmetrics' sync) and sums the histogram rows of equal keys.
    States: per image ``scores`` float64 [N, M], ``types`` and ``predicted`` (types) int64 [N] and ``image_scopes``
    int64 [N] (category codes);
    the pixel histograms as ``mtfcdd.metrics.pixel_curves.HistogramRows`` (``hist_keys``, ``hist_counts``,
    ``hist_mass``); regions per scope and type (``region_scopes`` int64 [S], ``region_counts`` int64 [S, M]); the
    names of the scopes' categories (``scope_names`` uint8 [S, NAME_BYTES]). Locally each list state holds one
    folded tensor, updated in place.

    Memory: 24 + 8 x M bytes per image; pixel histograms take at most a few MB per type and scope (one scope, or one
    per category with ``per_category``), independent of the number of images.

    Args:
        type_names: one name per heatmap channel (M names; M = 1 in mode single).
        protocol: ``"paper"`` or ``"typed"`` (module docstring).
        image_score: ``"max"`` or ``"mean"`` of each channel's map.
        mode: ``"multi"`` (channel k = defect type k, ``type_index`` indexes ``type_names``) or ``"single"``
            (one channel against any defect).
        per_category: also report every metric per object category (names of at most NAME_BYTES UTF-8 bytes).
        fpr_limit: AUPRO's integration limit (0.3).
    """

    is_differentiable = False
    higher_is_better = True
    full_state_update = False

    def __init__(
        self,
        type_names: Sequence[str],
        protocol: str = "paper",
        image_score: str = "max",
        mode: str = "multi",
        per_category: bool = False,
        fpr_limit: float = AUPRO_FPR_LIMIT,
    ) -> None:
        super().__init__(compute_with_cache=False)
        self.type_names = list(type_names)
        for key, value, choices in (
            ("protocol", protocol, PROTOCOLS),
            ("image_score", image_score, BARE_MAP_SCORES),
            ("mode", mode, MODES),
        ):
            check_choice(key, value, choices)
        self.protocol, self.image_score, self.mode = protocol, image_score, mode
        if not self.type_names or len(set(self.type_names)) != len(self.type_names):
            raise ValueError(f"type_names={self.type_names!r}: expected distinct names, one per heatmap channel")
        if self.mode == "single" and len(self.type_names) != 1:
            raise ValueError(f"mode='single' evaluates one channel, got type_names={self.type_names!r}")
        if not 0.0 < fpr_limit <= 1.0:
            raise ValueError(f"fpr_limit={fpr_limit}: expected a value in (0, 1]")
        self.per_category = per_category
        self.fpr_limit = fpr_limit
        for name in _STATES:
            self.add_state(name, default=[], dist_reduce_fx="cat")
        self._add_empty_rows()

    @property
    def num_types(self) -> int:
        """M, the number of heatmap channels."""
        return len(self.type_names)

    def _add_empty_rows(self) -> None:
        """One zero-row tensor per state, so that every rank syncs tensors of the same rank (dimensions) and dtype."""
        m, device = self.num_types + 1, self.device  # + the any-defect channel
        empty = {
            "scores": torch.zeros(0, m, dtype=torch.float64),
            "types": torch.zeros(0, dtype=torch.int64),
            "predicted": torch.zeros(0, dtype=torch.int64),
            "image_scopes": torch.zeros(0, dtype=torch.int64),
            "scope_names": torch.zeros(0, NAME_BYTES, dtype=torch.uint8),
            "hist_keys": torch.zeros(0, dtype=torch.int64),
            "hist_counts": torch.zeros(0, m, 2, BLOCK_SIZE, dtype=torch.int64),
            "hist_mass": torch.zeros(0, m, BLOCK_SIZE, dtype=torch.float64),
            "region_scopes": torch.zeros(0, dtype=torch.int64),
            "region_counts": torch.zeros(0, m, dtype=torch.int64),
        }
        for name in _STATES:
            getattr(self, name).append(empty[name].to(device))

    def reset(self) -> None:
        """Forget every image."""
        super().reset()
        self._add_empty_rows()

    def _append(self, name: str, rows: torch.Tensor) -> None:
        state = getattr(self, name)
        state[0] = torch.cat([state[0], rows.to(state[0].device)])

    def _add_to(self, names: tuple[str, ...], new: tuple[torch.Tensor, ...]) -> None:
        folded = add_rows(tuple(getattr(self, name)[0] for name in names), new)
        for name, value in zip(names, folded):
            getattr(self, name)[0] = value

    def update(
        self,
        maps: torch.Tensor,
        masks: torch.Tensor,
        type_index: torch.Tensor,
        category: Sequence[str] | None = None,
        scores: torch.Tensor | None = None,
        predicted_type: torch.Tensor | None = None,
        anomaly_map: torch.Tensor | None = None,
        anomaly_score: torch.Tensor | None = None,
        has_mask: torch.Tensor | None = None,
    ) -> None:
        """Add one batch.

        Args:
            maps: float [B, M, H, W] heatmaps at mask resolution (any sign, any float dtype, any device).
            masks: bool [B, H, W] ground truth (all False for normal images).
            type_index: int [B]: -1 for normal images, else the index of the image's type in ``type_names``
                (mode single: any index >= 0 means defective).
            category: B object category names (required with ``per_category``).
            scores: float [B, M] image scores as the inference pipeline computed them; None: each channel's
                ``image_score`` (max or mean) of ``maps``.
            predicted_type: int [B] the pipeline's predicted type per image; None: the argmax of ``scores``.
            anomaly_map: the pipeline's any-defect map [B, H, W]; None: the maximum over the channels of ``maps``
                (no scales: the unscaled any-defect view).
            anomaly_score: the pipeline's any-defect image score [B]; None: the maximum over the channels of
                ``scores`` (no scales, as ``anomaly_map``).
            has_mask: bool [B], False for a defective image whose mask is unknown (its ``masks`` entry is empty):
                it counts in the image metrics only, its pixels in no pixel or region metric. None: every image's
                mask is known.
        """
        maps = maps.detach()
        check_batch(maps, masks, type_index, category, self.num_types, self.mode, self.per_category)
        masks = masks.detach().to(maps.device)
        masks = masks if masks.dtype == torch.bool else masks != 0
        types = type_index.detach().cpu().long().numpy()
        masks_cpu = masks.cpu().numpy()
        check_normal_masks(types, masks_cpu)
        scores = bare_map_scores(maps, self.image_score) if scores is None else scores.detach()
        if tuple(scores.shape) != tuple(maps.shape[:2]):
            raise ValueError(f"scores: expected [B, M] = {tuple(maps.shape[:2])}, got {tuple(scores.shape)}")
        scores = scores.double()
        if bool(scores.isnan().any()):  # max and mean propagate NaN: no separate pass over the pixels
            raise ValueError("maps: contain NaN; expected finite heatmaps (did training diverge?)")
        predicted = scores.argmax(dim=1) if predicted_type is None else predicted_type.detach().long()
        if tuple(predicted.shape) != (len(types),):
            raise ValueError(f"predicted_type: expected [{len(types)}], got {tuple(predicted.shape)}")
        maps, scores = with_any_defect(maps, scores, anomaly_map, anomaly_score)
        pixels = np.ones(len(types), bool) if has_mask is None else has_mask.detach().cpu().numpy().astype(bool)
        if pixels.shape != types.shape:
            raise ValueError(f"has_mask: expected a bool tensor [{len(types)}], got {tuple(has_mask.shape)}")
        codes = [category_code(name) for name in category] if self.per_category else [0] * len(types)
        names = {code: encode_name(name) for code, name in zip(codes, category)} if self.per_category else {}
        self._append("scores", scores)
        self._append("types", torch.from_numpy(types))
        self._append("predicted", predicted)
        self._append("image_scopes", torch.tensor(codes, dtype=torch.int64))
        weights, regions = region_weights(masks_cpu)
        of_type = self._positive_types(types)  # bool [B, M]
        region_counts = torch.from_numpy((regions[:, None] * of_type).astype(np.int64))  # [B, M]
        positive = masks[:, None] & torch.from_numpy(of_type).to(maps.device)[:, :, None, None]
        weight = torch.from_numpy(weights).to(maps.device)
        for code in dict.fromkeys(codes):
            rows = [i for i, c in enumerate(codes) if c == code and pixels[i]]
            if len(rows) == len(codes):
                part = (maps, positive, weight)
            else:
                index = torch.tensor(rows, dtype=torch.int64, device=maps.device)
                part = (maps[index], positive[index], weight[index])
            self._add_to(("hist_keys", "hist_counts", "hist_mass"), histogram_rows(*part, scope=code))
            counts = region_counts[rows].sum(dim=0, keepdim=True)
            self._add_to(("region_scopes", "region_counts"), (torch.tensor([code]), counts))
            if self.per_category and code not in self._local_codes():
                self._append("scope_names", names[code][None])

    def _positive_types(self, types: np.ndarray) -> np.ndarray:
        """Bool [B, M + 1]: whether an image's defect pixels are positive for channel k (module docstring); the
        any-defect channel's positives are every defect pixel."""
        if self.mode == "single" or self.protocol == "paper":
            return np.ones((len(types), self.num_types + 1), dtype=bool)
        return np.concatenate([types[:, None] == np.arange(self.num_types)[None, :], np.ones((len(types), 1), bool)], 1)

    def _local_codes(self) -> set[int]:
        return {category_code(decode_name(row)) for row in self.scope_names[0].cpu()}

    def merge(self, other: MultiTypeEvaluator) -> None:
        """Add ``other``'s images (evaluated with the same settings) into this evaluator."""
        settings = ("type_names", "protocol", "image_score", "mode", "per_category", "fpr_limit")
        different = [name for name in settings if getattr(self, name) != getattr(other, name)]
        if different:
            raise ValueError(f"cannot merge evaluators whose settings differ: {', '.join(different)}")
        for name in ("scores", "types", "predicted", "image_scopes"):
            self._append(name, _rows(getattr(other, name)))
        self._add_to(("hist_keys", "hist_counts", "hist_mass"), tuple(_rows(getattr(other, n)) for n in _HIST))
        self._add_to(("region_scopes", "region_counts"), (_rows(other.region_scopes), _rows(other.region_counts)))
        known = self._local_codes()
        for row in _rows(other.scope_names):
            if category_code(decode_name(row)) not in known:
                self._append("scope_names", row[None])

    def compute(self) -> dict:
        """Every metric (fractions in [0, 1], NaN where undefined, with an ``UndefinedMetricWarning``).

        Returns a dict: ``protocol``, ``image_score``, ``mode``, ``type_names``, ``definitions`` (how each metric
        is computed), then for all images ``counts``, ``types`` (name -> ``i_auroc``, ``ap``, ``f1max``,
        ``f1_threshold``, ``p_auroc``, ``aupro``, ``positive_images``, ``positive_pixels``, ``regions``),
        ``mean`` (NaN-skipping mean over types of each of ``METRICS``), ``type_classification`` (mode multi,
        else None) and ``any_defect`` (the any-defect view, an entry like a type's, positives = every defect); with
        ``per_category`` also ``per_category``: category -> the same five entries.
        """
        scores = _rows(self.scores).cpu().numpy()
        types = _rows(self.types).cpu().numpy()
        predicted = _rows(self.predicted).cpu().numpy()
        image_scopes = _rows(self.image_scopes).cpu().numpy()
        keys, counts, mass = fold_rows(*(_rows(getattr(self, name)) for name in _HIST))
        region_scopes, region_counts = fold_rows(_rows(self.region_scopes), _rows(self.region_counts))
        regions = dict(zip(region_scopes.tolist(), region_counts.cpu().numpy()))
        overall = HistogramRows(*fold_rows(keys % NUM_BLOCKS, counts, mass))
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
            **self._scope_results(
                "all images",
                scores,
                types,
                predicted,
                overall,
                sum(regions.values(), np.zeros(self.num_types + 1, np.int64)),
            ),
        }
        if self.per_category:
            names = {category_code(name): name for name in map(decode_name, _rows(self.scope_names).cpu())}
            scope_of_row = keys // NUM_BLOCKS
            results["per_category"] = {}
            for code, name in sorted(names.items(), key=lambda item: item[1]):
                rows = scope_of_row == code
                hist = HistogramRows(keys[rows], counts[rows], mass[rows])
                chosen = image_scopes == code
                results["per_category"][name] = self._scope_results(
                    f"category {name}", scores[chosen], types[chosen], predicted[chosen], hist, regions[code]
                )
        return results

    def _scope_results(
        self,
        scope: str,
        scores: np.ndarray,
        types: np.ndarray,
        predicted: np.ndarray,
        hist: HistogramRows,
        num_regions: np.ndarray,
    ) -> dict:
        def entry(k: int, positive: np.ndarray) -> dict:
            image = binary_image_metrics(scores[:, k], positive)
            negatives, positives, mass = type_histograms(hist, k)
            return {
                "i_auroc": image.auroc,
                "ap": image.ap,
                "f1max": image.f1max,
                "f1_threshold": image.f1_threshold,
                "p_auroc": roc_auc_from_counts(negatives, positives),
                "aupro": aupro_from_counts(negatives, mass, int(num_regions[k]), self.fpr_limit),
                "positive_images": int(positive.sum()),
                "positive_pixels": int(positives.sum()),
                "regions": int(num_regions[k]),
            }

        entries = {
            name: entry(k, types >= 0 if self.mode == "single" else types == k)
            for k, name in enumerate(self.type_names)
        }
        any_defect = entry(self.num_types, types >= 0)
        self._warn_undefined(scope, {**entries, ANY_DEFECT: any_defect}, num_images=len(types))
        anomalous = types >= 0
        classification = None
        if self.mode == "multi":
            classification = type_classification(predicted[anomalous], types[anomalous], self.num_types)
        return {
            "counts": {"images": len(types), "anomalous_images": int(anomalous.sum())},
            "types": entries,
            "mean": {metric: _nanmean([entry[metric] for entry in entries.values()]) for metric in METRICS},
            "type_classification": classification,
            "any_defect": any_defect,
        }

    def image_table(self) -> tuple[np.ndarray, np.ndarray]:
        """(per-type image scores float64 [N, M], types int64 [N], -1 = normal) of every image seen, all ranks'."""
        with self.sync_context(dist_sync_fn=self.dist_sync_fn, should_sync=self._to_sync):
            return _rows(self.scores).cpu().numpy()[:, : self.num_types], _rows(self.types).cpu().numpy()

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
                warnings.warn(message, UndefinedMetricWarning, stacklevel=5)  # the caller of compute()
