"""`python -m mtfcdd.evaluate` on a checkpoint trained here: results files, heatmaps, protocols, safe loading."""

from __future__ import annotations

import json
import subprocess
import sys
from pathlib import Path

import pytest
import torch

from mtfcdd.model.checkpoint import CheckpointError, load_pipeline


@pytest.fixture(scope="module")
def trained_checkpoint(trained_run) -> Path:
    return trained_run("max") / "checkpoints" / "last.ckpt"


def test_checkpoint_loads_with_weights_only(trained_checkpoint):
    raw = torch.load(trained_checkpoint, map_location="cpu", weights_only=True)
    assert "state_dict" in raw and "mtfcdd_config" in raw
    # the data module's arguments (its save_hyperparameters), stored as plain values
    assert {"root", "alpha", "batch_size", "synthetic"} <= set(raw["datamodule_hyper_parameters"])
    pipeline, cfg = load_pipeline(trained_checkpoint)
    # thresholds are calibrated for the types that the (tiny) validation split holds
    assert pipeline.num_types == 8 and torch.isfinite(pipeline.image_threshold).any()


@pytest.mark.parametrize("protocol", ["paper", "typed"])
def test_evaluate_writes_results_and_heatmaps(tmp_path, trained_checkpoint, protocol):
    proc = subprocess.run(
        [
            sys.executable,
            "-m",
            "mtfcdd.evaluate",
            f"ckpt_path={trained_checkpoint}",
            "trainer=cpu",
            f"model.evaluation.protocol={protocol}",
            "alpha=0.1",
            f"paths.log_dir={tmp_path}/logs",
        ],
        capture_output=True,
        text=True,
        timeout=600,
    )
    assert proc.returncode == 0, proc.stderr[-3000:]
    (run,) = list((tmp_path / "logs").glob("evaluate/*/runs/*"))
    results = json.loads((run / "results.json").read_text())
    assert results["protocol"] == protocol
    assert (run / "results.md").read_text().count("| Mean |") >= 2
    assert (run / "heatmaps" / "test.png").is_file()
    assert sum(1 for _ in (run / "predictions.jsonl").open()) == results["counts"]["images"]
    if protocol == "typed":  # the training run's own test: same weights, data and protocol, so the same numbers
        trained = json.loads((trained_checkpoint.parents[1] / "results.json").read_text())
        assert results["counts"] == trained["counts"]
        for name, value in trained["mean"].items():
            assert results["mean"][name] == pytest.approx(value, rel=1e-6, nan_ok=True), name


def test_evaluate_rejects_a_missing_checkpoint(tmp_path):
    with pytest.raises(CheckpointError, match="no such file"):
        load_pipeline(tmp_path / "nope.ckpt")
    proc = subprocess.run(
        [sys.executable, "-m", "mtfcdd.evaluate", f"ckpt_path={tmp_path / 'nope.ckpt'}", f"paths.log_dir={tmp_path}/l"],
        capture_output=True,
        text=True,
        timeout=300,
    )
    assert proc.returncode == 2 and "nope.ckpt" in proc.stderr


def test_evaluate_keeps_the_checkpoints_image_score_and_may_change_the_type_rule(tmp_path, trained_checkpoint):
    from helpers.hydra_compose import compose_config
    from mtfcdd.core.config import ConfigError
    from mtfcdd.evaluate import evaluation_config

    pipeline, trained = load_pipeline(trained_checkpoint, type_rule="calibrated")
    assert pipeline.type_rule == "calibrated" and trained.model.evaluation.image_score == "max"
    cfg = compose_config(tmp_path, [f"ckpt_path={trained_checkpoint}"], config_name="evaluate")
    assert evaluation_config(cfg, trained).model.evaluation.image_score == "max"  # null: the checkpoint's
    cfg = compose_config(
        tmp_path, [f"ckpt_path={trained_checkpoint}", "model.evaluation.image_score=mean"], config_name="evaluate"
    )
    with pytest.raises(ConfigError, match="calibrated on image_score='max'"):
        evaluation_config(cfg, trained)
