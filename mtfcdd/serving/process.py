"""``python -m mtfcdd.serve`` as a child process on a free loopback port: start it, wait for it, look at its process
tree, stop it (the tests and ``experiments/bench_serve.py`` drive the real server this way)."""

from __future__ import annotations

import contextlib
import json
import os
import signal
import socket
import subprocess
import sys
import time
import urllib.error
import urllib.request
from collections.abc import Sequence
from pathlib import Path


def free_port() -> int:
    """A TCP port on 127.0.0.1 that nothing listens on now (the kernel's choice, >= 1024)."""
    with socket.socket(socket.AF_INET, socket.SOCK_STREAM) as probe:
        probe.bind(("127.0.0.1", 0))
        return probe.getsockname()[1]


def http_status(url: str, timeout: float = 5.0) -> int | None:
    """The status of ``GET url``; None when nothing answers."""
    try:
        with urllib.request.urlopen(url, timeout=timeout) as response:
            return response.status
    except urllib.error.HTTPError as err:
        return err.code
    except (urllib.error.URLError, ConnectionError, TimeoutError):
        return None


def descendants(pid: int) -> list[int]:
    """Every process below ``pid`` (Linux ``/proc``), children first."""
    found, pending = [], [pid]
    while pending:
        parent = pending.pop()
        for task in Path(f"/proc/{parent}/task").glob("*"):
            try:
                children = [int(c) for c in (task / "children").read_text().split()]
            except OSError:
                continue
            found += children
            pending += children
    return found


def command_line(pid: int) -> str:
    """The process's command line, arguments joined by spaces ('' once it is gone)."""
    try:
        return Path(f"/proc/{pid}/cmdline").read_bytes().replace(b"\0", b" ").decode(errors="replace")
    except OSError:
        return ""


def memory_kib(pid: int) -> int:
    """The process's proportional set size (``Pss``: its resident pages, each page shared with n processes counted
    1/n), KiB; summed over processes forked from one another it counts shared pages once (0 once it is gone)."""
    try:
        for line in Path(f"/proc/{pid}/smaps_rollup").read_text().splitlines():
            if line.startswith("Pss:"):
                return int(line.split()[1])
    except OSError:
        pass
    return 0


class ServerProcess:
    """The serve command with ``overrides`` (``ckpt_path=...`` among them) in ``run_dir``, logging to
    ``run_dir/server.out``; ``env`` adds environment variables. A context manager: started and stopped."""

    def __init__(self, overrides: Sequence[str], run_dir: Path, env: dict[str, str] | None = None) -> None:
        self.port = free_port()
        self.run_dir = Path(run_dir)
        self.run_dir.mkdir(parents=True, exist_ok=True)
        self.log_path = self.run_dir / "server.out"
        self.url = f"http://127.0.0.1:{self.port}"
        self._args = [sys.executable, "-m", "mtfcdd.serve", *overrides, f"port={self.port}"]
        self._args.append(f"hydra.run.dir={self.run_dir / 'run'}")
        self._env = {**os.environ, **(env or {})}
        self.process: subprocess.Popen | None = None

    def start(self) -> ServerProcess:
        with self.log_path.open("wb") as log:
            self.process = subprocess.Popen(
                self._args, stdout=log, stderr=subprocess.STDOUT, env=self._env, cwd=self.run_dir
            )
        return self

    def wait_until(self, condition, timeout: float = 180.0, what: str = "the server") -> None:
        """Poll ``condition()`` every 0.1 s until it is true; fail after ``timeout`` s or when the server exits."""
        deadline = time.monotonic() + timeout
        while not condition():
            if self.process.poll() is not None:
                raise RuntimeError(f"{what}: the server exited ({self.process.returncode}):\n{self.log()}")
            if time.monotonic() > deadline:
                raise TimeoutError(f"{what}: not within {timeout} s:\n{self.log()}")
            time.sleep(0.1)

    def wait_ready(self, timeout: float = 180.0) -> None:
        """Until ``GET /health`` answers 200."""
        self.wait_until(lambda: http_status(self.url + "/health") == 200, timeout, "ready")

    def log(self) -> str:
        """What the server wrote so far."""
        return self.log_path.read_text(errors="replace")

    def pids(self) -> list[int]:
        """The main process and every process below it."""
        return [self.process.pid, *descendants(self.process.pid)]

    def worker_pids(self) -> list[int]:
        """The inference workers (LitServe spawns them)."""
        return [pid for pid in descendants(self.process.pid) if "spawn_main" in command_line(pid)]

    def status(self) -> dict:
        """The run's ``status.json``."""
        return json.loads((self.run_dir / "run" / "status.json").read_text())

    def stop(self, timeout: float = 60.0) -> int:
        """Ctrl+C (SIGINT) to the main process, then its exit status (killed past ``timeout`` s)."""
        if self.process is None or self.process.poll() is not None:
            return self.process.returncode if self.process else 0
        self.process.send_signal(signal.SIGINT)
        try:
            return self.process.wait(timeout)
        except subprocess.TimeoutExpired:
            for pid in reversed(self.pids()):
                with contextlib.suppress(ProcessLookupError):
                    os.kill(pid, signal.SIGKILL)
            return self.process.wait(timeout)

    def __enter__(self) -> ServerProcess:
        return self.start()

    def __exit__(self, *exc: object) -> None:
        self.stop()
