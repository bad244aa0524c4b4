"""``status.json`` in a run directory: whether the job is running, finished or failed (read by ``mtfcdd.report``).

A job writes ``running`` (with its host and process id) when it starts and ``finished`` or ``failed`` (with the
error) when it ends; a ``running`` job whose process is gone from this host is reported as ``died``.
"""

from __future__ import annotations

import json
import os
import socket
import time
from pathlib import Path

from lightning.pytorch.utilities.rank_zero import rank_zero_only

from mtfcdd.atomic_io import write_bytes_atomic

STATUS_FILE = "status.json"
STATES = ("running", "finished", "failed", "died")


@rank_zero_only
def write_status(run_dir: Path | str, state: str, error: str | None = None) -> None:
    """Record ``state`` (running, finished or failed) of the job writing into ``run_dir`` (global rank 0 only)."""
    if state not in STATES[:3]:
        raise ValueError(f"state must be one of running, finished, failed; got {state!r}")
    status = {"state": state, "host": socket.gethostname(), "pid": os.getpid(), "time": time.time()}
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
    """The recorded status (``state`` one of :data:`STATES`), or None when the job never wrote one.

    A ``running`` record from this host whose process no longer exists comes back as ``died``.
    """
    path = Path(run_dir) / STATUS_FILE
    if not path.is_file():
        return None
    status = json.loads(path.read_text())
    if status.get("state") == "running" and status.get("host") == socket.gethostname() and not _alive(status["pid"]):
        status["state"] = "died"
    return status
