"""Compose the project's real Hydra configs in tests, with every output folder under a temporary directory."""

from __future__ import annotations

from pathlib import Path

from hydra import compose, initialize_config_dir
from hydra.core.global_hydra import GlobalHydra
from hydra.core.hydra_config import HydraConfig
from omegaconf import DictConfig, open_dict

from mtfcdd.core.config import config_dir
from mtfcdd.run.sweep import register_resolvers


def compose_config(tmp_path: Path, overrides: list[str], config_name: str = "train") -> DictConfig:
    """The config ``python -m mtfcdd.<task> <overrides>`` would run with, writing under ``tmp_path``."""
    register_resolvers()
    GlobalHydra.instance().clear()
    with initialize_config_dir(config_dir=config_dir(), version_base="1.3"):
        cfg = compose(config_name=config_name, overrides=overrides, return_hydra_config=True)
    HydraConfig.instance().set_config(cfg)
    with open_dict(cfg):
        cfg.paths.output_dir = str(tmp_path / "run")
        cfg.paths.log_dir = str(tmp_path / "logs")
        del cfg.hydra
    return cfg
