"""The lifecycle every command goes through: Hydra composes ``conf/<command>.yaml``; a user error becomes one clear
line on stderr and exit status 2; the W&B run is always finished (so that the jobs of a multirun never write into each
other's run).

Every command (train, evaluate, predict, export, benchmark) is ``main = entry_point("<config name>")(task)``.
"""

from __future__ import annotations

import contextlib
import functools
import sys
from collections.abc import Callable, Iterator
from typing import Any, TypeVar

import hydra
from omegaconf import DictConfig

from mtfcdd.core.config import config_dir
from mtfcdd.core.errors import exit_on_user_error
from mtfcdd.run.sweep import register_resolvers

T = TypeVar("T")


@contextlib.contextmanager
def task_scope() -> Iterator[None]:
    """An entry point's task: a user error becomes one clear line and exit status 2, and the W&B run is always
    finished (so that the jobs of a multirun never write into each other's run)."""
    with exit_on_user_error():
        try:
            yield
        finally:
            finish_wandb()


def finish_wandb() -> None:
    """Close the active W&B run, if any, so that the jobs of a multirun never write into each other's run."""
    wandb = sys.modules.get("wandb")
    if wandb is not None and wandb.run is not None:
        wandb.finish()


def entry_point(config_name: str) -> Callable[[Callable[[DictConfig], T]], Callable[[], T]]:
    """Decorator: ``task(cfg)`` as a Hydra command over ``conf/<config_name>.yaml``, run inside
    :func:`task_scope`; the command returns what the task returns (a sweeper's objective)."""

    def decorate(task: Callable[[DictConfig], T]) -> Callable[[], T]:
        @functools.wraps(task)  # Hydra names the job after the task's module (train, evaluate, ...)
        def scoped(cfg: DictConfig) -> Any:
            register_resolvers()
            with task_scope():
                return task(cfg)

        return hydra.main(version_base="1.3", config_path=config_dir(), config_name=config_name)(scoped)

    return decorate
