"""The lifecycle every command goes through (train, evaluate, predict, export, benchmark).

Every command is ``main = entry_point("<config name>", checks)(task)``: Hydra composes ``conf/<config name>.yaml``
and ``run_command`` runs the task in its run directory; outside a multirun a user error then becomes one line on
stderr and exit status 2 (``exit_on_user_error``).
"""

from __future__ import annotations

import functools
import logging
import sys
from collections.abc import Callable, Sequence
from pathlib import Path
from typing import Any, TypeVar

import hydra
import lightning as L
from omegaconf import DictConfig, OmegaConf

from mtfcdd.core.config import ConfigError, config_dir
from mtfcdd.core.errors import exit_on_user_error
from mtfcdd.run.help import register_help_resolver
from mtfcdd.run.status import wandb_target, write_status
from mtfcdd.run.sweep import register_resolvers, task_overrides

log = logging.getLogger("mtfcdd")

T = TypeVar("T")
Check = Callable[[DictConfig], None]
"""A check of a command's config: raises a ``UserError`` naming the bad key."""


def check_required(cfg: DictConfig) -> None:
    """Raise a ``ConfigError`` naming the command's required keys (``???`` in its config, e.g. ``ckpt_path``) that
    the command line left unset."""
    missing = [str(key) for key in cfg if OmegaConf.is_missing(cfg, key)]
    if missing:
        verb = "is" if len(missing) == 1 else "are"
        raise ConfigError(
            f"{', '.join(missing)} {verb} required (no default): e.g. python -m mtfcdd.{cfg.get('task_name')} "
            f"{missing[0]}=..."
        )


def run_command(cfg: DictConfig, task: Callable[[DictConfig], T], checks: Sequence[Check] = ()) -> T:
    """Run ``task(cfg)`` as a command: register the sweep resolvers, make the run directory
    (``cfg.paths.output_dir``) and record ``status.json`` ``running`` there, check that the required keys are set
    (``check_required``), run the ``checks``, seed every random
    generator with ``cfg.seed`` (where the config has one), log the setup, run the task, then record ``finished``
    or ``failed`` (with the error) and finish the W&B run in every case (the jobs of a multirun never write into
    each other's run). Returns what the task returns (a sweeper's objective) and raises what it raises: tests and
    sweeps in one process call this directly."""
    register_resolvers()
    run_dir = Path(cfg.paths.output_dir)
    run_dir.mkdir(parents=True, exist_ok=True)
    wandb = None
    try:
        wandb = wandb_target(cfg)
        write_status(run_dir, "running", wandb=wandb)
        for check in (check_required, *checks):
            check(cfg)
        seed = cfg.get("seed")
        if seed is not None:
            L.seed_everything(int(seed), workers=True)
        log.info("%s: run directory %s, seed %s, overrides %s", cfg.get("task_name"), run_dir, seed, task_overrides())
        result = task(cfg)
    except BaseException as err:
        write_status(run_dir, "failed", error=f"{type(err).__name__}: {err}", wandb=wandb)
        raise
    finally:
        finish_wandb()
    write_status(run_dir, "finished", wandb=wandb)
    return result


def finish_wandb() -> None:
    """Close the active W&B run, if any, so that the jobs of a multirun never write into each other's run."""
    wandb = sys.modules.get("wandb")
    if wandb is not None and wandb.run is not None:
        wandb.finish()


def entry_point(
    config_name: str, checks: Sequence[Check] = ()
) -> Callable[[Callable[[DictConfig], T]], Callable[[], T]]:
    """Decorator: ``task(cfg)`` as a Hydra command over ``conf/<config_name>.yaml``, run by ``run_command`` with
    the command's config ``checks``; a user error becomes one line on stderr and exit status 2 (in a multirun it
    propagates, so that Hydra reports the failing job)."""

    def decorate(task: Callable[[DictConfig], T]) -> Callable[[], T]:
        @functools.wraps(task)  # Hydra names the job after the task's module (train, evaluate, ...)
        def command(cfg: DictConfig) -> Any:
            with exit_on_user_error():
                return run_command(cfg, task, checks)

        @functools.wraps(task)
        def main() -> Any:  # conf/ is looked up (and the project root exported) when the command runs, not at import
            register_help_resolver()  # hydra.help.template: --help prints the command's own page
            return hydra.main(version_base="1.3", config_path=config_dir(), config_name=config_name)(command)()

        return main

    return decorate
