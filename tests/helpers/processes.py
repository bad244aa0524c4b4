"""Commands run side by side as subprocesses (a test of several commands waits for the slowest, not the sum)."""

from __future__ import annotations

import subprocess
import sys
from collections.abc import Mapping, Sequence
from pathlib import Path


def run_side_by_side(
    commands: Mapping[str, Sequence[str]], cwd: Path | None = None, timeout: float = 300
) -> dict[str, subprocess.CompletedProcess]:
    """``python -m mtfcdd.<name> *arguments`` for each ``name -> arguments``, all started at once; their finished
    processes (stdout and stderr as text) by name."""
    procs = {
        name: subprocess.Popen(
            [sys.executable, "-m", f"mtfcdd.{name}", *arguments],
            cwd=cwd,
            stdout=subprocess.PIPE,
            stderr=subprocess.PIPE,
            text=True,
        )
        for name, arguments in commands.items()
    }
    done = {}
    for name, proc in procs.items():
        out, err = proc.communicate(timeout=timeout)
        done[name] = subprocess.CompletedProcess(proc.args, proc.returncode, out, err)
    return done
