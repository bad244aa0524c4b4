"""A run's loggers, and what the run tells them and its user: parameter counts, the resolved config, the data summary,
results."""

from __future__ import annotations

import logging
from collections.abc import Mapping
from pathlib import Path
from typing import Any

from hydra.utils import instantiate
from lightning.pytorch.loggers import WandbLogger
from omegaconf import DictConfig, OmegaConf

from mtfcdd.core.checksum import checkpoint_identity
from mtfcdd.metrics.paper_results import paper_means, paper_setting_mismatches
from mtfcdd.metrics.tables import results_table, write_result_files
from mtfcdd.model.registry import model_entry, model_titles
from mtfcdd.run.sweep import task_overrides

log = logging.getLogger("mtfcdd")


def build_loggers(cfg: DictConfig) -> list:
    """The loggers of ``cfg.logger`` (none where the group is empty)."""
    return [instantiate(conf) for conf in (cfg.get("logger") or {}).values() if conf is not None]


def format_parameter_counts(counts: dict[str, int]) -> str:
    """One line per count, thousands separated: total, trainable (head), frozen (backbone)."""
    return "\n".join(f"  {name:<10}{value:>12,}" for name, value in counts.items())


def log_run_setup(objects: dict[str, Any]) -> None:
    """Print parameter counts; send the resolved config, parameter counts, command-line overrides and data summary
    to every logger."""
    cfg: DictConfig = objects["cfg"]
    model = objects["model"]
    counts = model.net.parameter_counts()
    title = f"{model_entry(cfg).title} ({cfg.model.backbone.name}, M={model.net.num_types})"
    print(f"{title} parameters:\n{format_parameter_counts(counts)}")
    hparams = OmegaConf.to_container(cfg, resolve=True)
    hparams["parameters"] = counts
    # the values this run was given on the command line: what sets a sweep's jobs apart
    hparams["overrides"] = task_overrides()
    rows = getattr(objects["datamodule"], "summary_rows", None)
    for logger in objects["loggers"]:
        logger.log_hyperparams(hparams)
        if isinstance(logger, WandbLogger) and rows:
            columns = list(rows[0])
            logger.log_table(key="data/summary", columns=columns, data=[[row[c] for c in columns] for row in rows])


def write_results(
    results: dict | None, output_dir: Path, loggers: list, cfg: DictConfig, checkpoints: Mapping[str, str | None]
) -> None:
    """results.json / results.md in the run directory (with the paper's means beside ours when the run is the
    paper's setting); the same tables to W&B. ``checkpoints``: ``checkpoint`` (and ``detector_checkpoint``) ->
    the file tested, None for weights in memory; results.json names each by ``checkpoint_identity``."""
    if results is None:
        return
    results = {**results, "checkpoints": {name: checkpoint_identity(path) for name, path in checkpoints.items()}}
    paper = paper_means(cfg, results["mode"])
    paths = write_result_files(results, output_dir, paper, cfg.alpha, model_titles())
    log.info("results written to %s", ", ".join(str(p) for p in paths))
    if paper is None:
        log.info("no paper comparison in results.md: %s", "; ".join(paper_setting_mismatches(cfg, results["mode"])))
    for logger in loggers:
        if isinstance(logger, WandbLogger):
            for key, (columns, rows) in results_table(results, paper, model_titles()).items():
                logger.log_table(key=f"test/{key}", columns=columns, data=rows)
