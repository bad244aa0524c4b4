"""How many labels does a user need: when the reported mode-multi jobs differ by ``data.train_defects_per_type``,
a figure and a table of typed mean I-AUROC, typed mean AUPRO, any-defect I-AUROC and type accuracy against the
labelled defect images per type in training, with the PatchCore jobs (no labels) as reference lines."""

from __future__ import annotations

import json
from collections import defaultdict
from pathlib import Path

from matplotlib.figure import Figure

from mtfcdd.metrics.evaluator import ANY_DEFECT
from mtfcdd.metrics.tables import percent

PANELS = {
    "i_auroc": "typed mean I-AUROC",
    "aupro": "typed mean AUPRO",
    f"{ANY_DEFECT}/i_auroc": "any-defect I-AUROC",
    "type_accuracy": "type accuracy",
}
"""Row key -> panel (and table column) title."""
REFERENCES = {"aupro": f"{ANY_DEFECT}/aupro", f"{ANY_DEFECT}/i_auroc": f"{ANY_DEFECT}/i_auroc"}
"""Panel row key -> the PatchCore row key drawn on it as a horizontal line."""
REFERENCE_MODEL = "patchcore"


def labels_used(split_dir: Path) -> int | None:
    """The most defective training images of any one type in a folder split (``<split_dir>/realiad_jsons/*.json``,
    written by ``data=folder``: records whose ``anomaly_class`` is not the meta's ``normal_class``); None where
    there is no readable split."""
    counts: dict[str, int] = defaultdict(int)
    files = sorted((split_dir / "realiad_jsons").glob("*.json"))
    for path in files:
        try:
            document = json.loads(path.read_text())
            normal = document["meta"]["normal_class"]
            for record in document["train"]:
                if record["anomaly_class"] != normal:
                    counts[record["anomaly_class"]] += 1
        except (OSError, ValueError, KeyError, TypeError):
            return None
    return max(counts.values()) if counts else None


def _label(row: dict) -> str:
    if row["labels_per_type"] is None:
        return "all" if row["labels_used"] is None else f"all ({row['labels_used']})"
    return str(row["labels_per_type"])


def _x(row: dict) -> int | None:
    """The labelled images per type a row trained on: counted in its split, else as configured (None: unknown)."""
    return row["labels_used"] if row["labels_used"] is not None else row["labels_per_type"]


def label_rows(rows: list[dict]) -> list[dict]:
    """The mode-multi rows of a label-count sweep, fewest labels first; empty unless at least two values of
    ``data.train_defects_per_type`` were run."""
    multi = [row for row in rows if row["mode"] == "multi" and row["model"] != REFERENCE_MODEL]
    if len({row["labels_per_type"] for row in multi}) < 2 or any(_x(row) is None for row in multi):
        return []
    return sorted(multi, key=lambda row: (_x(row), row["labels_per_type"] is None))


def references(rows: list[dict]) -> list[dict]:
    """The PatchCore rows (no labels): the reference lines."""
    return [row for row in rows if row["model"] == REFERENCE_MODEL]


def label_table(rows: list[dict]) -> tuple[list[str], list[list]]:
    """Labelled images per type, job, the panels' metrics in percent (n/a where undefined); PatchCore rows last."""
    columns = ["labelled images per type", "job", *PANELS.values()]

    def cells(row: dict) -> list:
        return [None if row[key] is None else percent(row[key]) for key in PANELS]

    data = [[_label(row), row["job"], *cells(row)] for row in label_rows(rows)]
    data += [["none (PatchCore)", row["job"], *cells(row)] for row in references(rows)]
    return columns, data


def label_plot(rows: list[dict], path: Path, save) -> Path:
    """The four panels against labelled images per type (log axis, mean of jobs sharing a count, each job a dot),
    PatchCore's any-defect I-AUROC and AUPRO dashed; ``save(fig, path)`` writes the PNG."""
    sweep = label_rows(rows)
    points: dict[int, list[dict]] = defaultdict(list)
    for row in sweep:
        points[_x(row)].append(row)
    xs = sorted(points)
    ticks = {x: " / ".join(dict.fromkeys(_label(row) for row in points[x])) for x in xs}
    fig = Figure(figsize=(4.2 * len(PANELS), 3.6), layout="constrained")
    axes = fig.subplots(1, len(PANELS), squeeze=False)[0]
    fig.suptitle("MultiTypeFCDD against labelled defect images per type (PatchCore: no labels)")
    for ax, (key, title) in zip(axes, PANELS.items()):
        values = {x: [100 * row[key] for row in points[x] if row[key] is not None] for x in xs}
        line_x = [x for x in xs if values[x]]
        ax.plot(line_x, [sum(values[x]) / len(values[x]) for x in line_x], marker="o", label="MultiTypeFCDD")
        for x in line_x:
            ax.scatter([x] * len(values[x]), values[x], s=10, alpha=0.5, color="C0")
        for k, ref in enumerate(references(rows)):
            if key in REFERENCES and ref[REFERENCES[key]] is not None:
                ax.axhline(
                    100 * ref[REFERENCES[key]], color=f"C{k + 1}", linestyle="--", label=f"PatchCore ({ref['job']})"
                )
        ax.set_xscale("log")
        ax.set_xticks(xs, [ticks[x] for x in xs])
        ax.minorticks_off()
        ax.set_title(title)
        ax.set_xlabel("labelled defect images per type")
        ax.set_ylabel("%")
        ax.grid(alpha=0.3)
    handles: dict = {}
    for ax in axes:
        for handle, label in zip(*ax.get_legend_handles_labels()):
            handles.setdefault(label, handle)
    fig.legend(
        list(handles.values()), list(handles), loc="outside lower center", ncols=min(4, len(handles)), fontsize=8
    )
    return save(fig, path)
