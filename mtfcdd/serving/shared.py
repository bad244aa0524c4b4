"""State the server's processes share: counters, worker readiness and two texts, in shared memory (no locks).

``python -m mtfcdd.serve`` runs one main process, HTTP server processes (forked from it) and inference worker
processes (spawned, and spawned again when one dies). A ``SharedState`` is made in the main process before
any of them starts and travels to each (inherited on fork, pickled with the worker's ``LitAPI`` on spawn), so that
every process reads and writes the same memory. Every process writes only its own row of counters (a process is a
single writer: no lock a killed process could leave held); a reader sums the rows. A restarted worker takes over
its predecessor's row, so counts survive it.
"""

from __future__ import annotations

import json
import multiprocessing as mp
from typing import Any

COUNTERS = (
    "requests_predict",
    "requests_info",
    "requests_metrics",
    "requests_health",
    "requests_page",
    "requests_other",
    "errors_not_an_image",
    "errors_bad_request",
    "errors_too_large",
    "errors_too_many_pixels",
    "errors_unsupported_type",
    "errors_not_ready",
    "errors_unauthorized",
    "errors_worker_lost",
    "errors_timeout",
    "errors_internal",
    "images_predicted",
    "worker_starts",
    "latency_sum",
    "batch_sum",
)
"""Scalar counters of a row (``latency_sum`` in seconds, ``batch_sum`` in images)."""
LATENCY_BUCKETS = (0.005, 0.01, 0.025, 0.05, 0.1, 0.25, 0.5, 1.0, 2.5, 5.0, 10.0, 30.0)
"""Upper bounds (seconds) of the latency histogram of answered predictions; +Inf is implied."""
BATCH_BUCKETS = (1, 2, 4, 8, 16, 32, 64, 128)
"""Upper bounds (images) of the batch-size histogram; +Inf is implied."""
ERROR_KINDS = tuple(name.removeprefix("errors_") for name in COUNTERS if name.startswith("errors_"))
"""Kinds of failed request, as ``/metrics`` labels them."""

_SLOTS = {name: i for i, name in enumerate(COUNTERS)}
_LATENCY = len(COUNTERS)
_BATCH = _LATENCY + len(LATENCY_BUCKETS) + 1
_ROW = _BATCH + len(BATCH_BUCKETS) + 1
_TEXTS = {"info": 1 << 18, "error": 1 << 12}
"""Shared texts and their capacity in bytes: the model's ``/info`` (written by each worker once it is ready) and
why a worker could not start."""


class SharedState:
    """Counters of ``api_servers`` HTTP server processes and ``workers`` inference workers, their readiness and the
    shared texts. Rows ``0 .. api_servers - 1`` belong to the HTTP servers, the next ``workers`` rows to the
    workers."""

    def __init__(self, api_servers: int, workers: int) -> None:
        self.api_servers, self.workers = int(api_servers), int(workers)
        rows = self.api_servers + self.workers
        self._values = mp.RawArray("d", rows * _ROW)
        self._ready = mp.RawArray("b", self.workers)
        self._texts = {name: (mp.RawArray("c", size), mp.RawValue("q", 0)) for name, size in _TEXTS.items()}

    def worker_row(self, worker_id: int) -> int:
        """The counter row of inference worker ``worker_id`` (0-based)."""
        if not 0 <= worker_id < self.workers:
            raise ValueError(f"worker {worker_id}: expected 0 .. {self.workers - 1}")
        return self.api_servers + worker_id

    def api_row(self, server_id: int) -> int:
        """The counter row of HTTP server process ``server_id`` (0-based)."""
        if not 0 <= server_id < self.api_servers:
            raise ValueError(f"HTTP server {server_id}: expected 0 .. {self.api_servers - 1}")
        return server_id

    def add(self, row: int, name: str, amount: float = 1.0) -> None:
        """Add ``amount`` to counter ``name`` of ``row`` (only the process owning the row calls this)."""
        self._values[row * _ROW + _SLOTS[name]] += amount

    def observe_latency(self, row: int, seconds: float) -> None:
        """One answered prediction that took ``seconds`` in the server."""
        self._observe(row, _LATENCY, LATENCY_BUCKETS, seconds)
        self.add(row, "latency_sum", seconds)

    def observe_batch(self, row: int, images: int) -> None:
        """One batch of ``images`` through the engine."""
        self._observe(row, _BATCH, BATCH_BUCKETS, images)
        self.add(row, "batch_sum", images)
        self.add(row, "images_predicted", images)

    def _observe(self, row: int, start: int, bounds: tuple[float, ...], value: float) -> None:
        index = next((i for i, bound in enumerate(bounds) if value <= bound), len(bounds))
        self._values[row * _ROW + start + index] += 1

    def total(self, name: str) -> float:
        """Counter ``name`` summed over every process."""
        return sum(self._values[row * _ROW + _SLOTS[name]] for row in range(self.api_servers + self.workers))

    def worker_starts(self, worker_id: int) -> float:
        """How many times worker ``worker_id`` has loaded the pipeline (its generation: a restart adds one)."""
        return self._values[self.worker_row(worker_id) * _ROW + _SLOTS["worker_starts"]]

    def histogram(self, kind: str) -> list[float]:
        """Per-bucket counts (not cumulative) of ``latency`` or ``batch``, summed over every process; the last
        entry counts the values above the largest bound."""
        start, bounds = (_LATENCY, LATENCY_BUCKETS) if kind == "latency" else (_BATCH, BATCH_BUCKETS)
        rows = range(self.api_servers + self.workers)
        return [sum(self._values[row * _ROW + start + i] for row in rows) for i in range(len(bounds) + 1)]

    def set_ready(self, worker_id: int, ready: bool) -> None:
        """Mark worker ``worker_id`` as ready to predict (its pipeline is loaded) or not."""
        self._ready[worker_id] = 1 if ready else 0

    def ready_workers(self) -> list[int]:
        """The workers whose pipeline is loaded."""
        return [i for i in range(self.workers) if self._ready[i]]

    def write_text(self, name: str, value: Any) -> None:
        """Store ``value`` (JSON-ready) as shared text ``name``; too long a text raises ``ValueError``."""
        data = json.dumps(value).encode()
        buffer, length = self._texts[name]
        if len(data) > len(buffer):
            raise ValueError(f"shared text {name!r}: {len(data)} bytes, room for {len(buffer)}")
        length.value = 0
        buffer[: len(data)] = data
        length.value = len(data)

    def read_text(self, name: str) -> Any:
        """The value last stored as ``name`` (None when there is none)."""
        buffer, length = self._texts[name]
        size = length.value
        return json.loads(buffer[:size]) if size else None
