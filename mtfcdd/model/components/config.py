"""What every model reads from a composed run config: its heatmap channels and its input normalisation."""

from __future__ import annotations

from omegaconf import DictConfig

from mtfcdd.core.defect_types import RGB, vocabulary_of
from mtfcdd.data.transforms import check_normalisation
from mtfcdd.model.components.backbones import backbone_normalisation


def type_names(cfg: DictConfig) -> list[str]:
    """Heatmap channel names: one per defect type of the run's vocabulary (mode multi) or ``["anomaly"]`` (mode
    single)."""
    return vocabulary_of(cfg).channel_names(cfg.mode)


def type_colours(cfg: DictConfig) -> list[RGB]:
    """Heatmap channel colours (RGB 0-255), one per channel of ``type_names``."""
    return vocabulary_of(cfg).channel_colours(cfg.mode)


def normalisation(cfg: DictConfig) -> tuple[list[float], list[float]]:
    """(mean, std) of the network input: ``data.mean``/``data.std`` where set, else the backbone's own."""
    default_mean, default_std = backbone_normalisation(cfg.model.backbone.name)
    mean, std = list(cfg.data.mean or default_mean), list(cfg.data.std or default_std)
    check_normalisation(mean, std)
    return mean, std
