"""What the entry points share: building the data module, loggers, callbacks and trainer from a composed config, and
the task wrapper that turns a function of the config into a Hydra command.

Every command (train, evaluate, predict, export, benchmark) is ``main = entry_point("<config name>")(task)``: Hydra
composes ``conf/<config name>.yaml``; inside, a user error becomes one clear line on stderr and exit status 2, and
the W&B run is always finished (see :func:`mtfcdd.reporting.task_scope`).
"""

from __future__ import annotations

import functools
from collections.abc import Callable
from typing import Any, TypeVar

import hydra
import lightning as L
from hydra.utils import instantiate
from omegaconf import DictConfig, OmegaConf

from mtfcdd.config import ConfigError, config_dir
from mtfcdd.reporting import task_scope

NETWORK_INPUT_KEYS = ("mean", "std")
"""``data.*`` keys that belong to the inference pipeline (it normalises the [0, 1] images the data module serves)."""

T = TypeVar("T")


def instantiate_datamodule(cfg: DictConfig) -> L.LightningDataModule:
    """The data module of ``cfg.data`` (its keys but the pipeline's ``mean``/``std``), not set up yet."""
    options = OmegaConf.to_container(cfg.data, resolve=True)
    for key in NETWORK_INPUT_KEYS:
        options.pop(key, None)
    return instantiate(options, _convert_="all")


def build_datamodule(cfg: DictConfig) -> L.LightningDataModule:
    """The data module of ``cfg.data``, prepared (a synthetic set is built) and set up for fitting."""
    datamodule = instantiate_datamodule(cfg)
    datamodule.prepare_data()
    datamodule.setup("fit")
    return datamodule


def build_loggers(cfg: DictConfig) -> list:
    """The loggers of ``cfg.logger`` (none where the group is empty)."""
    return [instantiate(conf) for conf in (cfg.get("logger") or {}).values() if conf is not None]


def build_callbacks(cfg: DictConfig) -> list[L.Callback]:
    """The callbacks of ``cfg.callbacks``; an entry without ``_target_`` (options that an experiment sets for a
    callback the chosen group does not define, e.g. ``experiment=demo callbacks=none``) fails naming the key."""
    entries = {name: conf for name, conf in (cfg.get("callbacks") or {}).items() if conf is not None}
    for name, conf in entries.items():
        if "_target_" not in conf:
            raise ConfigError(f"callbacks.{name} sets {', '.join(map(str, conf))} but names no callback (_target_): "
                              "the chosen callbacks group does not define it; pick a group that does (e.g. "
                              f"callbacks=default) or remove the setting (~callbacks.{name})")
    return [instantiate(conf) for conf in entries.values()]


def build_trainer(cfg: DictConfig, loggers: list, callbacks: list[L.Callback] | None = None) -> L.Trainer:
    """The trainer of ``cfg.trainer`` with ``loggers`` and ``callbacks`` (default: those of ``cfg.callbacks``)."""
    callbacks = build_callbacks(cfg) if callbacks is None else callbacks
    return instantiate(cfg.trainer, logger=loggers or False, callbacks=callbacks)


def entry_point(config_name: str) -> Callable[[Callable[[DictConfig], T]], Callable[[], T]]:
    """Decorator: ``task(cfg)`` as a Hydra command over ``conf/<config_name>.yaml``, run inside
    :func:`~mtfcdd.reporting.task_scope`; the command returns what the task returns (a sweeper's objective)."""

    def decorate(task: Callable[[DictConfig], T]) -> Callable[[], T]:
        @functools.wraps(task)  # Hydra names the job after the task's module (train, evaluate, ...)
        def scoped(cfg: DictConfig) -> Any:
            with task_scope():
                return task(cfg)

        return hydra.main(version_base="1.3", config_path=config_dir(), config_name=config_name)(scoped)

    return decorate
