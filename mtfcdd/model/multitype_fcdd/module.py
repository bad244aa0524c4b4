"""MultiTypeFCDD's LightningModule: trains the head with the Eq. 3 loss; evaluation and calibration are
``AnomalyModule``'s."""

from __future__ import annotations

from collections.abc import Callable
from typing import Any

import torch

from mtfcdd.model.base import AnomalyModule
from mtfcdd.model.multitype_fcdd.loss import MultiTypeFCDDLoss
from mtfcdd.model.multitype_fcdd.network import map_scores
from mtfcdd.model.outputs import PipelineOutput
from mtfcdd.model.pipeline import InferencePipeline


class MultiTypeFCDDModule(AnomalyModule):
    """Trains the head of ``pipeline.net`` with the Eq. 3 loss (also logged as ``val/loss`` and ``test/loss``).

    ``optimizer``/``scheduler``: partial constructors (Hydra ``_partial_``) taking ``params``/``optimizer``;
    the other arguments are ``AnomalyModule``'s.
    """

    def __init__(
        self,
        pipeline: InferencePipeline,
        loss: MultiTypeFCDDLoss,
        optimizer: Callable[..., torch.optim.Optimizer],
        scheduler: Callable[..., Any] | None,
        type_names: list[str],
        **evaluation: Any,
    ) -> None:
        super().__init__(pipeline, type_names, **evaluation)
        self.loss = loss
        self.optimizer_factory = optimizer
        self.scheduler_factory = scheduler

    def training_step(self, batch: dict, batch_idx: int) -> torch.Tensor:
        loss = self.loss(map_scores(self.pipeline.maps(batch["image"])), batch["label"])
        self.log("train/loss", loss, prog_bar=True, batch_size=len(batch["image"]))
        return loss

    def evaluation_loss(self, out: PipelineOutput, batch: dict) -> torch.Tensor:
        return self.loss(map_scores(out.maps), batch["label"])

    def configure_optimizers(self) -> dict:
        optimizer = self.optimizer_factory(params=[p for p in self.parameters() if p.requires_grad])
        if self.scheduler_factory is None:
            return {"optimizer": optimizer}
        return {"optimizer": optimizer, "lr_scheduler": {"scheduler": self.scheduler_factory(optimizer=optimizer)}}
