"""Build MultiTypeFCDD's network and LightningModule from a composed run config (``model=mtfcdd``)."""

from __future__ import annotations

from hydra.utils import instantiate
from omegaconf import DictConfig

from mtfcdd.model.components.config import type_colours, type_names
from mtfcdd.model.multitype_fcdd.loss import MultiTypeFCDDLoss
from mtfcdd.model.multitype_fcdd.module import MultiTypeFCDDModule
from mtfcdd.model.multitype_fcdd.network import MultiTypeFCDD
from mtfcdd.model.pipeline import InferencePipeline


def build_network(cfg: DictConfig) -> MultiTypeFCDD:
    """The ``MultiTypeFCDD`` of ``cfg.model`` with M = number of heatmap channels for ``cfg.mode``."""
    backbone = instantiate(cfg.model.backbone)
    return MultiTypeFCDD(
        backbone, num_types=len(type_names(cfg)), head_width=cfg.model.head_width, upsample=cfg.model.upsample
    )


def build_module(cfg: DictConfig, pipeline: InferencePipeline) -> MultiTypeFCDDModule:
    """The ``MultiTypeFCDDModule`` of ``cfg.model`` around ``pipeline``."""
    return MultiTypeFCDDModule(
        pipeline=pipeline,
        loss=MultiTypeFCDDLoss(z_floor=cfg.model.loss.z_floor),
        optimizer=instantiate(cfg.model.optimizer),
        scheduler=instantiate(cfg.model.scheduler) if cfg.model.get("scheduler") else None,
        type_names=type_names(cfg),
        type_colours=type_colours(cfg),
        mode=cfg.mode,
        protocol=cfg.model.evaluation.protocol,
        per_category=cfg.model.evaluation.per_category,
        any_defect_quantile=cfg.model.evaluation.any_defect_quantile,
        channels_last=cfg.model.channels_last,
    )
