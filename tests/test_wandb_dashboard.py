"""The W&B dashboard of a run: what lands in an offline run's files after a tiny two-epoch training and test."""

from __future__ import annotations

import json
import re
from pathlib import Path

import pytest
from test_train import tiny_overrides

from helpers.hydra_compose import compose_config
from helpers.wandb_offline import history, records, run_info
from mtfcdd.callbacks.wandb_dashboard import confusion_labels
from mtfcdd.train import run_task


def test_confusion_labels_expand_counts():
    true, predicted = confusion_labels([[2, 0], [1, 3]])
    assert sorted(zip(true, predicted)) == [(0, 0), (0, 0), (1, 0), (1, 1), (1, 1), (1, 1)]


@pytest.fixture(scope="module")
def offline_run(tmp_path_factory, tiny_realiad) -> tuple[Path, Path]:
    tmp_path = tmp_path_factory.mktemp("dashboard")
    overrides = [*tiny_overrides(tiny_realiad), "logger=wandb", "trainer.max_epochs=2"]
    cfg = compose_config(tmp_path, overrides)
    run_task(cfg)
    output = Path(cfg.paths.output_dir)
    (run_dir,) = output.glob("wandb/offline-run-*")
    return output, run_dir


def _table(run_dir: Path, key: str) -> dict:
    """The last table logged under ``key`` (files are named ``<key>_table_<step>_<hash>.table.json``)."""
    found = list(run_dir.glob(f"files/media/table/{key}_table_*.table.json"))
    assert found, f"no table logged under {key}"
    latest = max(found, key=lambda p: int(re.search(r"_table_(\d+)_", p.name).group(1)))
    return json.loads(latest.read_text())


def test_per_type_validation_curves_over_epochs(offline_run):
    output, run_dir = offline_run
    steps = [step for step in history(run_dir) if "val/i_auroc/pit" in step]
    assert [step["epoch"] for step in steps] == [0, 1]
    metrics = {
        r.metric.glob_name or r.metric.name: r.metric.step_metric
        for r in records(next(run_dir.glob("run-*.wandb")))
        if r.WhichOneof("record_type") == "metric"
    }
    assert metrics.get("val/*") == "epoch"
    curve = _table(run_dir, "val/curves/i_auroc")
    assert set(curve["columns"]) >= {"step", "lineKey", "lineVal"}
    epochs = {row[curve["columns"].index("step")] for row in curve["data"]}
    lines = {row[curve["columns"].index("lineKey")] for row in curve["data"]}
    assert epochs == {0, 1} and "Pit" in lines and "Any Defect" in lines and len(lines) == 9


def test_test_confusion_matrix_chart_and_per_type_bars(offline_run):
    output, run_dir = offline_run
    results = json.loads((output / "results.json").read_text())
    matrix = _table(run_dir, "test/confusion_matrix")
    columns = matrix["columns"]
    assert columns[:3] == ["Actual", "Predicted", "nPredictions"]
    logged = {(row[0], row[1]): row[2] for row in matrix["data"]}
    names = [name.replace("_", " ").title() for name in results["types"]]
    confusion = results["type_classification"]["confusion"]
    for i, true in enumerate(names):
        for j, predicted in enumerate(names):
            assert logged.get((true, predicted), 0) == confusion[i][j]
    bars = _table(run_dir, "test/bars/aupro")
    rows = {row[0]: row[bars["columns"].index("AUPRO")] for row in bars["data"]}
    for name, entry in results["types"].items():
        expected = None if entry["aupro"] is None else 100 * entry["aupro"]
        assert rows[name.replace("_", " ").title()] == pytest.approx(expected)


def test_heatmap_grid_per_validation_epoch(offline_run):
    output, run_dir = offline_run
    status = json.loads((output / "status.json").read_text())
    assert status["wandb"]["group"] == run_info(run_dir).run_group == "default"
    assert sorted(p.name for p in (output / "heatmaps").glob("val_epoch*.png")) == [
        "val_epoch000.png",
        "val_epoch001.png",
    ]
    assert len(list(run_dir.glob("files/media/images/val/heatmaps_*.png"))) == 2
