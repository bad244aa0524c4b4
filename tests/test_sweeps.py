"""Sweeps beyond a grid: an Optuna search through hydra-optuna-sweeper, on the tiny generated set."""

from __future__ import annotations

import csv
import math
import os
import subprocess
import sys
from pathlib import Path

import optuna
import pytest
import yaml
from hydra import compose, initialize_config_dir
from hydra.core.global_hydra import GlobalHydra
from hydra.core.hydra_config import HydraConfig
from omegaconf import OmegaConf, open_dict

from helpers.overrides import tiny_data
from helpers.wandb_records import run_summary
from mtfcdd.core.config import config_dir
from mtfcdd.run.loggers import build_loggers


def wandb_init_of(overrides: list[str], multirun: bool) -> dict:
    """The wandb.init arguments a job with these command-line overrides gets (as a single run or a sweep job)."""
    GlobalHydra.instance().clear()
    with initialize_config_dir(config_dir=config_dir(), version_base="1.3"):
        cfg = compose(config_name="train", overrides=["logger=wandb", *overrides], return_hydra_config=True)
    with open_dict(cfg):
        cfg.hydra.mode = "MULTIRUN" if multirun else "RUN"
        cfg.hydra.sweep.dir = "/sweeps/paper/multiruns/2026-01-02_03-04-05"
        cfg.paths.output_dir = "/tmp/unused"
    HydraConfig.instance().set_config(cfg)
    (logger,) = build_loggers(cfg)
    return logger._wandb_init


def test_every_job_of_a_sweep_shares_one_wandb_group_tagged_with_its_overrides():
    long_root = "/data/" + "x" * 80
    overrides = [
        "experiment=paper",
        "alpha=0.4",
        "mode=single",
        f"data.root={long_root}",
        "model.head_width=" + "1" * 70,
    ]
    init = wandb_init_of(overrides, multirun=True)
    assert init["group"] == "paper_2026-01-02_03-04-05"
    tags = list(init["tags"])
    assert tags[:2] == ["alpha=0.4", "mode=single"]  # the configured tags first, not repeated
    assert set(tags[2:]) == {"logger=wandb", "experiment=paper", "model.head_width=" + "1" * 46 + "…"}  # no data.root
    assert all(len(tag) <= 64 for tag in tags)
    single = wandb_init_of(overrides, multirun=False)
    assert single["group"] == "paper" and list(single["tags"]) == ["alpha=0.4", "mode=single"]


def last_logged(metrics_csv: Path, key: str) -> float:
    """The last value of ``key`` in a CSVLogger metrics file."""
    with metrics_csv.open() as f:
        values = [float(row[key]) for row in csv.DictReader(f) if row.get(key)]
    assert values, (metrics_csv, key)
    return values[-1]


def search(tmp_path: Path, tiny_realiad: Path, overrides: list[str]) -> subprocess.CompletedProcess:
    proc = subprocess.run(
        [
            sys.executable,
            "-m",
            "mtfcdd.train",
            "-m",
            "hparams_search=optuna",
            *overrides,
            *tiny_data(tiny_realiad),
            "debug=default",
            "logger=[csv,wandb]",
            f"paths.log_dir={tmp_path}/logs",
        ],
        capture_output=True,
        text=True,
        timeout=900,
        env={**os.environ, "WANDB_SILENT": "true"},
    )
    assert proc.returncode == 0, proc.stderr[-3000:]
    return proc


@pytest.mark.slow
def test_optuna_search_reports_the_best_trial_and_keeps_the_study(tmp_path, tiny_realiad):
    proc = search(tmp_path, tiny_realiad, ["hydra.sweeper.n_trials=3"])
    (sweep_dir,) = (tmp_path / "logs").glob("debug/default/multiruns/*")
    job_dirs = sorted(p for p in sweep_dir.iterdir() if p.is_dir())
    assert len(job_dirs) == 3, job_dirs
    # what each trial returned: val/i_auroc/mean at its end, as its own CSV log recorded it
    returned = [last_logged(job / "csv" / "metrics.csv", "val/i_auroc/mean") for job in job_dirs]
    results = yaml.safe_load((sweep_dir / "optimization_results.yaml").read_text())
    assert math.isclose(results["best_value"], max(returned), rel_tol=1e-6), (results, returned)
    assert set(results["best_params"]) == {
        "model.head_width",
        "model.optimizer.lr",
        "data.batch_size",
        "data.augment.p",
    }
    best_job = job_dirs[returned.index(max(returned))]
    job_overrides = yaml.safe_load((best_job / ".hydra" / "overrides.yaml").read_text())
    for key, value in results["best_params"].items():
        assert f"{key}={value}" in job_overrides, (key, value, job_overrides)
    # the study is stored: it loads with its three finished trials, ready to be continued
    study = optuna.load_study(study_name="default", storage=f"sqlite:///{sweep_dir / 'optuna.db'}")
    trials = study.get_trials(states=(optuna.trial.TrialState.COMPLETE,))
    assert sorted(t.value for t in trials) == pytest.approx(sorted(returned), rel=1e-6)
    assert "setup plugin alembic" not in proc.stdout + proc.stderr
    # one W&B group for the search, each trial tagged and configured with its sampled values
    runs = [run_summary(next(job.glob("wandb/offline-run-*/run-*.wandb"))) for job in job_dirs]
    assert {run["group"] for run in runs} == {f"default_{sweep_dir.name}"}
    for run, job in zip(runs, job_dirs):
        sampled = yaml.safe_load((job / ".hydra" / "overrides.yaml").read_text())[:4]
        assert set(sampled) <= set(run["tags"]) and "hparams_search=optuna" in run["tags"]
        assert {f"{k}={v}" for k, v in run["config"]["overrides"].items()} >= set(sampled)

    # a second command continues the same study from its database, with a sweep folder of its own
    search(
        tmp_path, tiny_realiad, ["hydra.sweeper.n_trials=1", f"hydra.sweeper.storage.path={sweep_dir / 'optuna.db'}"]
    )
    second = next(p for p in (tmp_path / "logs").glob("debug/default/multiruns/*") if p != sweep_dir)
    added = last_logged(next(second.glob("0_*")) / "csv" / "metrics.csv", "val/i_auroc/mean")
    study = optuna.load_study(study_name="default", storage=f"sqlite:///{sweep_dir / 'optuna.db'}")
    assert len(study.get_trials(states=(optuna.trial.TrialState.COMPLETE,))) == 4
    best = yaml.safe_load((second / "optimization_results.yaml").read_text())["best_value"]
    assert math.isclose(best, max([*returned, added]), rel_tol=1e-6)
    assert not (second / "optuna.db").exists()


def test_optuna_search_space_names_existing_keys_and_stores_under_the_sweep():
    GlobalHydra.instance().clear()
    with initialize_config_dir(config_dir=config_dir(), version_base="1.3"):
        cfg = compose(
            config_name="train", overrides=["hparams_search=optuna", "experiment=paper"], return_hydra_config=True
        )
    sweeper = cfg.hydra.sweeper
    assert sweeper._target_.endswith("OptunaSweeper") and sweeper.direction == "maximize"
    assert set(sweeper.params) == {"model.head_width", "model.optimizer.lr", "data.batch_size", "data.augment.p"}
    for key in sweeper.params:  # a misspelt key would make every trial ignore it
        assert OmegaConf.select(cfg, key) is not None, key
    assert sweeper.study_name == "paper" and sweeper.sampler.seed == cfg.seed
    assert sweeper.storage.path == f"{cfg.hydra.sweep.dir}/optuna.db"
