"""Where the Hydra configs live, and the checks that stop a bad run before any work."""

from __future__ import annotations

import os
from pathlib import Path

from omegaconf import DictConfig

from mtfcdd.errors import UserError

PROJECT_ROOT = Path(__file__).resolve().parents[1]
CONFIG_DIR = PROJECT_ROOT / "conf"

VALID_CHOICES: dict[str, tuple] = {
    "alpha": (0.1, 0.2, 0.4),
    "mode": ("multi", "single"),
}


class ConfigError(UserError, ValueError):
    """A config value outside its valid choices."""


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
    """Reject top-level values outside their choices, naming the key and the valid values."""
    for key, choices in VALID_CHOICES.items():
        value = cfg.get(key)
        if value not in choices:
            raise ConfigError(f"{key}={value!r} is not valid; choose one of: {', '.join(map(str, choices))}")
