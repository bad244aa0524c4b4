"""The LightningModule every model shares: evaluation, calibration, engines and predictions around the
``InferencePipeline``; a model adds how it trains (``AnomalyModule.training_step``,
``AnomalyModule.configure_optimizers``).

Batches are dicts with the named fields of ``mtfcdd.data.dataset`` (``image`` raw RGB in [0, 1], ``label``,
``mask``, ``type_index``, ``category``, ``path``). Validation, test and prediction run the pipeline (or, for test
and prediction, an ``engine`` built from it); validation also calibrates the pipeline's per-type heat range and
image thresholds and its any-defect scales and threshold (buffers that travel with checkpoints). The validation
metrics of the any-defect view use the scales of the previous validation (1 at the first).
"""

from __future__ import annotations

import logging
import math
import warnings
from abc import ABC, abstractmethod
from collections.abc import Callable, Sequence

import lightning as L
import torch

from mtfcdd.core.defect_types import ANY_DEFECT_COLOUR, RGB
from mtfcdd.metrics.evaluator import MultiTypeEvaluator, UndefinedMetricWarning
from mtfcdd.metrics.result_views import f1_thresholds, flat_metrics
from mtfcdd.model.any_defect import ANY_DEFECT_QUANTILE, fit_any_defect
from mtfcdd.model.outputs import PipelineOutput
from mtfcdd.model.pipeline import InferencePipeline

log = logging.getLogger("mtfcdd")

CONFIG_KEY = "mtfcdd_config"
"""Checkpoint entry holding the resolved run config (plain containers, loadable with ``weights_only=True``)."""

Engine = Callable[[torch.Tensor], PipelineOutput]
"""Raw images [B, 3, H, W] -> the pipeline's outputs, e.g. an engine of ``mtfcdd.inference``."""


class AnomalyModule(L.LightningModule, ABC):
    """Validates (calibrating the pipeline), tests and predicts with per-type metrics; subclasses train.

    ``engine`` (set by ``evaluate`` and ``predict``) runs the test and prediction batches instead of the pipeline
    itself (an engine compiles, folds or quantises the same pipeline); validation always runs the pipeline.
    ``channels_last`` runs the network in NHWC memory format (about 2.7x faster for the depthwise convolutions of
    EfficientNet on CPU; same values). ``type_names``/``type_colours``: name and figure colour (RGB 0-255) of each
    heatmap channel, from the run's vocabulary (None colours: the any-defect colour for every channel).
    """

    def __init__(
        self,
        pipeline: InferencePipeline,
        type_names: list[str],
        mode: str = "multi",
        protocol: str = "typed",
        per_category: bool = False,
        channels_last: bool = True,
        any_defect_quantile: float | None = ANY_DEFECT_QUANTILE,
        type_colours: Sequence[RGB] | None = None,
    ) -> None:
        super().__init__()
        if len(type_names) != pipeline.num_types:
            raise ValueError(f"{len(type_names)} type names for a network with {pipeline.num_types} channels")
        colours = [ANY_DEFECT_COLOUR] * len(type_names) if type_colours is None else [tuple(c) for c in type_colours]
        if len(colours) != len(type_names):
            raise ValueError(f"{len(colours)} type colours for {len(type_names)} type names")
        self.pipeline = pipeline.to(memory_format=torch.channels_last) if channels_last else pipeline
        self.channels_last = channels_last
        if any_defect_quantile is not None and not 0.0 < any_defect_quantile <= 1.0:
            raise ValueError(
                f"model.evaluation.any_defect_quantile={any_defect_quantile!r}: expected null or a number in (0, 1]"
            )
        self.any_defect_quantile = any_defect_quantile
        self.type_names = list(type_names)
        self.type_colours: list[RGB] = colours
        self.mode = mode
        options = {
            "type_names": self.type_names,
            "protocol": protocol,
            "image_score": pipeline.image_score,
            "mode": mode,
        }
        self.val_evaluator = MultiTypeEvaluator(**options)
        self.test_evaluator = MultiTypeEvaluator(**options, per_category=per_category)
        self.run_config: dict | None = None
        self.engine: Engine | None = None
        self.test_results: dict | None = None
        self._reset_heat_range()
        self._undefined_said: set[str] = set()

    @abstractmethod
    def training_step(self, batch: dict, batch_idx: int) -> torch.Tensor | None:
        """One training batch: the loss to minimise, or None (a model fitted without gradients)."""

    @abstractmethod
    def configure_optimizers(self) -> dict | None:
        """Lightning's optimiser (and scheduler) dict, or None (no optimiser)."""

    def evaluation_loss(self, out: PipelineOutput, batch: dict) -> torch.Tensor | None:
        """The training loss on a validation or test batch, logged as ``val/loss``/``test/loss``; None: none."""
        return None

    @property
    def net(self):
        """The plain network (backbone + what the model puts after it)."""
        return self.pipeline.net

    def on_after_batch_transfer(self, batch: dict, dataloader_idx: int) -> dict:
        if self.channels_last:
            batch["image"] = batch["image"].contiguous(memory_format=torch.channels_last)
        return batch

    def forward(self, images: torch.Tensor) -> PipelineOutput:
        return self.pipeline(images)

    def infer(self, images: torch.Tensor) -> PipelineOutput:
        """The pipeline's outputs for raw images, from ``engine`` when one is set (test and prediction only)."""
        if self.engine is None or not (self.trainer.testing or self.trainer.predicting):
            return self.pipeline(images)
        return PipelineOutput(*(part.to(images.device) for part in self.engine(images)))

    def _eval_step(self, batch: dict, evaluator: MultiTypeEvaluator, stage: str) -> PipelineOutput:
        out = self.infer(batch["image"])
        loss = self.evaluation_loss(out, batch)
        if loss is not None:
            self.log(f"{stage}/loss", loss, prog_bar=stage == "val", batch_size=len(batch["image"]), sync_dist=True)
        evaluator.update(
            out.heatmaps,
            batch["mask"],
            batch["type_index"],
            list(batch["category"]),
            scores=out.scores,
            predicted_type=out.predicted_type,
            anomaly_map=out.anomaly_map,
            anomaly_score=out.anomaly_score,
            has_mask=batch.get("has_mask"),
        )
        return out

    def validation_step(self, batch: dict, batch_idx: int) -> None:
        out = self._eval_step(batch, self.val_evaluator, "val")
        flat = out.heatmaps.detach().transpose(0, 1).flatten(1)
        self._heat_low = torch.minimum(self._heat_low, flat.amin(dim=1))
        self._heat_high = torch.maximum(self._heat_high, flat.amax(dim=1))

    def _reset_heat_range(self) -> None:
        """Per-type running min/max of validation heatmaps [M], calibrating ``heat_min``/``heat_max``."""
        self._heat_low = torch.full((self.pipeline.num_types,), math.inf, device=self.device)
        self._heat_high = torch.full((self.pipeline.num_types,), -math.inf, device=self.device)

    def on_validation_epoch_start(self) -> None:
        self.val_evaluator.reset()
        self._reset_heat_range()

    def _compute(self, evaluator: MultiTypeEvaluator) -> dict:
        """``evaluator.compute()``, each of its undefined-metric notes (e.g. no masks: no pixel metrics) logged once
        per run instead of at every validation; none during the sanity check (a couple of batches)."""
        with warnings.catch_warnings(record=True) as caught:
            warnings.simplefilter("always", UndefinedMetricWarning)
            results = evaluator.compute()
        for warning in caught:
            if not issubclass(warning.category, UndefinedMetricWarning):
                warnings.warn_explicit(warning.message, warning.category, warning.filename, warning.lineno)
            elif not self.trainer.sanity_checking and str(warning.message) not in self._undefined_said:
                self._undefined_said.add(str(warning.message))
                log.warning("%s (said once per run)", warning.message)
        return results

    def on_validation_epoch_end(self) -> None:
        results = self._compute(self.val_evaluator)
        self.log_dict(flat_metrics(results, prefix="val"), sync_dist=False)
        if self.trainer.sanity_checking:
            return
        num_types = self.pipeline.num_types
        low = self.all_gather(self._heat_low).reshape(-1, num_types).amin(dim=0)
        high = self.all_gather(self._heat_high).reshape(-1, num_types).amax(dim=0)
        if not (torch.isfinite(low).all() and torch.isfinite(high).all()):
            low, high = self.pipeline.heat_min, self.pipeline.heat_max
        self.pipeline.set_calibration(low, high, torch.tensor(f1_thresholds(results)))
        scale, threshold = fit_any_defect(*self.val_evaluator.image_table(), quantile=self.any_defect_quantile)
        self.pipeline.set_any_defect(torch.from_numpy(scale), threshold)

    def test_step(self, batch: dict, batch_idx: int) -> PipelineOutput:
        return self._eval_step(batch, self.test_evaluator, "test")

    def on_test_epoch_start(self) -> None:
        self.test_evaluator.reset()

    def on_test_epoch_end(self) -> None:
        tested = {"model": self.pipeline.model_name, "backbone": self.net.backbone.name}
        colours = {"type_colours": {name: list(c) for name, c in zip(self.type_names, self.type_colours)}}
        self.test_results = {
            **tested,
            **self._compute(self.test_evaluator),
            "type_rule": self.pipeline.type_rule,
            **colours,
        }
        self.log_dict(flat_metrics(self.test_results, prefix="test"), sync_dist=False)

    def predict_step(self, batch: dict, batch_idx: int) -> PipelineOutput:
        """The pipeline's outputs for a batch of new images (see ``PipelineOutput``)."""
        return self.infer(batch["image"])

    def on_save_checkpoint(self, checkpoint: dict) -> None:
        if self.run_config is not None:
            checkpoint[CONFIG_KEY] = self.run_config
