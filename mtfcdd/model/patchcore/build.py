"""Build PatchCore's network and LightningModule from a composed run config (``model=patchcore``)."""

from __future__ import annotations

import logging
from pathlib import Path

from hydra.utils import instantiate
from omegaconf import DictConfig, OmegaConf

from mtfcdd.core.config import CONFIG_DIR, ConfigError
from mtfcdd.model.patchcore.module import PatchCoreModule
from mtfcdd.model.patchcore.network import PatchCoreNet
from mtfcdd.model.pipeline import InferencePipeline

log = logging.getLogger("mtfcdd.patchcore")

GLOBAL_PACKAGE = "# @package _global_"
"""First line of a model config that sets keys outside ``model`` (patchcore.yaml: ``mode``, ``data``)."""


def _model_keys(path: Path) -> set[str]:
    """Top-level keys of the model node of ``conf/model/<name>.yaml``."""
    node = OmegaConf.load(path)
    node = node.model if path.read_text(encoding="utf-8").startswith(GLOBAL_PACKAGE) else node
    return set(node) - {"defaults"}


def check_config(cfg: DictConfig) -> None:
    """Known ``model.*`` keys. The keys of another model's config (e.g. MultiTypeFCDD's ``head_width`` from a shared
    experiment) are ignored with a log line; any other key is a typo and fails."""
    keys = {path.stem: _model_keys(path) for path in sorted((CONFIG_DIR / "model").glob("*.yaml"))}
    own = keys.pop(PatchCoreNet.model_name)
    others = set().union(*keys.values())
    unknown = sorted(set(cfg.model) - own - others)
    if unknown:
        raise ConfigError(f"model.{unknown[0]} is not a key of model=patchcore; its keys: {', '.join(sorted(own))}")
    ignored = sorted(set(cfg.model) & (others - own))
    if ignored:
        log.info("model=patchcore ignores the other models' keys %s", ", ".join(f"model.{k}" for k in ignored))


def build_network(cfg: DictConfig) -> PatchCoreNet:
    """The ``PatchCoreNet`` of ``cfg.model`` (empty memory bank; fitting or a checkpoint fills it)."""
    check_config(cfg)
    return PatchCoreNet(instantiate(cfg.model.backbone), blur_sigma=cfg.model.blur_sigma)


def build_module(cfg: DictConfig, pipeline: InferencePipeline) -> PatchCoreModule:
    """The ``PatchCoreModule`` of ``cfg.model`` around ``pipeline`` (built, and the config checked, by
    ``build_network``)."""
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
