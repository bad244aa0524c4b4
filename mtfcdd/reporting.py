"""What a run tells its user and its loggers: parameter counts, the resolved config, the data summary, results."""

from __future__ import annotations

import contextlib
import logging
import sys
from collections.abc import Iterator
from pathlib import Path
from typing import Any

from lightning.pytorch.loggers import WandbLogger
from omegaconf import DictConfig, OmegaConf

from mtfcdd.errors import exit_on_user_error
from mtfcdd.metrics.tables import MODEL_TITLES, results_table, write_result_files
from mtfcdd.paper_results import paper_means, paper_setting_mismatches
from mtfcdd.sweep import task_overrides

log = logging.getLogger("mtfcdd")


def format_parameter_counts(counts: dict[str, int]) -> str:
    """One line per count, thousands separated: total, trainable (head), frozen (backbone)."""
    return "\n".join(f"  {name:<10}{value:>12,}" for name, value in counts.items())


def log_run_setup(objects: dict[str, Any]) -> None:
    """Print parameter counts; send the resolved config, parameter counts, command-line overrides and data summary
    to every logger."""
    cfg: DictConfig = objects["cfg"]
    model = objects["model"]
    counts = model.net.parameter_counts()
    print(f"{MODEL_TITLES.get(cfg.model.get('name'), 'MultiTypeFCDD')} ({cfg.model.backbone.name}, M={model.net.num_types}) parameters:\n{format_parameter_counts(counts)}")
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


def write_results(results: dict | None, output_dir: Path, loggers: list, cfg: DictConfig) -> None:
    """results.json / results.md in the run directory (with the paper's means beside ours when the run is the
    paper's setting); the same tables to W&B."""
    if results is None:
        return
    paper = paper_means(cfg, results["mode"])
    paths = write_result_files(results, output_dir, paper, cfg.alpha)
    log.info("results written to %s", ", ".join(str(p) for p in paths))
    if paper is None:
        log.info("no paper comparison in results.md: %s", "; ".join(paper_setting_mismatches(cfg, results["mode"])))
    for logger in loggers:
        if isinstance(logger, WandbLogger):
            for key, (columns, rows) in results_table(results, paper).items():
                logger.log_table(key=f"test/{key}", columns=columns, data=rows)


@contextlib.contextmanager
def task_scope() -> Iterator[None]:
    """An entry point's task: a user error becomes one clear line and exit status 2, and the W&B run is always
    finished (so that the jobs of a multirun never write into each other's run)."""
    with exit_on_user_error():
        try:
            yield
        finally:
            finish_wandb()


def finish_wandb() -> None:
    """Close the active W&B run, if any, so that the jobs of a multirun never write into each other's run."""
    wandb = sys.modules.get("wandb")
    if wandb is not None and wandb.run is not None:
        wandb.finish()
