"""Measurements that speed comparisons share: interleaved timing rounds and the size of saved weights.

Nothing here asserts anything about time; callers report same-run ratios of medians.
"""

from __future__ import annotations

import functools
import tempfile
import time
from collections.abc import Callable
from pathlib import Path
from typing import Any

import torch


def saved_weights_mb(net: torch.nn.Module) -> float:
    """Size in MB (10^6 bytes) of ``torch.save(net.state_dict())``, buffers included."""
    with tempfile.TemporaryDirectory(prefix="mtfcdd-size-") as tmp:
        path = Path(tmp, "weights.pt")
        torch.save(net.state_dict(), path)
        return path.stat().st_size / 1e6


def time_rounds(
    calls: dict[str, Callable[[], Any]], rounds: int = 5, warmup: int = 1, synchronize: Callable[[], None] | None = None
) -> dict[str, list[float]]:
    """Seconds per call of each function, measured ``rounds`` times, round-robin.

    Each round calls every function once, in an order rotated by one each round, so that slow phases of a shared
    machine land on every function alike; compare medians.
    """
    sync = synchronize or (lambda: None)
    names = list(calls)
    for _ in range(warmup):
        for name in names:
            calls[name]()
            sync()
    times: dict[str, list[float]] = {name: [] for name in names}
    for round_index in range(rounds):
        shift = round_index % len(names)
        for name in names[shift:] + names[:shift]:
            sync()
            start = time.perf_counter()
            calls[name]()
            sync()
            times[name].append(time.perf_counter() - start)
    return times


def time_interleaved(
    functions: dict[str, Callable[[torch.Tensor], Any]],
    inputs: torch.Tensor,
    rounds: int = 5,
    warmup: int = 1,
    synchronize: Callable[[], None] | None = None,
) -> dict[str, list[float]]:
    """Seconds per image of each function on ``inputs`` (``time_rounds`` divided by the batch size)."""
    calls = {name: functools.partial(function, inputs) for name, function in functions.items()}
    times = time_rounds(calls, rounds, warmup, synchronize)
    return {name: [t / len(inputs) for t in values] for name, values in times.items()}
