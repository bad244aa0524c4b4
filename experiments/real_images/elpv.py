"""ELPV electroluminescence solar cells (PyPI ``elpv-dataset``) written into mtfcdd's per-type folder layout.

ELPV holds 2,624 gray 300x300 cells of two module kinds (``mono``, ``poly``), each with the probability, given by
experts, that it is defective: 0, 1/3, 2/3 or 1. Its images are licensed CC BY-NC-SA 4.0 (non-commercial, share
alike): they are read from the installed package at run time and never committed.

Only the **mono** cells are written. The poly cells are kept for an independent check of generalisation: nothing
here trains, tunes or reports on them. Layout::

    <out>/cells/good/cellNNNN.png        probability 0 (normal)
    <out>/cells/defect/cellNNNN.png      probability 1 (defective)
    <out>/unsure/p33/, unsure/p67/       probability 1/3 and 2/3: never trained on; scored as a separate group
"""

from __future__ import annotations

import csv
import importlib.util
import shutil
from pathlib import Path

KIND = "mono"
"""The module kind written; the other (``poly``) is held out of every run."""
DEFECT_TYPE = "defect"
"""The type folder of the probability-1 cells (ELPV labels defectiveness, not a defect type)."""
UNSURE = {1 / 3: "p33", 2 / 3: "p67"}
"""Folder of the unsure cells by probability."""
LICENCE = "ELPV images: CC BY-NC-SA 4.0 (https://github.com/zae-bayern/elpv-dataset); not for commercial use."


class ElpvMissing(RuntimeError):
    """The elpv-dataset package is not installed."""


def labels_file() -> Path:
    """``labels.csv`` of the installed ``elpv_dataset`` package."""
    spec = importlib.util.find_spec("elpv_dataset")
    if spec is None or spec.origin is None:
        raise ElpvMissing("the PyPI package elpv-dataset is not installed: `make bench-real` installs it")
    path = Path(spec.origin).parent / "data" / "labels.csv"
    if not path.is_file():
        raise ElpvMissing(f"elpv-dataset has no labels file at {path}")
    return path


def read_labels(path: Path) -> list[tuple[Path, float, str]]:
    """(image path, defect probability, module kind) of every cell in ELPV's ``labels.csv`` (whitespace columns)."""
    rows = []
    for line_no, line in enumerate(path.read_text().splitlines(), 1):
        fields = line.split()
        if not fields:
            continue
        if len(fields) != 3:
            raise ValueError(f"{path}:{line_no}: expected 'path probability kind', got {line!r}")
        rows.append((path.parent / fields[0], float(fields[1]), fields[2]))
    return rows


def folder_of(probability: float) -> str:
    """``good``, ``defect`` or the unsure folder of one probability."""
    if probability == 0.0:
        return "cells/good"
    if probability == 1.0:
        return f"cells/{DEFECT_TYPE}"
    for value, name in UNSURE.items():
        if abs(probability - value) < 1e-6:
            return f"unsure/{name}"
    raise ValueError(f"ELPV probability {probability}: expected 0, 1/3, 2/3 or 1")


def write_mono_cells(out: Path, labels: Path | None = None) -> dict[str, int]:
    """Copy ELPV's mono cells under ``out`` (see the module's layout) from the ``labels`` file (None: the installed
    package's); returns the count per folder. Idempotent: an existing complete tree (its ``manifest.csv``) is kept;
    a tree is written beside ``out`` and renamed into place, so an interrupted run leaves no partial tree."""
    manifest = out / "manifest.csv"
    if manifest.is_file():
        with manifest.open() as handle:
            rows = list(csv.DictReader(handle))
        counts: dict[str, int] = {}
        for row in rows:
            counts[row["folder"]] = counts.get(row["folder"], 0) + 1
        return counts
    rows = [(image, p) for image, p, kind in read_labels(labels or labels_file()) if kind == KIND]
    staging = out.with_name(out.name + ".partial")
    shutil.rmtree(staging, ignore_errors=True)
    written = []
    for image, probability in rows:
        folder = folder_of(probability)
        target = staging / folder / image.name
        target.parent.mkdir(parents=True, exist_ok=True)
        shutil.copyfile(image, target)
        written.append({"folder": folder, "file": image.name, "probability": f"{probability:.4f}"})
    (staging / "LICENCE.txt").write_text(LICENCE + "\n")
    with (staging / "manifest.csv").open("w", newline="") as handle:
        writer = csv.DictWriter(handle, fieldnames=["folder", "file", "probability"])
        writer.writeheader()
        writer.writerows(written)
    shutil.rmtree(out, ignore_errors=True)
    staging.rename(out)
    return write_mono_cells(out, labels)
