"""Train MultiTypeFCDD: ``python -m mtfcdd.train alpha=0.2`` (Hydra; ``-m`` sweeps, e.g. ``-m alpha=0.1,0.2,0.4 mode=single,multi``).

Everything a run writes goes under its Hydra run directory: checkpoints, W&B/CSV logs, results and heatmaps.
An interrupted run continues in the same directory and W&B run with ``resume=true hydra.run.dir=<its directory>``.
Returns the value of ``optimized_metric`` to a Hydra sweeper.
"""

from __future__ import annotations

import logging
import warnings
from pathlib import Path
from typing import Any

import lightning as L
import torch
from omegaconf import DictConfig, OmegaConf

from mtfcdd.run.checks import validate
from mtfcdd.model.build import build_module
from mtfcdd.run.lifecycle import finish_wandb
from mtfcdd.run.loggers import log_run_setup, write_results
from mtfcdd.resume.run_dir import resume_checkpoint, set_wandb_run_id
from mtfcdd.run.build import build_datamodule, build_trainer
from mtfcdd.run.lifecycle import entry_point
from mtfcdd.run.loggers import build_loggers
from mtfcdd.run.status import wandb_target, write_status

log = logging.getLogger("mtfcdd")

# the frozen backbone is in eval mode on purpose (BatchNorm statistics must not move)
warnings.filterwarnings("ignore", message=r"Found \d+ module\(s\) in eval mode", category=UserWarning)


def train(cfg: DictConfig) -> tuple[dict[str, Any], dict[str, Any]]:
    """Fit (and test) one run; returns (metrics, objects)."""
    validate(cfg)
    ckpt_path = resume_checkpoint(cfg)
    if ckpt_path:
        log.info("continuing from checkpoint %s", ckpt_path)
    L.seed_everything(cfg.seed, workers=True)
    output_dir = Path(cfg.paths.output_dir)
    set_wandb_run_id(cfg)
    datamodule = build_datamodule(cfg)
    model = build_module(cfg)
    model.run_config = OmegaConf.to_container(cfg, resolve=True)
    loggers = build_loggers(cfg)
    trainer = build_trainer(cfg, loggers)
    objects = {"cfg": cfg, "datamodule": datamodule, "model": model, "trainer": trainer, "loggers": loggers}
    log_run_setup(objects)

    checkpoints = {"best": "", "last": ""}
    if cfg.train:
        trainer.fit(model=model, datamodule=datamodule, ckpt_path=ckpt_path, weights_only=True)
        if trainer.checkpoint_callback is not None:
            callback = trainer.checkpoint_callback
            checkpoints = {"best": callback.best_model_path, "last": callback.last_model_path}
    objects["checkpoints"] = checkpoints
    metrics = {key: value.item() if torch.is_tensor(value) else value for key, value in trainer.callback_metrics.items()}
    if cfg.test:
        tested = checkpoints[cfg.test_ckpt] or None
        trainer.test(model=model, datamodule=datamodule, ckpt_path=tested, weights_only=True)
        metrics.update({key: value.item() if torch.is_tensor(value) else value for key, value in trainer.callback_metrics.items()})
        write_results(model.test_results, output_dir, loggers, cfg)
    return metrics, objects


def run_task(cfg: DictConfig) -> float | None:
    """Run :func:`train`, always closing experiment loggers (one W&B run per multirun job), record the job's
    ``status.json`` (running, then finished or failed) and print where things went; returns the value of ``optimized_metric`` (None where the run has none)."""
    output_dir = Path(cfg.paths.output_dir)
    wandb = wandb_target(cfg)
    write_status(output_dir, "running", wandb=wandb)
    try:
        metrics, objects = train(cfg)
    except BaseException as err:
        write_status(output_dir, "failed", error=f"{type(err).__name__}: {err}", wandb=wandb)
        raise
    finally:
        finish_wandb()  # also when called without the command's wrapper (tests, sweeps in one process)
    write_status(output_dir, "finished", wandb=wandb)
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


main = entry_point("train")(run_task)
"""``python -m mtfcdd.train`` / ``mtfcdd-train``."""


if __name__ == "__main__":
    main()
