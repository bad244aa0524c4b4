"""Speed of the data bookkeeping at Real-IAD scale, each against a plain baseline timed in the same run (ratios):

- the balanced sampler's epoch (57,840 images in 9 classes, ~487k draws, rank 0 of 2) against ``torch.randperm``
  of the same length (the cost of an ordinary shuffled epoch);
- the index's existence check (30,000 lookups in 200 folders, :func:`mtfcdd.data.realiad.missing_files`) against
  one ``Path.exists`` per file;
- the exact expected balanced-epoch length for 50 classes of 10^6 (:func:`mtfcdd.sampling.coupon.expected_draws`)
  against its Monte Carlo estimate with 4,000 trials.

    python experiments/bench_index_and_sampling.py [--rounds 5]

Prints medians (ms) and ratios as JSON; asserts nothing about time. The unit tests check the same calls' results.
"""

from __future__ import annotations

import argparse
import json
import statistics
import sys
import tempfile
from pathlib import Path

import numpy as np
import torch

sys.path.insert(0, str(Path(__file__).resolve().parents[1]))

from mtfcdd.data.realiad import missing_files
from mtfcdd.inference.cpu import cpu_name
from mtfcdd.measure.timing import time_rounds
from mtfcdd.sampling.coupon import expected_draws
from mtfcdd.sampling.sampler import BalancedClassSampler

REALIAD_CLASS_SIZES = {8: 54_066, 0: 500, 1: 400, 2: 600, 3: 300, 4: 900, 5: 474, 6: 300, 7: 300}
"""Training images per sampler class (8 = normal) at Real-IAD scale: 57,840 in all."""


def _medians_ms(times: dict[str, list[float]]) -> dict[str, float]:
    return {name: round(1000 * statistics.median(values), 2) for name, values in times.items()}


def sampler_epoch(rounds: int) -> dict[str, float]:
    """Median ms of one balanced-sampler epoch (rank 0 of 2) and of a ``torch.randperm`` of the same length, and
    their ratio."""
    labels = np.concatenate([np.full(size, label) for label, size in REALIAD_CLASS_SIZES.items()])
    class_of = np.random.default_rng(0).permutation(labels)
    sampler = BalancedClassSampler(class_of, 486_594, seed=0, num_replicas=2, rank=0)
    times = time_rounds(
        {"balanced": lambda: list(sampler), "randperm": lambda: torch.randperm(243_297).tolist()}, rounds=rounds
    )
    medians = _medians_ms(times)
    return {**medians, "ratio": round(medians["balanced"] / medians["randperm"], 2)}


def existence_check(rounds: int) -> dict[str, float]:
    """Median ms of :func:`missing_files` and of one ``Path.exists`` per file over 30,000 paths, and their ratio."""
    with tempfile.TemporaryDirectory() as tmp:
        paths = []
        for i in range(200):
            folder = Path(tmp) / f"S{i:04d}"
            folder.mkdir()
            for view in range(5):
                (folder / f"{view}.jpg").touch()
                paths.append(folder / f"{view}.jpg")
        many = paths * 30
        times = time_rounds(
            {"missing_files": lambda: missing_files(many), "path_exists": lambda: [p for p in many if not p.exists()]},
            rounds=rounds,
        )
    medians = _medians_ms(times)
    return {**medians, "ratio": round(medians["missing_files"] / medians["path_exists"], 2)}


def large_quotas(rounds: int) -> dict[str, float]:
    """Median ms of the exact expected draws for 50 classes of 10^6 and of a 4,000-trial Monte Carlo estimate, and
    their ratio."""
    sizes = [10**6] * 50
    times = time_rounds(
        {
            "exact": lambda: expected_draws(sizes),
            "mc_4000": lambda: expected_draws(sizes, method="mc", trials=4000, seed=2),
        },
        rounds=rounds,
    )
    medians = _medians_ms(times)
    return {**medians, "ratio": round(medians["exact"] / medians["mc_4000"], 2)}


def main(argv: list[str] | None = None) -> None:
    """Run the three comparisons and print their medians and ratios as JSON."""
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--rounds", type=int, default=5)
    args = parser.parse_args(argv)
    results = {
        "cpu": cpu_name(),
        "sampler_epoch_ms": sampler_epoch(args.rounds),
        "existence_check_ms": existence_check(args.rounds),
        "large_quotas_ms": large_quotas(args.rounds),
    }
    print(json.dumps(results, indent=1))


if __name__ == "__main__":
    main()
