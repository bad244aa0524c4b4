"""SLURM: the trainer plugin that makes Lightning save a checkpoint and requeue the job before the time limit, and the
launcher's layout check (``hydra_plugins/mtfcdd_slurm`` runs it before submitting: Hydra finds launchers there only)."""

from __future__ import annotations

import signal
from collections.abc import Mapping, Sequence
from typing import Any

from lightning.fabric.plugins import CheckpointIO
from lightning.pytorch.plugins.environments import SLURMEnvironment

from mtfcdd.core.config import ConfigError


def slurm_plugins(auto_requeue: bool, requeue_signal: str, checkpoint_io: CheckpointIO | None = None) -> list:
    """The ``trainer.plugins`` of a run: ``checkpoint_io`` (how checkpoints are written) when given, and under
    SLURM its environment (on ``requeue_signal``, e.g. ``USR1``, save ``hpc_ckpt_<n>.ckpt`` in the run directory and
    requeue when ``auto_requeue``)."""
    signum = getattr(signal, f"SIG{requeue_signal}", None)
    if not isinstance(signum, signal.Signals):
        raise ConfigError(
            f"trainer.plugins.requeue_signal={requeue_signal!r} is not valid; expected a signal name such as USR1"
        )
    plugins = [] if checkpoint_io is None else [checkpoint_io]
    if not SLURMEnvironment.detect():
        return plugins
    return [*plugins, SLURMEnvironment(auto_requeue=auto_requeue, requeue_signal=signum)]


def check_slurm_layout(launcher: Mapping[str, Any], trainer: Mapping[str, Any]) -> None:
    """Under SLURM one task runs per device: the launcher's tasks_per_node and nodes must equal trainer.devices
    and trainer.num_nodes (``launcher``: the submitted hydra.launcher values; ``trainer``: the job's trainer config)."""
    devices = trainer.get("devices")
    if isinstance(devices, Sequence) and not isinstance(devices, str):
        devices = len(devices)
    if not isinstance(devices, int) or isinstance(devices, bool) or devices < 1:
        raise ConfigError(
            f"trainer.devices={trainer.get('devices')!r} is not valid under hydra/launcher=slurm; "
            "expected the number of devices per node (hydra.launcher.tasks_per_node starts one task per device)"
        )
    pairs = (
        ("hydra.launcher.tasks_per_node", launcher.get("tasks_per_node"), "trainer.devices", devices),
        ("hydra.launcher.nodes", launcher.get("nodes"), "trainer.num_nodes", trainer.get("num_nodes", 1)),
    )
    for launcher_key, launcher_value, trainer_key, trainer_value in pairs:
        if launcher_value != trainer_value:
            raise ConfigError(
                f"{launcher_key}={launcher_value!r} does not match {trainer_key}={trainer_value!r}: SLURM starts one "
                f"task per device, so set both to the same value ({launcher_key} follows the trainer unless "
                f"overridden; it is shared by all jobs of a sweep, so sweep {trainer_key} in separate commands)"
            )
