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


def last_logged(metrics_csv: Path, key: str) -> float:
    """The last value of ``key`` in a CSVLogger metrics file."""
    with metrics_csv.open() as f:
        values = [float(row[key]) for row in csv.DictReader(f) if row.get(key)]
    assert values, (metrics_csv, key)
    return values[-1]


def search(tmp_path: Path, tiny_realiad: Path, overrides: list[str]) -> subprocess.CompletedProcess:
    proc = subprocess.run(
        [
            sys.executable, "-m", "mtfcdd.train", "-m", "hparams_search=optuna", *overrides,
            "data=synthetic", f"data.root={tiny_realiad}", "data.synthetic.preset=tiny", "debug=default",
            "logger=csv", f"paths.log_dir={tmp_path}/logs",
        ],
        capture_output=True, text=True, timeout=900,
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
    assert set(results["best_params"]) == {"model.head_width", "model.optimizer.lr", "data.batch_size", "data.augment.p"}
    best_job = job_dirs[returned.index(max(returned))]
    job_overrides = yaml.safe_load((best_job / ".hydra" / "overrides.yaml").read_text())
    for key, value in results["best_params"].items():
        assert f"{key}={value}" in job_overrides, (key, value, job_overrides)
    # the study is stored: it loads with its three finished trials, ready to be continued
    study = optuna.load_study(study_name="default", storage=f"sqlite:///{sweep_dir / 'optuna.db'}")
    trials = study.get_trials(states=(optuna.trial.TrialState.COMPLETE,))
    assert sorted(t.value for t in trials) == pytest.approx(sorted(returned), rel=1e-6)
    assert "setup plugin alembic" not in proc.stdout + proc.stderr

    # a second command continues the same study from its database, with a sweep folder of its own
    search(tmp_path, tiny_realiad, ["hydra.sweeper.n_trials=1", f"hydra.sweeper.storage.path={sweep_dir / 'optuna.db'}"])
    second = next(p for p in (tmp_path / "logs").glob("debug/default/multiruns/*") if p != sweep_dir)
    added = last_logged(next(second.glob("0_*")) / "csv" / "metrics.csv", "val/i_auroc/mean")
    study = optuna.load_study(study_name="default", storage=f"sqlite:///{sweep_dir / 'optuna.db'}")
    assert len(study.get_trials(states=(optuna.trial.TrialState.COMPLETE,))) == 4
    best = yaml.safe_load((second / "optimization_results.yaml").read_text())["best_value"]
    assert math.isclose(best, max([*returned, added]), rel_tol=1e-6)
    assert not (second / "optuna.db").exists()
