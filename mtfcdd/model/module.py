"""LightningModule: training logic around the plain :class:`MultiTypeFCDD` network.

Batches are dicts with the named fields of :mod:`mtfcdd.data.dataset` (``image``, ``label``, ``mask``, ``type_index``,
``category``, ``path``). Validation and test run the same streaming evaluator; validation also calibrates the
network's per-type heatmap range and image thresholds (buffers that travel with checkpoints).
"""

from __future__ import annotations

import math
import warnings
from typing import Any, Callable

import lightning as L
import torch

from mtfcdd.metrics.evaluator import MultiTypeEvaluator, UndefinedMetricWarning
from mtfcdd.model.loss import MultiTypeFCDDLoss
from mtfcdd.inference.engines import Engine
from mtfcdd.model.network import FCDDOutput, MultiTypeFCDD

CONFIG_KEY = "mtfcdd_config"
"""Checkpoint entry holding the resolved run config (plain containers, loadable with ``weights_only=True``)."""


class MultiTypeFCDDModule(L.LightningModule):
    """Trains the head of ``net`` with the Eq. 3 loss; validates and tests with per-type metrics.

    ``inference_engine`` (set by ``mtfcdd.evaluate``) computes the test maps with a faster engine of
    :mod:`mtfcdd.inference` (same values within its precision); validation always uses the network itself.
    ``channels_last`` runs the network in NHWC memory format (about 2.7x faster for the depthwise convolutions of
    EfficientNet on CPU; same values).
    """

    def __init__(
        self,
        net: MultiTypeFCDD,
        loss: MultiTypeFCDDLoss,
        optimizer: Callable[..., torch.optim.Optimizer],
        scheduler: Callable[..., Any] | None,
        type_names: list[str],
        mode: str = "multi",
        protocol: str = "typed",
        image_score: str = "max",
        per_category: bool = False,
        channels_last: bool = True,
    ) -> None:
        super().__init__()
        if len(type_names) != net.num_types:
            raise ValueError(f"{len(type_names)} type names for a network with {net.num_types} channels")
        self.net = net.to(memory_format=torch.channels_last) if channels_last else net
        self.channels_last = channels_last
        self.loss = loss
        self.optimizer_factory = optimizer
        self.scheduler_factory = scheduler
        self.type_names = list(type_names)
        self.evaluator_options = dict(
            type_names=self.type_names, protocol=protocol, image_score=image_score, mode=mode
        )
        self.per_category = per_category
        self.val_evaluator = MultiTypeEvaluator(**self.evaluator_options)
        self.test_evaluator = MultiTypeEvaluator(**self.evaluator_options, per_category=per_category)
        self.run_config: dict | None = None
        self.inference_engine: Engine | None = None
        self.test_results: dict | None = None
        self._reset_heat_range()

    def on_after_batch_transfer(self, batch: dict, dataloader_idx: int) -> dict:
        if self.channels_last:
            batch["image"] = batch["image"].contiguous(memory_format=torch.channels_last)
        return batch

    def forward(self, images: torch.Tensor):
        return self.net(images)

    def training_step(self, batch: dict, batch_idx: int) -> torch.Tensor:
        out = self.net(batch["image"], upsample=False)
        loss = self.loss(out.scores, batch["label"])
        self.log("train/loss", loss, prog_bar=True, batch_size=len(batch["image"]))
        return loss

    def _eval_forward(self, images: torch.Tensor) -> FCDDOutput:
        """The network's forward, or the same maps from ``inference_engine`` (tests) when one is set."""
        if self.inference_engine is None or not self.trainer.testing:
            return self.net(images)
        maps = self.inference_engine.maps(images).to(images.device)
        return FCDDOutput(maps, self.net.upsample_maps(maps, images.shape[-2:]), maps.mean(dim=(2, 3)))

    def _eval_step(self, batch: dict, evaluator: MultiTypeEvaluator, stage: str):
        out = self._eval_forward(batch["image"])
        loss = self.loss(out.scores, batch["label"])
        self.log(f"{stage}/loss", loss, prog_bar=stage == "val", batch_size=len(batch["image"]), sync_dist=True)
        evaluator.update(out.heatmaps, batch["mask"], batch["type_index"], list(batch["category"]))
        return out

    def validation_step(self, batch: dict, batch_idx: int) -> None:
        out = self._eval_step(batch, self.val_evaluator, "val")
        flat = out.heatmaps.detach().transpose(0, 1).flatten(1)
        self._heat_low = torch.minimum(self._heat_low, flat.amin(dim=1))
        self._heat_high = torch.maximum(self._heat_high, flat.amax(dim=1))

    def _reset_heat_range(self) -> None:
        """Per-type running min/max of validation heatmaps [M], calibrating ``heat_min``/``heat_max``."""
        self._heat_low = torch.full((self.net.num_types,), math.inf, device=self.device)
        self._heat_high = torch.full((self.net.num_types,), -math.inf, device=self.device)

    def on_validation_epoch_start(self) -> None:
        self.val_evaluator.reset()
        self._reset_heat_range()

    def on_validation_epoch_end(self) -> None:
        with warnings.catch_warnings():
            if self.trainer.sanity_checking:  # a couple of batches: undefined metrics are expected there
                warnings.simplefilter("ignore", UndefinedMetricWarning)
            results = self.val_evaluator.compute()
        self.log_dict(self.val_evaluator.flat_metrics(results, prefix="val"), sync_dist=False)
        if self.trainer.sanity_checking:
            return
        low = self.all_gather(self._heat_low).reshape(-1, self.net.num_types).amin(dim=0)
        high = self.all_gather(self._heat_high).reshape(-1, self.net.num_types).amax(dim=0)
        if torch.isfinite(low).all() and torch.isfinite(high).all():
            self.net.heat_min.copy_(low)
            self.net.heat_max.copy_(high)
        thresholds = self.val_evaluator.f1_thresholds(results)
        self.net.image_threshold.copy_(torch.as_tensor(thresholds, dtype=self.net.image_threshold.dtype))

    def test_step(self, batch: dict, batch_idx: int) -> None:
        self._eval_step(batch, self.test_evaluator, "test")

    def on_test_epoch_start(self) -> None:
        self.test_evaluator.reset()

    def on_test_epoch_end(self) -> None:
        self.test_results = self.test_evaluator.compute()
        self.log_dict(self.test_evaluator.flat_metrics(self.test_results, prefix="test"), sync_dist=False)

    def predict_step(self, batch: dict, batch_idx: int) -> dict:
        """Per image: calibrated heatmaps [B, M, H, W] in [0, 1], image scores [B, M] and per-type decisions."""
        out = self.net(batch["image"])
        reduce = torch.amax if self.evaluator_options["image_score"] == "max" else torch.mean
        scores = reduce(out.heatmaps, dim=(2, 3))  # the score the thresholds were calibrated on
        return {
            "path": batch["path"],
            "heatmaps": self.net.normalise_heatmaps(out.heatmaps),
            "scores": scores,
            "decisions": scores >= self.net.image_threshold,
        }

    def configure_optimizers(self) -> dict:
        optimizer = self.optimizer_factory(params=[p for p in self.parameters() if p.requires_grad])
        if self.scheduler_factory is None:
            return {"optimizer": optimizer}
        return {"optimizer": optimizer, "lr_scheduler": {"scheduler": self.scheduler_factory(optimizer=optimizer)}}

    def on_save_checkpoint(self, checkpoint: dict) -> None:
        if self.run_config is not None:
            checkpoint[CONFIG_KEY] = self.run_config
