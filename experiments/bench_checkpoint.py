"""Cost of the step checkpoints: one full training checkpoint (weights, optimiser, loops, loader and random states,
written atomically) against one training step, in the same run, with a run config of the project.

    python experiments/bench_checkpoint.py [experiment=demo] [data.root=...] [--steps 6] [--saves 5]

Trains ``--steps`` steps through the real Lightning path (no validation), timing each step between
``on_train_batch_start`` and ``on_train_batch_end``, then writes ``--saves`` checkpoints with the configured
checkpoint IO. Prints ms per step (median), ms and MB per checkpoint (median), and the share of training time the
configured ``callbacks.step_checkpoint.every_n_train_steps`` costs: ``ms per checkpoint / (n x ms per step)``.
"""

from __future__ import annotations

import argparse
import json
import statistics
import sys
import tempfile
import time
from pathlib import Path

import lightning as L
from hydra import compose, initialize_config_dir
from hydra.core.global_hydra import GlobalHydra
from hydra.core.hydra_config import HydraConfig
from hydra.utils import instantiate
from omegaconf import open_dict

sys.path.insert(0, str(Path(__file__).resolve().parents[1]))

from mtfcdd.core.config import config_dir
from mtfcdd.model.build import build_module
from mtfcdd.run.build import build_datamodule


class StepTimes(L.Callback):
    """Wall time of each training step, from batch start to batch end (s)."""

    def __init__(self) -> None:
        self.seconds: list[float] = []

    def on_train_batch_start(self, *args) -> None:
        self._start = time.perf_counter()

    def on_train_batch_end(self, *args) -> None:
        self.seconds.append(time.perf_counter() - self._start)


def main(argv: list[str] | None = None) -> dict:
    """Time training steps and checkpoint writes for a run config; print and return the results."""
    parser = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    parser.add_argument("overrides", nargs="*", help="Hydra overrides of conf/train.yaml (default: experiment=demo)")
    parser.add_argument("--steps", type=int, default=6)
    parser.add_argument("--saves", type=int, default=5)
    parser.add_argument("--json", type=Path, help="also write the results here")
    args = parser.parse_args(argv)
    overrides = args.overrides or ["experiment=demo"]

    GlobalHydra.instance().clear()
    with initialize_config_dir(config_dir=config_dir(), version_base="1.3"):
        cfg = compose(config_name="train", overrides=[*overrides, "logger=none"], return_hydra_config=True)
    HydraConfig.instance().set_config(cfg)
    with tempfile.TemporaryDirectory() as tmp, open_dict(cfg):
        cfg.paths.output_dir = tmp
        del cfg.hydra
        L.seed_everything(cfg.seed)
        datamodule = build_datamodule(cfg)
        datamodule.epoch_draws = args.steps * datamodule.hparams.batch_size
        model = build_module(cfg)
        timer = StepTimes()
        trainer: L.Trainer = instantiate(
            cfg.trainer,
            logger=False,
            callbacks=[timer],
            max_steps=args.steps,
            limit_val_batches=0,
            num_sanity_val_steps=0,
            enable_checkpointing=False,
            enable_progress_bar=False,
            max_time=None,
        )
        trainer.fit(model, datamodule=datamodule)
        path = Path(tmp) / "checkpoints" / "last.ckpt"
        save_seconds = []
        for _ in range(args.saves):
            start = time.perf_counter()
            trainer.save_checkpoint(path)
            save_seconds.append(time.perf_counter() - start)
        size_mb = path.stat().st_size / 1e6

    step_ms = statistics.median(timer.seconds[1:] or timer.seconds) * 1e3  # the first step warms up
    save_ms = statistics.median(save_seconds) * 1e3
    every = cfg.callbacks.step_checkpoint.every_n_train_steps
    results = {
        "overrides": overrides,
        "steps": args.steps,
        "saves": args.saves,
        "ms_per_step": step_ms,
        "ms_per_checkpoint": save_ms,
        "mb_per_checkpoint": size_mb,
        "every_n_train_steps": every,
        "share_of_training_time": save_ms / (every * step_ms),
    }
    print(
        f"{' '.join(overrides)}: {step_ms:.0f} ms per training step (median of {len(timer.seconds) - 1}), "
        f"{save_ms:.1f} ms and {size_mb:.1f} MB per checkpoint (median of {args.saves}); "
        f"every {every} steps = {100 * results['share_of_training_time']:.3f} % of training time"
    )
    if args.json:
        args.json.write_text(json.dumps(results, indent=2))
    return results


if __name__ == "__main__":
    main()
