"""Where the Hydra configs live, the config error and the one check of a choice."""

from __future__ import annotations

import os
from collections.abc import Sequence
from pathlib import Path

from mtfcdd.core.errors import UserError

PROJECT_ROOT = Path(__file__).resolve().parents[2]
CONFIG_DIR = PROJECT_ROOT / "conf"


class ConfigError(UserError, ValueError):
    """A config value outside its valid choices."""


def check_choice(key: str, value: object, choices: Sequence[object], extra: str = "") -> None:
    """The one check of a choice: raise ``ConfigError`` naming ``key`` (``extra`` after it), the value and the
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
