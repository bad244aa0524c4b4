"""Train MultiTypeFCDD: ``python -m mtfcdd.train alpha=0.2`` (Hydra; ``-m`` sweeps, e.g.
``-m alpha=0.1,0.2,0.4 mode=single,multi``).

Everything a run writes goes under its Hydra run directory: checkpoints, W&B/CSV logs, results and heatmaps.
An interrupted run continues in the same directory and W&B run with ``resume=true hydra.run.dir=<its directory>``.
Returns the value of ``optimized_metric`` to a Hydra sweeper.
"""

from __future__ import annotations

import logging
import warnings
from pathlib import Path
from typing import Any

import torch
from lightning.pytorch.callbacks import ModelCheckpoint
from omegaconf import DictConfig, OmegaConf, open_dict

from mtfcdd.model.build import build_module
from mtfcdd.resume.run_dir import resume_checkpoint, set_wandb_run_id
from mtfcdd.run.build import VOCABULARY_KEY, build_datamodule, build_trainer
from mtfcdd.run.checks import validate
from mtfcdd.run.lifecycle import entry_point, run_command
from mtfcdd.run.loggers import build_loggers, log_run_setup, write_results

log = logging.getLogger("mtfcdd")

CHECKS = (validate,)
"""The checks of a training config that the lifecycle runs before any work."""


def train(cfg: DictConfig) -> tuple[dict[str, Any], dict[str, Any]]:
    """Fit (and test) one run, seeded and checked by the lifecycle (``run_task``); returns (metrics, objects)."""
    ckpt_path = resume_checkpoint(cfg)
    if ckpt_path:
        log.info("continuing from checkpoint %s", ckpt_path)
    output_dir = Path(cfg.paths.output_dir)
    set_wandb_run_id(cfg)
    datamodule = build_datamodule(cfg)
    with open_dict(cfg):  # the data's defect types name the model's channels and travel with its checkpoints
        cfg.data[VOCABULARY_KEY] = datamodule.vocabulary.to_config()
    model = build_module(cfg)
    model.run_config = OmegaConf.to_container(cfg, resolve=True)
    loggers = build_loggers(cfg)
    trainer = build_trainer(cfg, loggers)
    objects = {"cfg": cfg, "datamodule": datamodule, "model": model, "trainer": trainer, "loggers": loggers}
    log_run_setup(objects)

    checkpoints = {"best": "", "last": ""}
    if cfg.train:
        with warnings.catch_warnings():  # the frozen backbone is in eval mode on purpose (BatchNorm statistics)
            warnings.filterwarnings("ignore", message=r"Found \d+ module\(s\) in eval mode", category=UserWarning)
            trainer.fit(model=model, datamodule=datamodule, ckpt_path=ckpt_path, weights_only=True)
        callback = next((c for c in trainer.checkpoint_callbacks if isinstance(c, ModelCheckpoint)), None)
        if callback is not None:
            checkpoints = {"best": callback.best_model_path, "last": callback.last_model_path}
    objects["checkpoints"] = checkpoints
    metrics = {
        key: value.item() if torch.is_tensor(value) else value for key, value in trainer.callback_metrics.items()
    }
    if cfg.test:
        tested = checkpoints[cfg.test_ckpt] or None
        trainer.test(model=model, datamodule=datamodule, ckpt_path=tested, weights_only=True)
        metrics.update(
            {key: value.item() if torch.is_tensor(value) else value for key, value in trainer.callback_metrics.items()}
        )
        write_results(model.test_results, output_dir, loggers, cfg, {"checkpoint": tested})
    return metrics, objects


def train_and_report(cfg: DictConfig) -> float | None:
    """Run ``train`` and print where things went; returns the value of ``optimized_metric`` (None where the run
    has none)."""
    metrics, objects = train(cfg)
    output_dir = Path(cfg.paths.output_dir)
    print(f"\nrun directory: {output_dir}")
    for name, path in objects["checkpoints"].items():
        print(f"{name} checkpoint: {path or '-'}")
    for run_dir in sorted(output_dir.glob("wandb/offline-run-*")) + sorted(output_dir.glob("wandb/run-*")):
        print(f"W&B run files: {run_dir}  (upload with: wandb sync {run_dir})")
    value = metrics.get(cfg.get("optimized_metric"))
    if value is None:
        return None
    print(f"{cfg.optimized_metric} = {float(value)!r} (the value a sweeper optimises)")
    return float(value)


def run_task(cfg: DictConfig) -> float | None:
    """``train_and_report`` through the command's lifecycle (``run_command``: checks,
    seed, ``status.json``, W&B finished), as ``main`` runs it; tests and sweeps in one process call this."""
    return run_command(cfg, train_and_report, CHECKS)


main = entry_point("train", CHECKS)(train_and_report)
"""``python -m mtfcdd.train`` / ``mtfcdd-train``."""


if __name__ == "__main__":
    main()
