"""The checks of a whole run's config that stop a bad run before any work (the lifecycle runs them)."""

from __future__ import annotations

from omegaconf import DictConfig

from mtfcdd.core.config import ConfigError, check_choice
from mtfcdd.core.defect_types import MODES
from mtfcdd.inference.engines import check_engine

VALID_CHOICES: dict[str, tuple] = {"alpha": (0.1, 0.2, 0.4), "mode": MODES, "test_ckpt": ("best", "last")}


def validate(cfg: DictConfig) -> None:
    """Reject top-level values outside their choices, naming the key and the valid values, a best checkpoint
    that nothing could select, and a test stage without test images (``data.test_fraction=0``)."""
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
    data = cfg.get("data") or {}
    if data.get("test_fraction", None) == 0 and cfg.get("test", True):
        raise ConfigError(
            "data.test_fraction=0 keeps no test images, so there is nothing to test: add test=false (the final model "
            "on every labelled image), or keep a share for the test stage (e.g. data.test_fraction=0.3)"
        )


def check_inference(cfg: DictConfig) -> None:
    """Reject an ``inference.engine`` that names no engine (the commands that run one: evaluate, predict)."""
    check_engine((cfg.get("inference") or {}).get("engine", "eager"))
