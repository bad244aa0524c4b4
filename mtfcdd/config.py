"""Where the Hydra configs live, and the checks that stop a bad run before any work."""

from __future__ import annotations

import os
from collections.abc import Mapping, Sequence
from pathlib import Path
from typing import Any

from omegaconf import DictConfig

from mtfcdd.defect_types import MODES
from mtfcdd.errors import UserError
from mtfcdd.sweep import register_resolvers

PROJECT_ROOT = Path(__file__).resolve().parents[1]
CONFIG_DIR = PROJECT_ROOT / "conf"

# the logger configs' sweep resolvers, in every process that composes or resolves a config (SLURM jobs included)
register_resolvers()

VALID_CHOICES: dict[str, tuple] = {
    "alpha": (0.1, 0.2, 0.4),
    "mode": MODES,
    "test_ckpt": ("best", "last"),
}


class ConfigError(UserError, ValueError):
    """A config value outside its valid choices."""


def check_choice(key: str, value: object, choices: Sequence[object], extra: str = "") -> None:
    """The one check of a choice: raise :class:`ConfigError` naming ``key`` (``extra`` after it), the value and the
    valid ``choices`` unless ``value`` is one of them."""
    if value not in choices:
        raise ConfigError(f"{key}={value!r} is not valid{extra}; choose one of: {', '.join(map(str, choices))}")


def config_dir() -> str:
    """Absolute path of ``conf/`` (a checkout or an editable install); fails clearly when it is missing."""
    if not (CONFIG_DIR / "train.yaml").is_file():
        raise FileNotFoundError(
            f"mtfcdd's Hydra configs were not found at {CONFIG_DIR}; install the project from its checkout "
            "with `make install` (an editable install keeps conf/ next to the package)"
        )
    os.environ.setdefault("MTFCDD_PROJECT_ROOT", str(PROJECT_ROOT))
    return str(CONFIG_DIR)


def validate(cfg: DictConfig) -> None:
    """Reject top-level values outside their choices, naming the key and the valid values, and a best checkpoint
    that nothing could select."""
    for key, choices in VALID_CHOICES.items():
        check_choice(key, cfg.get(key), choices)
    if cfg.test_ckpt == "best" and cfg.get("train", True):
        checkpoint = (cfg.get("callbacks") or {}).get("model_checkpoint")
        if checkpoint is not None and (not checkpoint.get("monitor") or not checkpoint.get("save_top_k")):
            raise ConfigError(
                "test_ckpt=best needs callbacks.model_checkpoint to monitor a metric with save_top_k >= 1; "
                "set test_ckpt=last or configure the checkpoint callback"
            )
        if checkpoint is not None and not cfg.data.get("val_fraction"):
            raise ConfigError(
                "test_ckpt=best needs a validation hold-out to select on, but data.val_fraction=0; "
                "set data.val_fraction (e.g. 0.05) or test_ckpt=last"
            )


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
                f"task per device, so set both to the same value ({launcher_key} follows the trainer unless overridden; "
                f"it is shared by all jobs of a sweep, so sweep {trainer_key} in separate commands)"
            )
