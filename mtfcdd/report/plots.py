"""PNG figures of a sweep: every mean metric against alpha (one line per mode and backbone: single vs multi
channel), per backbone every metric against alpha with one line per defect type (mode multi), and for a label-count
sweep the metrics against labelled images per type (``mtfcdd.report.labels``).

Values in percent; where several jobs share a point (seeds, other settings) the line goes through their mean and
each job is a dot.
"""

from __future__ import annotations

import io
from collections import defaultdict
from pathlib import Path

from matplotlib.axes import Axes
from matplotlib.figure import Figure

from mtfcdd.core.atomic_io import write_bytes_atomic
from mtfcdd.core.defect_types import RGB
from mtfcdd.metrics.evaluator import METRICS
from mtfcdd.metrics.tables import LABELS, display_name
from mtfcdd.report.labels import label_plot, label_rows

MEAN_PANELS = (*METRICS, "type_accuracy")
PANEL_LABELS = {**LABELS, "type_accuracy": "type accuracy"}


def _save(fig: Figure, path: Path) -> Path:
    buffer = io.BytesIO()
    fig.savefig(buffer, format="png", dpi=110, bbox_inches="tight")
    return write_bytes_atomic(path, buffer.getvalue())


def _line(ax: Axes, points: dict[float, list[float]], **style) -> None:
    """A line through the mean at each alpha, and a dot per value."""
    alphas = sorted(points)
    (line,) = ax.plot(alphas, [sum(points[a]) / len(points[a]) for a in alphas], marker="o", **style)
    for alpha in alphas:
        ax.scatter([alpha] * len(points[alpha]), points[alpha], s=10, alpha=0.5, color=line.get_color())


def _axes(count: int, title: str) -> tuple[Figure, list[Axes]]:
    """A figure of ``count`` panels, 3 a row (matplotlib's object API: no pyplot, no global backend)."""
    cols = 3
    rows = -(-count // cols)
    fig = Figure(figsize=(4.2 * cols, 3.3 * rows), layout="constrained")
    grid = fig.subplots(rows, cols, squeeze=False)
    fig.suptitle(title)
    axes = list(grid.flat)
    for ax in axes[count:]:
        ax.set_visible(False)
    return fig, axes[:count]


def _finish(ax: Axes, label: str, alphas: list[float]) -> None:
    ax.set_title(label)
    ax.set_xlabel("alpha")
    ax.set_ylabel("%")
    ax.set_xticks(alphas)
    ax.grid(alpha=0.3)


def mean_metrics_plot(rows: list[dict], path: Path) -> Path:
    """Every mean metric and the type accuracy against alpha; one line per (mode, backbone)."""
    alphas = sorted({row["alpha"] for row in rows})
    fig, axes = _axes(len(MEAN_PANELS), "Mean over defect types against alpha: single vs multi channel")
    for ax, metric in zip(axes, MEAN_PANELS):
        groups: dict[tuple, dict[float, list[float]]] = defaultdict(lambda: defaultdict(list))
        for row in rows:
            if row[metric] is not None:
                groups[(row["mode"], row["backbone"])][row["alpha"]].append(100 * row[metric])
        for (mode, backbone), points in sorted(groups.items(), key=lambda item: tuple(map(str, item[0]))):
            _line(ax, points, label=f"{mode} ({backbone})", linestyle="-" if mode == "multi" else "--")
        _finish(ax, PANEL_LABELS[metric], alphas)
    handles, labels = axes[0].get_legend_handles_labels()
    fig.legend(handles, labels, loc="outside lower center", ncols=min(4, max(1, len(labels))), fontsize=8)
    return _save(fig, path)


def per_type_plot(rows: list[dict], types: list[str], backbone: str, path: Path, colours: dict[str, RGB]) -> Path:
    """Mode multi, one backbone: every metric against alpha, one line per defect type (in ``colours[type]``, RGB
    0-255) and the mean (black)."""
    rows = [row for row in rows if row["mode"] == "multi" and row["backbone"] == backbone]
    alphas = sorted({row["alpha"] for row in rows})
    fig, axes = _axes(len(METRICS), f"Per defect type against alpha (mode multi, {backbone})")
    for ax, metric in zip(axes, METRICS):
        for name in types:
            points: dict[float, list[float]] = defaultdict(list)
            for row in rows:
                if row[f"{metric}/{name}"] is not None:
                    points[row["alpha"]].append(100 * row[f"{metric}/{name}"])
            if points:
                colour = tuple(c / 255 for c in colours[name])
                _line(ax, points, label=display_name(name), color=colour)
        means: dict[float, list[float]] = defaultdict(list)
        for row in rows:
            if row[metric] is not None:
                means[row["alpha"]].append(100 * row[metric])
        if means:
            _line(ax, means, label="Mean", color="black", linestyle="--", linewidth=2)
        _finish(ax, LABELS[metric], alphas)
    handles, labels = axes[0].get_legend_handles_labels()
    fig.legend(handles, labels, loc="outside lower center", ncols=5, fontsize=8)
    return _save(fig, path)


def write_plots(rows: list[dict], types: list[str], out_dir: Path, colours: dict[str, RGB]) -> list[Path]:
    """The figures for ``rows`` under ``out_dir/plots`` (``colours``: type name -> RGB 0-255, see
    ``mtfcdd.report.jobs.type_colours``); none when no job has results."""
    if not rows:
        return []
    plots = [mean_metrics_plot(rows, out_dir / "plots" / "mean_vs_alpha.png")]
    # results written by an older `evaluate` do not name their backbone: no per-type figure for those
    backbones = sorted({row["backbone"] for row in rows if row["mode"] == "multi" and row["backbone"]})
    for backbone in backbones:
        path = out_dir / "plots" / f"per_type_vs_alpha_{backbone}.png"
        plots.append(per_type_plot(rows, types, backbone, path, colours))
    if label_rows(rows):
        plots.append(label_plot(rows, out_dir / "plots" / "metrics_vs_labels.png", _save))
    return plots
