"""Build the network, the inference pipeline and the LightningModule from a composed run config."""

from __future__ import annotations

from hydra.utils import instantiate
from omegaconf import DictConfig

from mtfcdd.core.config import ConfigError
from mtfcdd.data.transforms import check_normalisation
from mtfcdd.core.defect_types import channel_names
from mtfcdd.model.components.backbones import backbone_normalisation
from mtfcdd.model.multitype_fcdd.loss import MultiTypeFCDDLoss
from mtfcdd.model.module import MultiTypeFCDDModule
from mtfcdd.model.multitype_fcdd.network import MultiTypeFCDD
from mtfcdd.model.patchcore.build import NAME as PATCHCORE
from mtfcdd.model.patchcore.build import build_patchcore_module, build_patchcore_network, is_patchcore
from mtfcdd.model.pipeline import InferencePipeline

MODEL_NAMES = (MultiTypeFCDD.model_name, PATCHCORE)
"""``model.name`` values: the config group's options (conf/model/*.yaml)."""


def type_names(cfg: DictConfig) -> list[str]:
    """Heatmap channel names: one per configured defect code (mode multi) or ``["anomaly"]`` (mode single)."""
    return channel_names(list(cfg.data.defect_codes), cfg.mode)


def normalisation(cfg: DictConfig) -> tuple[list[float], list[float]]:
    """(mean, std) of the network input: ``data.mean``/``data.std`` where set, else the backbone's own."""
    default_mean, default_std = backbone_normalisation(cfg.model.backbone.name)
    mean, std = list(cfg.data.mean or default_mean), list(cfg.data.std or default_std)
    check_normalisation(mean, std)
    return mean, std


def build_network(cfg: DictConfig) -> MultiTypeFCDD:
    """The plain ``nn.Module`` of ``cfg.model`` with M = number of heatmap channels for ``cfg.mode``
    (a :class:`~mtfcdd.model.patchcore.network.PatchCoreNet` for ``model=patchcore``)."""
    # checkpoints written before model.name existed hold MultiTypeFCDD
    name = cfg.model.get("name", MultiTypeFCDD.model_name)
    if name not in MODEL_NAMES:
        raise ConfigError(f"model.name={name!r} is not valid; choose one of: {', '.join(MODEL_NAMES)}")
    if is_patchcore(cfg):
        return build_patchcore_network(cfg)
    backbone = instantiate(cfg.model.backbone)
    return MultiTypeFCDD(
        backbone, num_types=len(type_names(cfg)), head_width=cfg.model.head_width, upsample=cfg.model.upsample
    )


def build_pipeline(cfg: DictConfig, net: MultiTypeFCDD | None = None) -> InferencePipeline:
    """The :class:`InferencePipeline` of the run config around ``net`` (built from the config when not given)."""
    mean, std = normalisation(cfg)
    return InferencePipeline(
        net if net is not None else build_network(cfg),
        mean,
        std,
        image_score=cfg.model.evaluation.image_score,
        type_rule=cfg.model.evaluation.type_rule,
    )


def build_module(cfg: DictConfig, pipeline: InferencePipeline | None = None) -> MultiTypeFCDDModule:
    """The LightningModule of ``cfg.model`` around ``pipeline`` (built from the config when not given)."""
    pipeline = pipeline if pipeline is not None else build_pipeline(cfg)
    if is_patchcore(cfg):
        return build_patchcore_module(cfg, pipeline)
    return MultiTypeFCDDModule(
        pipeline=pipeline,
        loss=MultiTypeFCDDLoss(z_floor=cfg.model.loss.z_floor),
        optimizer=instantiate(cfg.model.optimizer),
        scheduler=instantiate(cfg.model.scheduler) if cfg.model.get("scheduler") else None,
        type_names=type_names(cfg),
        mode=cfg.mode,
        protocol=cfg.model.evaluation.protocol,
        per_category=cfg.model.evaluation.per_category,
        any_defect_quantile=cfg.model.evaluation.any_defect_quantile,
        channels_last=cfg.model.channels_last,
    )
