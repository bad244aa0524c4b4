"""Training-input throughput: images/s through decode + augment + resize/normalise + collate, for 0, 1, 2 workers.

    python experiments/bench_data_pipeline.py                      # a small generated set in data/synthetic-bench
    python experiments/bench_data_pipeline.py --root data/Real-IAD --categories audiojack --workers 0 2 4

Reads the training split through :class:`mtfcdd.data.datamodule.RealIADDataModule` exactly as training does
(class-balanced sampler, the paper's augmentation on half of the images). The first batch of each run (worker
start-up, first file reads) is timed apart. Prints a table; asserts nothing about time.
"""

from __future__ import annotations

import argparse
import logging
import os
import time
from collections.abc import Sequence
from pathlib import Path

from mtfcdd.data.datamodule import RealIADDataModule
from mtfcdd.data.summary import format_summary_table
from mtfcdd.data.synthetic import SyntheticConfig, ensure_synthetic

DEFAULT_ROOT = Path(__file__).resolve().parents[1] / "data" / "synthetic-bench"
BENCH_SET = SyntheticConfig(
    categories=("audiojack", "pcb"), size=256, train_samples=20, test_ok_samples=1, test_ng_samples=1
)
"""200 training images of 256 x 256 px (2 categories x 20 samples x 5 views), like ``realiad_256``."""


def measure(datamodule: RealIADDataModule, batches: int) -> dict[str, float]:
    """Time ``batches`` training batches: the first one alone, then the rest (images/s)."""
    datamodule.epoch_draws = batches * datamodule.hparams.batch_size
    start = time.perf_counter()
    iterator = iter(datamodule.train_dataloader())
    next(iterator)
    first = time.perf_counter()
    images = sum(len(batch["image"]) for batch in iterator)
    end = time.perf_counter()
    return {"first_batch_s": first - start, "images": images, "images_per_s": images / (end - first)}


def main(argv: Sequence[str] | None = None) -> list[dict[str, object]]:
    """Measure training-input throughput for each worker count; print and return one row per count."""
    parser = argparse.ArgumentParser(description=__doc__.split("\n")[0])
    parser.add_argument("--root", type=Path, default=None, help="Real-IAD root (default: generate a small set)")
    parser.add_argument("--categories", nargs="*", default=None, help="category subset (default: all)")
    parser.add_argument("--resolution", default="realiad_256")
    parser.add_argument("--workers", type=int, nargs="+", default=[0, 1, 2])
    parser.add_argument("--batches", type=int, default=12, help="batches per run (the first is timed apart)")
    parser.add_argument("--batch-size", type=int, default=16)
    parser.add_argument("--image-size", type=int, default=299)
    args = parser.parse_args(argv)
    logging.basicConfig(level=logging.WARNING)
    root = args.root or ensure_synthetic(DEFAULT_ROOT, BENCH_SET, seed=0)
    rows = []
    for workers in args.workers:
        datamodule = RealIADDataModule(
            root,
            alpha=0.2,
            resolution=args.resolution,
            categories=args.categories,
            image_size=args.image_size,
            batch_size=args.batch_size,
            num_workers=workers,
            persistent_workers=False,
            val_fraction=0.0,
        )
        datamodule.setup("fit")
        result = measure(datamodule, args.batches)
        rows.append(
            {
                "workers": workers,
                "images": result["images"],
                "first_batch_ms": round(1000 * result["first_batch_s"]),
                "images_per_s": round(result["images_per_s"]),
                "ms_per_image": round(1000 / result["images_per_s"], 1),
            }
        )
    print(f"\ntraining input pipeline, {args.batch_size} per batch, {args.image_size} px, {os.cpu_count()} CPUs:")
    print(format_summary_table(rows))
    return rows


if __name__ == "__main__":
    main()
