"""``report.csv`` (one row per finished job, fractions as in ``results.json``) and ``report.md`` (percent)."""

from __future__ import annotations

import csv
import io
from pathlib import Path

from mtfcdd.core.atomic_io import write_bytes_atomic
from mtfcdd.metrics.evaluator import ANY_DEFECT, METRICS
from mtfcdd.metrics.tables import LABELS, display_name, markdown_table, percent
from mtfcdd.report.jobs import SETTINGS, Job
from mtfcdd.report.labels import label_rows, label_table

SUMMARY_LABELS = {**LABELS, "type_accuracy": "type acc.", "type_macro_f1": "type macro-F1"}


def write_csv(rows: list[dict], path: Path) -> Path:
    """All columns of every row (empty cells for None), in the order of the first row's keys."""
    columns = list(rows[0]) if rows else ["job", *SETTINGS]
    buffer = io.StringIO()
    writer = csv.DictWriter(buffer, fieldnames=columns, lineterminator="\n")
    writer.writeheader()
    for row in rows:
        writer.writerow({key: "" if value is None else value for key, value in row.items()})
    return write_bytes_atomic(path, buffer.getvalue().encode())


def summary_table(rows: list[dict]) -> tuple[list[str], list[list]]:
    """Job, settings, mean metrics and type classification, in percent."""
    metrics = [*METRICS, "type_accuracy", "type_macro_f1"]
    columns = ["job", *SETTINGS, "test images", *(SUMMARY_LABELS[m] for m in metrics)]
    data = [
        [
            row["job"],
            *(row[key] for key in SETTINGS),
            row["test_images"],
            *(None if row[m] is None else percent(row[m]) for m in metrics),
        ]
        for row in rows
    ]
    return columns, data


def any_defect_table(rows: list[dict]) -> tuple[list[str], list[list]]:
    """The side-by-side of "is this part defective?": job, model, settings, the any-defect view's metrics and the
    type accuracy (n/a for models without type channels), in percent."""
    columns = ["job", *SETTINGS, *(LABELS[m] for m in METRICS), SUMMARY_LABELS["type_accuracy"]]
    data = [
        [
            row["job"],
            *(row[key] for key in SETTINGS),
            *(_pct(row[f"{ANY_DEFECT}/{m}"]) for m in METRICS),
            _pct(row["type_accuracy"]),
        ]
        for row in rows
    ]
    return columns, data


def problems_table(jobs: list[Job]) -> tuple[list[str], list[list]]:
    """Jobs without a row: their state and what is known about why."""
    return ["job", "state", "detail"], [[job.name, job.state, job.detail] for job in jobs if not job.reported]


def per_type_table(rows: list[dict], metric: str, types: list[str]) -> tuple[list[str], list[list]]:
    """One row per defect type (mode-multi jobs as columns), in percent."""
    multi = [row for row in rows if row["mode"] == "multi"]
    columns = ["Anomaly Type", *(row["job"] for row in multi)]
    data = [[display_name(name), *(_pct(row[f"{metric}/{name}"]) for row in multi)] for name in types]
    data.append(["Mean", *(_pct(row[metric]) for row in multi)])
    return columns, data


def _pct(value: float | None) -> float | None:
    return None if value is None else percent(value)


def _cell_text(value) -> str:
    return str(value).replace("|", "\\|")


def markdown(jobs: list[Job], rows: list[dict], types: list[str], plots: list[Path], out_dir: Path) -> str:
    """``report.md``: counts, the summary tables, the label-count table (a label-count sweep), jobs without
    results, per-type tables, the plots."""
    counts = {state: sum(job.state == state for job in jobs) for state in dict.fromkeys(job.state for job in jobs)}
    parts = [
        "# Sweep report",
        f"{len(jobs)} jobs: "
        + ", ".join(f"{n} {state}" for state, n in counts.items())
        + f"; {len(rows)} with test results. Values in percent (report.csv: fractions, as in each results.json); "
        "n/a = undefined or not applicable.",
        "## Any defect (is this part defective?)",
        markdown_table(*any_defect_table(rows)) if rows else "No job has test results yet.",
        "## Mean over defect types",
        markdown_table(*summary_table(rows)) if rows else "No job has test results yet.",
    ]
    if label_rows(rows):
        parts += ["## Against labelled defect images per type", markdown_table(*label_table(rows))]
    problems = problems_table(jobs)
    if problems[1]:
        parts += [
            "## Jobs without results",
            markdown_table(problems[0], [[_cell_text(v) for v in r] for r in problems[1]]),
        ]
    if types:
        parts.append("## Per defect type (mode multi)")
        for metric in METRICS:
            parts += [f"### {LABELS[metric]}", markdown_table(*per_type_table(rows, metric, types))]
    if plots:
        parts.append("## Plots")
        parts += [f"![{plot.stem}]({plot.relative_to(out_dir)})" for plot in plots]
    return "\n\n".join(parts) + "\n"


def write_markdown(text: str, path: Path) -> Path:
    """Write ``text`` to ``path`` atomically (UTF-8); returns ``path``."""
    return write_bytes_atomic(path, text.encode())
