"""``status.json`` in a run directory: whether the job is running, finished or failed (read by ``mtfcdd.report``).

A job writes ``running`` (with its host and process id) when it starts and ``finished`` or ``failed`` (with the
error) when it ends; a ``running`` job whose process is gone from this host is reported as ``died``. Each record also
holds the W&B project, entity, group and offline flag the job logged to (``wandb``; null without W&B), as resolved
inside the job (a sweep's group depends on Hydra's runtime, which a later reader does not have).
"""

from __future__ import annotations

import json
import os
import socket
import time
from pathlib import Path

from lightning.pytorch.utilities.rank_zero import rank_zero_only
from omegaconf import DictConfig

from mtfcdd.core.atomic_io import write_bytes_atomic

STATUS_FILE = "status.json"
STATES = ("running", "finished", "failed", "died")


WANDB_KEYS = ("project", "entity", "group", "offline")


def wandb_target(cfg: DictConfig) -> dict | None:
    """Where the run's W&B logger writes: ``logger.wandb`` project, entity, group and offline, resolved (None
    without a W&B logger)."""
    logger = (cfg.get("logger") or {}).get("wandb")
    if logger is None:
        return None
    return {key: logger.get(key) for key in WANDB_KEYS}


@rank_zero_only
def write_status(run_dir: Path | str, state: str, error: str | None = None, wandb: dict | None = None) -> None:
    """Record ``state`` (running, finished or failed) of the job writing into ``run_dir`` (global rank 0 only), with
    its W&B target (``wandb_target``)."""
    if state not in STATES[:3]:
        raise ValueError(f"state must be one of running, finished, failed; got {state!r}")
    status = {"state": state, "host": socket.gethostname(), "pid": os.getpid(), "time": time.time(), "wandb": wandb}
    if error is not None:
        status["error"] = error
    write_bytes_atomic(Path(run_dir) / STATUS_FILE, (json.dumps(status, indent=2) + "\n").encode())


def _alive(pid: int) -> bool:
    try:
        os.kill(pid, 0)
    except ProcessLookupError:
        return False
    except PermissionError:
        return True
    return True


def read_status(run_dir: Path | str) -> dict | None:
    """The recorded status (``state`` one of ``STATES``), or None when the job never wrote one.

    A ``running`` record from this host whose process no longer exists comes back as ``died``.
    """
    path = Path(run_dir) / STATUS_FILE
    if not path.is_file():
        return None
    status = json.loads(path.read_text())
    if status.get("state") == "running" and status.get("host") == socket.gethostname() and not _alive(status["pid"]):
        status["state"] = "died"
    return status
