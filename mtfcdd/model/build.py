"""Build the network and the LightningModule from a composed config (shared by train, evaluate, export, benchmark)."""

from __future__ import annotations

from hydra.utils import instantiate
from omegaconf import DictConfig

from mtfcdd.data.realiad import DEFECT_NAMES
from mtfcdd.model.loss import MultiTypeFCDDLoss
from mtfcdd.model.module import MultiTypeFCDDModule
from mtfcdd.model.network import MultiTypeFCDD


def type_names(cfg: DictConfig) -> list[str]:
    """Heatmap channel names: one per configured defect code (mode multi) or ``["anomaly"]`` (mode single)."""
    if cfg.mode == "single":
        return ["anomaly"]
    return [DEFECT_NAMES[code] for code in cfg.data.defect_codes]


def build_network(cfg: DictConfig) -> MultiTypeFCDD:
    """The plain ``nn.Module`` of ``cfg.model`` with M = number of heatmap channels for ``cfg.mode``."""
    backbone = instantiate(cfg.model.backbone)
    return MultiTypeFCDD(
        backbone, num_types=len(type_names(cfg)), head_width=cfg.model.head_width, upsample=cfg.model.upsample
    )


def build_module(cfg: DictConfig, net: MultiTypeFCDD | None = None) -> MultiTypeFCDDModule:
    """The LightningModule of ``cfg.model`` around ``net`` (built from the config when not given)."""
    net = net if net is not None else build_network(cfg)
    return MultiTypeFCDDModule(
        net=net,
        loss=MultiTypeFCDDLoss(z_floor=cfg.model.loss.z_floor),
        optimizer=instantiate(cfg.model.optimizer),
        scheduler=instantiate(cfg.model.scheduler) if cfg.model.get("scheduler") else None,
        type_names=type_names(cfg),
        mode=cfg.mode,
        protocol=cfg.model.evaluation.protocol,
        image_score=cfg.model.evaluation.image_score,
        per_category=cfg.model.evaluation.per_category,
        channels_last=cfg.model.channels_last,
    )
