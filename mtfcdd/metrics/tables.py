"""Result files and tables from ``MultiTypeEvaluator.compute`` results.

``results.json``: every number as computed (fractions in [0, 1]; NaN written as ``null``). ``results.md``: tables
shaped like the paper's (values in percent, one decimal): Table 3 (image level: I-AUROC, AP, F1m per type and
Mean), Table 4 (pixel level: P-AUROC, AUPRO), Table 5 (mode single: I-AUROC, AUPRO), then type classification and
the per-category breakdown when present, and the paper's published means beside the run's when the run is the
paper's setting (``paper``: ``mtfcdd.metrics.paper_results.paper_means``). ``titles`` maps the ``model.name``
values in a results' ``model`` to display names (``mtfcdd.model.registry.model_titles``; a name without one is
shown as itself).
"""

from __future__ import annotations

import json
import math
from collections.abc import Mapping
from pathlib import Path

from mtfcdd.core.atomic_io import write_bytes_atomic
from mtfcdd.metrics.evaluator import ANY_DEFECT, METRICS

LABELS = {"i_auroc": "I-AUROC", "ap": "AP", "f1max": "F1m", "p_auroc": "P-AUROC", "aupro": "AUPRO"}
IMAGE_METRICS = ("i_auroc", "ap", "f1max")
PIXEL_METRICS = ("p_auroc", "aupro")
SINGLE_METRICS = ("i_auroc", "aupro")


def model_title(model: str, titles: Mapping[str, str] | None = None) -> str:
    """The display name of a results' ``model`` (``mtfcdd+patchcore``: "MultiTypeFCDD + PatchCore", the type
    channels with a detector's any-defect view)."""
    return " + ".join((titles or {}).get(name, name) for name in model.split("+"))


def any_defect_text(results: dict, titles: Mapping[str, str] | None = None) -> str:
    """How the any-defect view of ``results`` was made, one sentence."""
    types, *detector = results.get("model", "").split("+")
    if detector:
        return (
            f"One map and one score per image from the detector ({model_title(detector[0], titles)}, with its "
            f"calibrated threshold); the type channels ({model_title(types, titles)}) say which defect. "
            "Positives = every defect image and pixel."
        )
    return (
        "One map and one score per image: the maximum over the type channels (see the pipeline's anomaly_scale); "
        "positives = every defect image and pixel."
    )


TYPE_RULE_TEXT = {
    "calibrated": "Predicted type: argmax over the type scores divided by their calibrated thresholds.",
    "raw": "Predicted type: argmax over the raw type scores.",
}


def display_name(type_name: str) -> str:
    """``"missing_parts"`` -> ``"Missing Parts"`` (the paper's row labels)."""
    return type_name.replace("_", " ").title()


def percent(value: float) -> float | None:
    """A fraction as percent (None for NaN)."""
    return None if math.isnan(value) else 100.0 * value


def _metric_rows(results: dict, metrics: tuple[str, ...]) -> list[list]:
    rows = [[display_name(name), *(percent(entry[m]) for m in metrics)] for name, entry in results["types"].items()]
    if results["mode"] == "multi":
        rows.append(["Mean", *(percent(results["mean"][m]) for m in metrics)])
    return rows


def paper_table(results: dict, paper: dict[str, float]) -> tuple[list[str], list[list]]:
    """The run's means beside the paper's (percent) and the difference, one row per published metric."""
    rows = []
    for metric, published in paper.items():
        ours = percent(results["mean"][metric])
        rows.append([LABELS[metric], ours, published, None if ours is None else ours - published])
    return ["metric", "this run", "paper", "difference"], rows


def results_table(
    results: dict, paper: dict[str, float] | None = None, titles: Mapping[str, str] | None = None
) -> dict[str, tuple[list[str], list[list]]]:
    """Tables as ``key -> (columns, rows)`` for ``wandb.Table`` (values in percent, None for NaN).

    Keys: ``any_defect`` (the any-defect view: every metric, one row), ``image`` and ``pixel`` (per type + Mean),
    ``single`` (mode single: I-AUROC, AUPRO), ``type_confusion`` (mode multi: rows = true type, columns = predicted),
    ``per_category`` (when present: the mean over types of every metric and the type accuracy, per category),
    ``paper`` (when ``paper`` means are given: see ``paper_table``).
    """
    tables = {
        ANY_DEFECT: (
            ["view", *(LABELS[m] for m in METRICS)],
            [["Any defect", *(percent(results[ANY_DEFECT][m]) for m in METRICS)]],
        ),
        "image": (["Anomaly Type", *(LABELS[m] for m in IMAGE_METRICS)], _metric_rows(results, IMAGE_METRICS)),
        "pixel": (["Anomaly Type", *(LABELS[m] for m in PIXEL_METRICS)], _metric_rows(results, PIXEL_METRICS)),
    }
    names = [display_name(name) for name in results["types"]]
    if results["mode"] == "single":
        method = model_title(results.get("model", "this run"), titles)
        tables["single"] = (
            ["method", *(LABELS[m] for m in SINGLE_METRICS)],
            [[method, *(percent(results["mean"][m]) for m in SINGLE_METRICS)]],
        )
    else:
        confusion = results["type_classification"]["confusion"]
        rows = [[name, *row] for name, row in zip(names, confusion)]
        tables["type_confusion"] = (["true \\ predicted", *names], rows)
    if "per_category" in results:
        columns = ["category", *(LABELS[m] for m in METRICS)]
        rows = []
        for category, scope in results["per_category"].items():
            row = [category, *(percent(scope["mean"][m]) for m in METRICS)]
            if results["mode"] == "multi":
                row.append(percent(scope["type_classification"]["accuracy"]))
            rows.append(row)
        if results["mode"] == "multi":
            columns.append("type accuracy")
        tables["per_category"] = (columns, rows)
    if paper:
        tables["paper"] = paper_table(results, paper)
    return tables


def _cell(value) -> str:
    if value is None:
        return "n/a"
    return f"{value:.1f}" if isinstance(value, float) else str(value)


def markdown_table(columns: list[str], rows: list[list]) -> str:
    """A Markdown table (floats with one decimal, None as ``n/a``)."""
    lines = ["| " + " | ".join(columns) + " |", "|" + "|".join(["---"] + ["---:"] * (len(columns) - 1)) + "|"]
    lines += ["| " + " | ".join(_cell(value) for value in row) + " |" for row in rows]
    return "\n".join(lines)


def markdown_report(
    results: dict,
    paper: dict[str, float] | None = None,
    alpha: float | None = None,
    titles: Mapping[str, str] | None = None,
) -> str:
    """``results.md``: the settings, then the paper-shaped tables (percent, one decimal); with ``paper`` (the
    published means for this run's ``alpha`` and mode) a comparison table first."""
    tables = results_table(results, paper, titles)
    counts = results["counts"]
    parts = [
        f"# {model_title(results['model'], titles)} test results" if "model" in results else "# Test results",
        f"Protocol `{results['protocol']}`, image score `{results['image_score']}`, mode `{results['mode']}`; "
        f"{counts['images']} test images, {counts['anomalous_images']} anomalous. Values in percent; n/a = undefined "
        "(no positives). AP: " + results["definitions"]["ap"] + ". AUPRO: " + results["definitions"]["aupro"] + ".",
    ]
    if "paper" in tables:
        source = "Table 5" if results["mode"] == "single" else "Tables 3 and 4, Mean rows"
        parts += [
            f"## Against the paper (alpha = {alpha}, mode {results['mode']}; {source})",
            markdown_table(*tables["paper"]),
        ]
    parts += [
        "## Any defect (is this part defective?)",
        any_defect_text(results, titles),
        markdown_table(*tables[ANY_DEFECT]),
    ]
    if results["mode"] == "single":
        parts += ["## Multi-class anomaly detection (as Table 5)", markdown_table(*tables["single"])]
    parts += [
        "## Image level (as Table 3)",
        markdown_table(*tables["image"]),
        "## Pixel level (as Table 4)",
        markdown_table(*tables["pixel"]),
    ]
    if results["mode"] == "multi":
        classification = results["type_classification"]
        accuracy, macro_f1 = percent(classification["accuracy"]), percent(classification["macro_f1"])
        parts += [
            "## Type classification (anomalous images)",
            TYPE_RULE_TEXT.get(results.get("type_rule"), "Predicted type: argmax over the type scores."),
            f"Accuracy {_cell(accuracy)}, macro-F1 {_cell(macro_f1)} over {classification['num_images']} images. "
            "Confusion matrix (rows = true type):",
            markdown_table(*tables["type_confusion"]),
        ]
    if "per_category" in tables:
        parts += ["## Per category (mean over types)", markdown_table(*tables["per_category"])]
    return "\n\n".join(parts) + "\n"


def _strict_json(value):
    """NaN -> None, recursively (strict JSON has no NaN)."""
    if isinstance(value, float) and math.isnan(value):
        return None
    if isinstance(value, dict):
        return {key: _strict_json(item) for key, item in value.items()}
    if isinstance(value, (list, tuple)):
        return [_strict_json(item) for item in value]
    return value


def write_result_files(
    results: dict,
    output_dir: Path | str,
    paper: dict[str, float] | None = None,
    alpha: float | None = None,
    titles: Mapping[str, str] | None = None,
) -> list[Path]:
    """Write ``results.json`` and ``results.md`` (with the ``paper`` comparison for ``alpha`` when given) into
    ``output_dir`` (created if needed); returns their paths."""
    output_dir = Path(output_dir)
    json_path, md_path = output_dir / "results.json", output_dir / "results.md"
    write_bytes_atomic(json_path, (json.dumps(_strict_json(results), indent=2, allow_nan=False) + "\n").encode())
    write_bytes_atomic(md_path, markdown_report(results, paper, alpha, titles).encode())
    return [json_path, md_path]
