"""Build PatchCore's network and LightningModule from a composed run config (``model=patchcore``)."""

from __future__ import annotations

import logging

from hydra.utils import instantiate
from omegaconf import DictConfig, OmegaConf

from mtfcdd.core.config import CONFIG_DIR, ConfigError
from mtfcdd.model.patchcore.module import PatchCoreModule
from mtfcdd.model.patchcore.network import PatchCoreNet
from mtfcdd.model.pipeline import InferencePipeline

log = logging.getLogger("mtfcdd.patchcore")

NAME = PatchCoreNet.model_name
"""``model.name`` of PatchCore's config."""


def is_patchcore(cfg: DictConfig) -> bool:
    """Whether the run config's model is PatchCore."""
    return cfg.model.get("name") == NAME


def _model_keys(option: str) -> set[str]:
    """Top-level keys of ``conf/model/<option>.yaml``'s model node."""
    node = OmegaConf.load(CONFIG_DIR / "model" / f"{option}.yaml")
    node = node.get("model", node) if option == NAME else node  # patchcore.yaml is a @package _global_ config
    return set(node) - {"defaults"}


def check_config(cfg: DictConfig) -> None:
    """Mode ``single`` and known ``model.*`` keys. A shared experiment's MultiTypeFCDD keys (e.g. ``head_width``) are
    ignored with a log line; any other key is a typo and fails."""
    if cfg.mode != "single":
        raise ConfigError(f"mode={cfg.mode!r} is not valid with model=patchcore: it has one any-defect channel, set mode=single")
    own, fcdd = _model_keys(NAME), _model_keys("mtfcdd")
    unknown = sorted(set(cfg.model) - own - fcdd)
    if unknown:
        raise ConfigError(f"model.{unknown[0]} is not a key of model=patchcore; its keys: {', '.join(sorted(own))}")
    ignored = sorted(set(cfg.model) & (fcdd - own))
    if ignored:
        log.info("model=patchcore ignores the MultiTypeFCDD keys %s", ", ".join(f"model.{k}" for k in ignored))


def build_patchcore_network(cfg: DictConfig) -> PatchCoreNet:
    """The :class:`PatchCoreNet` of ``cfg.model`` (empty memory bank; fitting or a checkpoint fills it)."""
    check_config(cfg)
    return PatchCoreNet(instantiate(cfg.model.backbone), blur_sigma=cfg.model.blur_sigma)


def build_patchcore_module(cfg: DictConfig, pipeline: InferencePipeline) -> PatchCoreModule:
    """The :class:`PatchCoreModule` of ``cfg.model`` around ``pipeline`` (built, and the config checked, by
    :func:`build_patchcore_network`)."""
    return PatchCoreModule(
        pipeline,
        coreset_ratio=cfg.model.coreset_ratio,
        bank=cfg.model.bank,
        max_patches_per_category=cfg.model.max_patches_per_category,
        projection_dim=cfg.model.projection_dim,
        seed=cfg.seed,
        protocol=cfg.model.evaluation.protocol,
        per_category=cfg.model.evaluation.per_category,
        channels_last=cfg.model.channels_last,
    )
