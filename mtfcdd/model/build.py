"""Build the network, the inference pipeline and the LightningModule of a composed run config: the model of
``model.name`` (see ``mtfcdd.model.registry``)."""

from __future__ import annotations

from omegaconf import DictConfig
from torch import nn

from mtfcdd.model.base import AnomalyModule
from mtfcdd.model.components.config import normalisation
from mtfcdd.model.pipeline import InferencePipeline
from mtfcdd.model.registry import model_entry


def build_network(cfg: DictConfig) -> nn.Module:
    """The plain ``nn.Module`` of ``cfg.model`` with M = number of heatmap channels for ``cfg.mode`` (e.g. a
    ``MultiTypeFCDD``)."""
    return model_entry(cfg).build_network(cfg)


def build_pipeline(cfg: DictConfig, net: nn.Module | None = None) -> InferencePipeline:
    """The ``InferencePipeline`` of the run config around ``net`` (built from the config when not given)."""
    mean, std = normalisation(cfg)
    return InferencePipeline(
        net if net is not None else build_network(cfg),
        mean,
        std,
        image_score=cfg.model.evaluation.image_score,
        type_rule=cfg.model.evaluation.type_rule,
    )


def build_module(cfg: DictConfig, pipeline: InferencePipeline | None = None) -> AnomalyModule:
    """The LightningModule of ``cfg.model`` around ``pipeline`` (built from the config when not given)."""
    pipeline = pipeline if pipeline is not None else build_pipeline(cfg)
    return model_entry(cfg).build_module(cfg, pipeline)
