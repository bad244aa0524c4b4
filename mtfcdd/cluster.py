"""SLURM: the trainer plugin that makes Lightning save a checkpoint and requeue the job before the time limit."""

from __future__ import annotations

import signal

from lightning.fabric.plugins import CheckpointIO
from lightning.pytorch.plugins.environments import SLURMEnvironment

from mtfcdd.config import ConfigError


def slurm_plugins(auto_requeue: bool, requeue_signal: str, checkpoint_io: CheckpointIO | None = None) -> list:
    """The ``trainer.plugins`` of a run: ``checkpoint_io`` (how checkpoints are written) when given, and under
    SLURM its environment (on ``requeue_signal``, e.g. ``USR1``, save ``hpc_ckpt_<n>.ckpt`` in the run directory and
    requeue when ``auto_requeue``)."""
    signum = getattr(signal, f"SIG{requeue_signal}", None)
    if not isinstance(signum, signal.Signals):
        raise ConfigError(f"trainer.plugins.requeue_signal={requeue_signal!r} is not valid; expected a signal name such as USR1")
    plugins = [] if checkpoint_io is None else [checkpoint_io]
    if not SLURMEnvironment.detect():
        return plugins
    return [*plugins, SLURMEnvironment(auto_requeue=auto_requeue, requeue_signal=signum)]
