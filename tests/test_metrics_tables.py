"""results.json / results.md and the W&B tables built from evaluator results."""

from __future__ import annotations

import json
import math
import warnings

import numpy as np
import pytest
import torch

from mtfcdd.metrics import tables
from mtfcdd.metrics.evaluator import MultiTypeEvaluator, UndefinedMetricWarning
from mtfcdd.metrics.tables import results_table, write_result_files

TYPES = ["pit", "missing_parts", "foreign_objects"]  # foreign_objects: no test image (NaN)


def results_for(mode: str = "multi", per_category: bool = False) -> dict:
    rng = np.random.default_rng(0)
    types = torch.tensor([-1, 0, 1, -1, 0, 1, -1, 1])
    masks = torch.zeros(8, 16, 16, dtype=torch.bool)
    masks[types >= 0, 4:8, 5:9] = True
    names = TYPES if mode == "multi" else ["anomaly"]
    maps = torch.from_numpy(rng.random((8, len(names), 16, 16)).astype(np.float32))
    maps[:, :, 4:8, 5:9] += masks[:, None, 4:8, 5:9] * 0.5
    evaluator = MultiTypeEvaluator(names, protocol="typed", mode=mode, per_category=per_category)
    evaluator.update(maps, masks, types, ["bottle", "cable"] * 4)
    with warnings.catch_warnings():
        warnings.simplefilter("ignore", UndefinedMetricWarning)
        return evaluator.compute()


def reject_nan(token: str):
    raise AssertionError(f"results.json holds {token}: not strict JSON")


def test_result_files_hold_every_number_and_paper_shaped_tables(tmp_path):
    results = results_for(per_category=True)
    paths = write_result_files(results, tmp_path / "run")
    assert [p.name for p in paths] == ["results.json", "results.md"]
    assert sorted(p.name for p in (tmp_path / "run").iterdir()) == ["results.json", "results.md"]  # no temp files
    saved = json.loads(paths[0].read_text(), parse_constant=reject_nan)
    assert saved["protocol"] == "typed" and saved["image_score"] == "max"
    assert saved["types"]["foreign_objects"]["i_auroc"] is None  # NaN -> null
    assert saved["types"]["pit"]["aupro"] == pytest.approx(results["types"]["pit"]["aupro"])
    assert saved["type_classification"]["confusion"] == results["type_classification"]["confusion"]
    assert set(saved["per_category"]) == {"bottle", "cable"}
    assert "step sum" in saved["definitions"]["ap"]

    markdown = paths[1].read_text()
    pit = results["types"]["pit"]
    row = f"| Pit | {100 * pit['i_auroc']:.1f} | {100 * pit['ap']:.1f} | {100 * pit['f1max']:.1f} |"
    assert row in markdown
    mean = results["mean"]
    assert f"| Mean | {100 * mean['p_auroc']:.1f} | {100 * mean['aupro']:.1f} |" in markdown
    assert "| Foreign Objects | n/a | n/a | n/a |" in markdown
    assert "| Missing Parts |" in markdown and "(as Table 3)" in markdown and "(as Table 4)" in markdown
    assert "Per category" in markdown and "| bottle |" in markdown


def test_single_mode_report_has_the_table_5_row(tmp_path):
    results = results_for(mode="single")
    found = results_table(results)
    assert "type_confusion" not in found
    columns, rows = found["single"]
    assert columns == ["method", "I-AUROC", "AUPRO"]
    assert rows[0][1] == pytest.approx(100 * results["types"]["anomaly"]["i_auroc"])
    markdown = write_result_files(results, tmp_path)[1].read_text()
    assert "(as Table 5)" in markdown and "Type classification" not in markdown


def test_tables_are_accepted_by_wandb():
    wandb = pytest.importorskip("wandb")
    for key, (columns, rows) in results_table(results_for(per_category=True)).items():
        assert all(len(row) == len(columns) for row in rows), key
        table = wandb.Table(columns=columns, data=rows)
        assert table.columns == columns and len(table.data) == len(rows)


def test_percent_and_names():
    assert tables.percent(0.9614) == pytest.approx(96.14) and tables.percent(math.nan) is None
    assert tables.display_name("missing_parts") == "Missing Parts"
    lines = tables.markdown_table(["a", "b"], [["x", 0.26], ["y", None]]).splitlines()
    assert lines[2:] == ["| x | 0.3 |", "| y | n/a |"]


@pytest.mark.parametrize("mode", ["multi", "single"])
def test_paper_means_stand_beside_ours_with_the_difference(tmp_path, mode):
    from mtfcdd.metrics.paper_results import PAPER_MEANS

    results = results_for(mode=mode)
    paper = PAPER_MEANS[mode][0.2]
    markdown = write_result_files(results, tmp_path, paper, 0.2)[1].read_text()
    assert f"## Against the paper (alpha = 0.2, mode {mode};" in markdown
    for metric, published in paper.items():
        ours = 100 * results["mean"][metric]
        row = f"| {tables.LABELS[metric]} | {ours:.1f} | {published:.1f} | {ours - published:.1f} |"
        assert row in markdown
    assert "Against the paper" not in write_result_files(results, tmp_path / "plain")[1].read_text()
