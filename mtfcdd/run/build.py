"""Building a run's parts from its composed config: the data module, the callbacks and the trainer."""

from __future__ import annotations

import lightning as L
from hydra.utils import instantiate
from omegaconf import DictConfig, OmegaConf
from omegaconf.errors import MissingMandatoryValue

from mtfcdd.core.config import ConfigError

NETWORK_INPUT_KEYS = ("mean", "std")
"""``data.*`` keys that belong to the inference pipeline (it normalises the [0, 1] images the data module serves)."""
VOCABULARY_KEY = "vocabulary"
"""``data.*`` key that train writes from the data module (its defect types, see
``mtfcdd.core.defect_types.vocabulary_of``): read back by the model, never a data module argument."""


def instantiate_datamodule(cfg: DictConfig) -> L.LightningDataModule:
    """The data module of ``cfg.data`` (its keys but the pipeline's ``mean``/``std`` and the ``vocabulary`` train
    wrote), not set up yet; a required key left unset (``???``, e.g. ``data=folder``'s ``data.root``) raises
    ``ConfigError`` naming it."""
    try:
        options = OmegaConf.to_container(cfg.data, resolve=True, throw_on_missing=True)
    except MissingMandatoryValue as err:
        raise ConfigError(f"{err.full_key} is required and not set; add {err.full_key}=... to the command") from None
    for key in (*NETWORK_INPUT_KEYS, VOCABULARY_KEY):
        options.pop(key, None)
    return instantiate(options, _convert_="all")


def build_datamodule(cfg: DictConfig) -> L.LightningDataModule:
    """The data module of ``cfg.data``, prepared (a synthetic set is built) and set up for fitting."""
    datamodule = instantiate_datamodule(cfg)
    datamodule.prepare_data()
    datamodule.setup("fit")
    return datamodule


def build_callbacks(cfg: DictConfig) -> list[L.Callback]:
    """The callbacks of ``cfg.callbacks``; an entry without ``_target_`` (options that an experiment sets for a
    callback the chosen group does not define, e.g. ``experiment=demo callbacks=none``) fails naming the key."""
    entries = {name: conf for name, conf in (cfg.get("callbacks") or {}).items() if conf is not None}
    for name, conf in entries.items():
        if "_target_" not in conf:
            raise ConfigError(
                f"callbacks.{name} sets {', '.join(map(str, conf))} but names no callback (_target_): "
                "the chosen callbacks group does not define it; pick a group that does (e.g. "
                f"callbacks=default) or remove the setting (~callbacks.{name})"
            )
    return [instantiate(conf) for conf in entries.values()]


def build_trainer(cfg: DictConfig, loggers: list, callbacks: list[L.Callback] | None = None) -> L.Trainer:
    """The trainer of ``cfg.trainer`` with ``loggers`` and ``callbacks`` (default: those of ``cfg.callbacks``)."""
    callbacks = build_callbacks(cfg) if callbacks is None else callbacks
    return instantiate(cfg.trainer, logger=loggers or False, callbacks=callbacks)
