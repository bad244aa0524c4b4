"""Continuing an interrupted run in its own run directory: which checkpoint to load, and its W&B run id."""

from __future__ import annotations

import logging
import uuid
from pathlib import Path

from omegaconf import DictConfig, open_dict

from mtfcdd.core.atomic_io import remove_temporaries, write_bytes_atomic
from mtfcdd.core.config import ConfigError

log = logging.getLogger("mtfcdd")

LAST_CHECKPOINT = Path("checkpoints") / "last.ckpt"
"""Where a run keeps its latest checkpoint, relative to its run directory."""
WANDB_ID_FILE = Path("wandb") / "run_id.txt"
"""The run directory's W&B run id, relative to the run directory."""


def resume_checkpoint(cfg: DictConfig) -> str | None:
    """The checkpoint ``trainer.fit`` continues from: ``ckpt_path``, or with ``resume=true`` the run directory's
    ``checkpoints/last.ckpt`` (a clear error when it is missing or the run already finished). Resuming deletes the
    temporary checkpoint files a killed run left there (written whole or not at all: never a checkpoint)."""
    if not cfg.get("resume"):
        return cfg.get("ckpt_path")
    run_dir = Path(cfg.paths.output_dir)
    if cfg.get("ckpt_path"):
        raise ConfigError(
            f"resume=true continues from {run_dir / LAST_CHECKPOINT}; drop ckpt_path={cfg.ckpt_path!r} "
            "(or drop resume=true to start a new run directory from that checkpoint)"
        )
    checkpoint = run_dir / LAST_CHECKPOINT
    if not checkpoint.is_file():
        raise ConfigError(
            f"resume=true: no checkpoint at {checkpoint}; pass the directory of the run to continue, "
            "e.g. hydra.run.dir=logs/train/default/runs/2026-01-31_12-00-00, with the run's original overrides"
        )
    if (run_dir / "results.json").is_file():
        raise ConfigError(f"resume=true: the run in {run_dir} already finished (results.json is there)")
    for stale in remove_temporaries(checkpoint.parent):
        log.info("removed %s, a checkpoint write the interrupted run did not finish", stale)
    return str(checkpoint)


def wandb_run_id(run_dir: Path) -> str:
    """The W&B run id of ``run_dir``: the one stored there, else a new one, stored (so a resumed run logs into it)."""
    path = Path(run_dir) / WANDB_ID_FILE
    if path.is_file():
        return path.read_text().strip()
    run_id = uuid.uuid4().hex[:12]
    write_bytes_atomic(path, f"{run_id}\n".encode())
    return run_id


def set_wandb_run_id(cfg: DictConfig) -> None:
    """Give a configured W&B logger the run directory's run id, resuming that run when it exists."""
    wandb = (cfg.get("logger") or {}).get("wandb")
    if wandb is None:
        return
    with open_dict(cfg):
        wandb.id = wandb_run_id(Path(cfg.paths.output_dir))
        wandb.resume = "allow"
