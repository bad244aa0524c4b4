"""An engine against the fp32 reference: how far its outputs are (``output_deviation``), whether its decisions
agree, and what it changes in a trained model's test results: each engine runs the LightningModule's own test stage
(the evaluator of ``evaluate`` and of the end-of-training test) on the checkpoint's test set, and its metrics and
per-image decisions are compared with eager float32's.

Changes are in points (percentage points: 100 x the difference of fractions); ``decisions_changed`` counts the test
images whose any-defect decision (``anomalous``) differs from eager float32's, ``types_changed`` those whose
predicted type differs.
"""

from __future__ import annotations

import math
import warnings
from typing import Any

import lightning as L
import torch
from omegaconf import DictConfig

from mtfcdd.metrics.evaluator import UndefinedMetricWarning
from mtfcdd.model.pipeline import InferencePipeline, PipelineOutput


def median_thresholds(image_threshold: torch.Tensor, reference_scores: torch.Tensor) -> torch.Tensor:
    """The pipeline's per-type thresholds [M]; a type without one (inf: untrained) gets the median of its fp32
    reference scores [N, M], so that decisions split the images and a comparison means something."""
    thresholds = image_threshold.detach().float().cpu().clone()
    medians = torch.quantile(reference_scores.float().cpu(), 0.5, dim=0)  # even count: midway, never on a score
    missing = ~torch.isfinite(thresholds)
    thresholds[missing] = medians[missing]
    return thresholds


def output_deviation(outputs: PipelineOutput, reference: PipelineOutput) -> dict[str, float | int | bool]:
    """Relative L2 error ``||h - h32|| / ||h32||`` and max abs error of the heatmaps; how many per-type decisions
    and predicted types differ from the reference's."""
    heatmaps, expected = outputs.heatmaps.float().cpu(), reference.heatmaps.float().cpu()
    if heatmaps.shape != expected.shape:
        raise ValueError(f"heatmaps {tuple(heatmaps.shape)} vs reference {tuple(expected.shape)}")
    rel = torch.linalg.vector_norm(heatmaps - expected) / torch.linalg.vector_norm(expected).clamp_min(1e-30)
    mismatches = int((outputs.decisions.cpu() != reference.decisions.cpu()).sum())
    return {
        "rel_l2": float(rel),
        "max_abs": float((heatmaps - expected).abs().max()),
        "decisions": int(reference.decisions.numel()),
        "decision_mismatches": mismatches,
        "decisions_identical": mismatches == 0,
        "type_mismatches": int((outputs.predicted_type.cpu() != reference.predicted_type.cpu()).sum()),
    }


COMPARED_MEANS = ("i_auroc", "p_auroc", "aupro")
"""Mean-over-types metrics whose change is reported (with type accuracy)."""


class _DecisionRecorder(L.Callback):
    """Keeps every test image's ``anomalous`` decision and predicted type, in test order."""

    def __init__(self) -> None:
        self.anomalous: list[torch.Tensor] = []
        self.types: list[torch.Tensor] = []

    def on_test_epoch_start(self, trainer: L.Trainer, pl_module: L.LightningModule) -> None:
        self.anomalous, self.types = [], []

    def on_test_batch_end(self, trainer, pl_module, outputs, batch, batch_idx, dataloader_idx=0) -> None:
        self.anomalous.append(outputs.anomalous.detach().cpu())
        self.types.append(outputs.predicted_type.detach().cpu())


def engine_test_results(
    pipeline: InferencePipeline, run_cfg: DictConfig, datamodule: L.LightningDataModule, engines: dict[str, Any]
) -> dict[str, dict[str, Any]]:
    """Per engine name: ``results`` (the evaluator's dict), ``anomalous`` (bool [N]) and ``predicted_type`` (int64
    [N]) of the test stage run with that engine on ``datamodule``'s test set."""
    from mtfcdd.model.build import build_module

    module = build_module(run_cfg, pipeline)
    recorder = _DecisionRecorder()
    trainer = L.Trainer(
        accelerator="cpu",
        devices=1,
        logger=False,
        enable_checkpointing=False,
        enable_progress_bar=False,
        enable_model_summary=False,
        callbacks=[recorder],
    )
    out: dict[str, dict[str, Any]] = {}
    for name, engine in engines.items():
        module.engine = engine
        with warnings.catch_warnings():
            warnings.simplefilter("ignore", UndefinedMetricWarning)  # a type absent from a subset: NaN, skipped
            trainer.test(model=module, datamodule=datamodule, verbose=False)
        out[name] = {
            "results": module.test_results,
            "anomalous": torch.cat(recorder.anomalous),
            "predicted_type": torch.cat(recorder.types),
        }
    module.engine = None
    return out


def _points(value: float, reference: float) -> float:
    return 100.0 * (value - reference) if not (math.isnan(value) or math.isnan(reference)) else float("nan")


def metric_changes(run: dict[str, Any], reference: dict[str, Any]) -> dict[str, Any]:
    """An engine's test metrics (percent) and their change against the reference run (points), with the number of
    changed image decisions and predicted types; runs as returned by ``engine_test_results``."""
    results, base = run["results"], reference["results"]
    metrics = {name: 100.0 * results["mean"][name] for name in COMPARED_MEANS}
    changes = {name: _points(results["mean"][name], base["mean"][name]) for name in COMPARED_MEANS}
    if results["type_classification"] is not None:
        metrics["type_accuracy"] = 100.0 * results["type_classification"]["accuracy"]
        changes["type_accuracy"] = _points(
            results["type_classification"]["accuracy"], base["type_classification"]["accuracy"]
        )
    return {
        "images": len(run["anomalous"]),
        "metrics": metrics,
        "change_points": changes,
        "decisions_changed": int((run["anomalous"] != reference["anomalous"]).sum()),
        "types_changed": int((run["predicted_type"] != reference["predicted_type"]).sum()),
    }
