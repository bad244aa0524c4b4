"""The models a run can build, found by ``model.name``: each one's display title, builders and the modes it runs in.

A new model is a package under ``mtfcdd/model/`` (a network with a ``model_name``, an
``AnomalyModule`` subclass, their builders), its config ``conf/model/<name>.yaml`` and one
entry in ``MODELS``.
"""

from __future__ import annotations

from collections.abc import Callable
from dataclasses import dataclass

from omegaconf import DictConfig
from torch import nn

from mtfcdd.core.config import ConfigError
from mtfcdd.core.defect_types import MODES
from mtfcdd.model.base import AnomalyModule
from mtfcdd.model.multitype_fcdd import build as multitype_fcdd_build
from mtfcdd.model.multitype_fcdd.network import MultiTypeFCDD
from mtfcdd.model.patchcore import build as patchcore_build
from mtfcdd.model.patchcore.network import PatchCoreNet
from mtfcdd.model.pipeline import InferencePipeline


@dataclass(frozen=True)
class ModelEntry:
    """One model.

    title: its display name (results.md, the results tables, export metadata, the run's parameter line).
    build_network: run config -> the plain network (fails with a ``ConfigError`` on a key the model does not know).
    build_module: (run config, the ``InferencePipeline`` around that network) -> its LightningModule.
    modes: the ``mode`` values it runs in (of ``mtfcdd.core.defect_types.MODES``).
    """

    title: str
    build_network: Callable[[DictConfig], nn.Module]
    build_module: Callable[[DictConfig, InferencePipeline], AnomalyModule]
    modes: tuple[str, ...] = MODES


MODELS: dict[str, ModelEntry] = {
    MultiTypeFCDD.model_name: ModelEntry(
        "MultiTypeFCDD", multitype_fcdd_build.build_network, multitype_fcdd_build.build_module
    ),
    PatchCoreNet.model_name: ModelEntry(
        "PatchCore", patchcore_build.build_network, patchcore_build.build_module, modes=("single",)
    ),
}
"""``model.name`` (the network's ``model_name``, the config option ``conf/model/<name>.yaml``) -> the model."""

LEGACY_NAME = MultiTypeFCDD.model_name
"""The model of a run config written before ``model.name`` existed (checkpoints of version 0.1)."""


def model_entry(cfg: DictConfig) -> ModelEntry:
    """The registered model of ``cfg.model.name``, with ``cfg.mode`` checked against its modes."""
    name = cfg.model.get("name", LEGACY_NAME)
    if name not in MODELS:
        raise ConfigError(f"model.name={name!r} is not valid; choose one of: {', '.join(MODELS)}")
    entry = MODELS[name]
    if cfg.mode not in entry.modes:
        raise ConfigError(
            f"mode={cfg.mode!r} is not valid with model={name}: {entry.title} runs in mode "
            f"{' or '.join(entry.modes)}, set mode={entry.modes[0]}"
        )
    return entry


def model_titles() -> dict[str, str]:
    """``model.name`` -> display title, for every registered model (what ``mtfcdd.metrics.tables`` prints)."""
    return {name: entry.title for name, entry in MODELS.items()}
