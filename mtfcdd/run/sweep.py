"""What belongs to a sweep rather than to one run: its W&B group and tags, and the Optuna study's storage.

A job of a multirun (grid, SLURM or Optuna) learns its sweep from Hydra's runtime config: the sweep folder
(``hydra.sweep.dir``) names the group, and the job's command-line overrides (``hydra.overrides.task``, less the
location keys in ``hydra.job.config.override_dirname.exclude_keys``) are its swept values.
"""

from __future__ import annotations

from collections.abc import Sequence
from pathlib import Path

from hydra.core.hydra_config import HydraConfig
from hydra.core.override_parser.overrides_parser import OverridesParser
from hydra.types import RunMode
from omegaconf import OmegaConf

# W&B refuses longer tags
MAX_TAG_CHARS = 64


def in_multirun() -> bool:
    """Whether this is a job of a Hydra multirun (False outside a Hydra run)."""
    return HydraConfig.initialized() and HydraConfig.get().mode == RunMode.MULTIRUN


def task_overrides() -> dict[str, str]:
    """The run's command-line overrides as {key: value} (e.g. {"alpha": "0.1", "data": "synthetic"}), less the
    excluded location keys; {} outside a Hydra run."""
    if not HydraConfig.initialized():
        return {}
    hydra_cfg = HydraConfig.get()
    exclude = set(hydra_cfg.job.config.override_dirname.exclude_keys)
    parsed = OverridesParser.create().parse_overrides(list(hydra_cfg.overrides.task))
    return {
        o.key_or_group: o.get_value_element_as_str()
        for o in parsed
        if not o.is_delete() and o.key_or_group not in exclude
    }


def sweep_group(experiment_name: str) -> str:
    """W&B group: ``<experiment_name>`` for a single run; ``<experiment_name>_<sweep folder>`` (the sweep's start
    time by default) for every job of a multirun."""
    if not in_multirun():
        return experiment_name
    return f"{experiment_name}_{Path(HydraConfig.get().sweep.dir).name}"


def sweep_tags(tags: Sequence[str]) -> list[str]:
    """``tags``, plus one ``key=value`` tag per swept value for a job of a multirun (cut to W&B's 64 characters)."""
    out = [str(tag) for tag in tags]
    if in_multirun():
        for key, value in task_overrides().items():
            tag = f"{key}={value}"
            tag = tag if len(tag) <= MAX_TAG_CHARS else tag[: MAX_TAG_CHARS - 1] + "…"
            if tag not in out:
                out.append(tag)
    return out


def register_resolvers() -> None:
    """``${mtfcdd.sweep_group:<experiment name>}`` and ``${mtfcdd.sweep_tags:<tags>}`` for the logger configs."""
    OmegaConf.register_new_resolver("mtfcdd.sweep_group", sweep_group, replace=True)
    OmegaConf.register_new_resolver("mtfcdd.sweep_tags", sweep_tags, replace=True)


def optuna_storage(path: str) -> str:
    """SQLite URL of an Optuna study database at ``path``, creating its folder (Optuna does not)."""
    db = Path(path).resolve()
    db.parent.mkdir(parents=True, exist_ok=True)
    return f"sqlite:///{db}"
