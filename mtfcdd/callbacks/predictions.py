"""Per-image prediction files, streamed batch by batch (memory does not grow with the number of images).

In the run directory, for the predict stage (``python -m mtfcdd.predict``) and the test stage (``evaluate``):

- ``predictions.csv`` and ``predictions.jsonl``: one row per image, its record
  (``mtfcdd.model.outputs.image_records``: ``path``, ``score_<type>`` and ``decision_<type>`` per type,
  ``anomaly_score``, ``anomalous``, ``predicted_type``), and in the test stage ``true_type`` (``normal`` for OK images);
- ``errors.csv``: ``path``, ``error`` for every file that could not be read (only when there is one);
- ``overlays/<NNNNNN>_<name>.png`` (``save_overlays``): the image, then one overlay per type channel, titled with the
  type and its score, decided types framed.

Each file appears complete at the end of the stage or not at all. Under DDP every rank writes its own files with a
``.rank<R>`` suffix.
"""

from __future__ import annotations

import csv
import json
from collections.abc import Sequence
from pathlib import Path
from typing import Any

import lightning as L
import torch

from mtfcdd.core.atomic_io import AtomicTextFile
from mtfcdd.model.outputs import PipelineOutput, image_records, record_columns
from mtfcdd.viz.grids import figure_grid, figure_rows, save_png


class PredictionWriter(L.Callback):
    """Writes the prediction files of the test and predict stages (module docstring); ``summary`` counts them."""

    def __init__(self, save_overlays: bool = True, stages: Sequence[str] = ("predict", "test")) -> None:
        unknown = sorted(set(stages) - {"predict", "test"})
        if unknown:
            raise ValueError(f"callbacks.predictions.stages: unknown {unknown}; expected predict and/or test")
        self.save_overlays = save_overlays
        self.stages = tuple(stages)
        self.summary: dict[str, Any] = {}
        self._files: dict[str, AtomicTextFile] = {}
        self._errors: list[tuple[str, str]] = []

    def _start(self, trainer: L.Trainer, pl_module: L.LightningModule, stage: str) -> None:
        self._abort()
        suffix = f".rank{trainer.global_rank}" if trainer.world_size > 1 else ""
        self.output_dir = Path(trainer.default_root_dir)
        self.type_names = list(pl_module.type_names)
        self.type_colours = list(pl_module.type_colours)
        self.columns = record_columns(self.type_names)
        if stage == "test":
            self.columns.append("true_type")
            # type_index indexes the data module's vocabulary; a mode-single model names every defect "anomaly"
            names = trainer.datamodule.vocabulary.names
            self.true_names = list(names) if pl_module.mode == "multi" else None
        self._files = {
            "csv": AtomicTextFile(self.output_dir / f"predictions{suffix}.csv"),
            "jsonl": AtomicTextFile(self.output_dir / f"predictions{suffix}.jsonl"),
        }
        self._csv = csv.writer(self._files["csv"].stream)
        self._csv.writerow(self.columns)
        self._errors = []
        self._suffix = suffix
        self.summary = {
            "images": 0,
            "errors": 0,
            "anomalous": 0,
            "per_type": dict.fromkeys(self.type_names, 0),
            "files": [],
        }

    def _write(self, pl_module: L.LightningModule, outputs: PipelineOutput, batch: dict, stage: str) -> None:
        errors = batch.get("error", [""] * len(batch["path"]))
        valid = [i for i, error in enumerate(errors) if not error]
        self._errors += [(batch["path"][i], error) for i, error in enumerate(errors) if error]
        if not valid:
            return
        rows = PipelineOutput(*(part[valid].detach().cpu() for part in outputs))
        paths = [batch["path"][i] for i in valid]
        for j, record in enumerate(image_records(rows, self.type_names, paths)):
            if stage == "test":
                record["true_type"] = self._true_type(int(batch["type_index"][valid[j]]))
            self._csv.writerow([record[c] for c in self.columns])
            self._files["jsonl"].stream.write(json.dumps(record) + "\n")
        self.summary["anomalous"] += int(rows.anomalous.sum())
        for name, decided in zip(self.type_names, rows.decisions.sum(dim=0).tolist()):
            self.summary["per_type"][name] += int(decided)
        if self.save_overlays:
            self._overlays(batch["image"][valid], rows, paths)
        self.summary["images"] += len(paths)

    def _true_type(self, type_index: int) -> str:
        if type_index < 0:
            return "normal"
        return self.true_names[type_index] if self.true_names else "anomaly"

    def _overlays(self, images: torch.Tensor, rows: PipelineOutput, paths: list[str]) -> None:
        start = self.summary["images"]
        titles = [Path(p).name for p in paths]
        for j, row in enumerate(figure_rows(images, rows, titles)):
            name = f"{start + j:06d}_{Path(paths[j]).stem}{self._suffix}.png"
            save_png(figure_grid([row], self.type_names, self.type_colours), self.output_dir / "overlays" / name)

    def _finish(self) -> None:
        for handle in self._files.values():
            self.summary["files"].append(str(handle.commit()))
        self._files = {}
        self.summary["errors"] = len(self._errors)
        if self._errors:
            errors = AtomicTextFile(self.output_dir / f"errors{self._suffix}.csv")
            writer = csv.writer(errors.stream)
            writer.writerow(["path", "error"])
            writer.writerows(self._errors)
            self.summary["files"].append(str(errors.commit()))
        if self.save_overlays and self.summary["images"]:
            self.summary["files"].append(str(self.output_dir / "overlays"))

    def _abort(self) -> None:
        for handle in self._files.values():
            handle.abort()
        self._files = {}

    def _on_epoch_start(self, trainer: L.Trainer, pl_module: L.LightningModule) -> None:
        if trainer.state.stage.value in self.stages:
            self._start(trainer, pl_module, trainer.state.stage.value)

    def _on_batch_end(self, trainer, pl_module, outputs, batch, batch_idx, dataloader_idx=0) -> None:
        if trainer.state.stage.value in self.stages:
            self._write(pl_module, outputs, batch, trainer.state.stage.value)

    def _on_epoch_end(self, trainer: L.Trainer, pl_module: L.LightningModule) -> None:
        if trainer.state.stage.value in self.stages:
            self._finish()

    on_predict_epoch_start = on_test_epoch_start = _on_epoch_start
    on_predict_batch_end = on_test_batch_end = _on_batch_end
    on_predict_epoch_end = on_test_epoch_end = _on_epoch_end

    def on_exception(self, trainer: L.Trainer, pl_module: L.LightningModule, exception: BaseException) -> None:
        self._abort()
