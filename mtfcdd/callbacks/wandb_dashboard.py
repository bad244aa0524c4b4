"""W&B charts that make a run's dashboard worth opening (nothing happens without a WandbLogger).

Per validation epoch: the validation metrics plotted against the epoch (``define_metric``), and per metric one
chart with a line per defect type over the epochs so far (``val/curves/<metric>``). After testing: the type
confusion matrix as a W&B confusion-matrix chart (``test/confusion_matrix``, mode multi) and per metric a bar
chart over the defect types (``test/bars/<metric>``). The heatmap grids come from ``.heatmaps``.
"""

from __future__ import annotations

import math

import lightning as L
from lightning.pytorch.loggers import WandbLogger

from mtfcdd.metrics.evaluator import ANY_DEFECT, METRICS
from mtfcdd.metrics.tables import LABELS, display_name, percent


def _wandb_loggers(trainer: L.Trainer) -> list[WandbLogger]:
    return [logger for logger in trainer.loggers if isinstance(logger, WandbLogger)] if trainer.is_global_zero else []


def confusion_labels(confusion: list[list[int]]) -> tuple[list[int], list[int]]:
    """(true, predicted) type indices, one pair per image counted in ``confusion`` (rows = true type)."""
    true, predicted = [], []
    for row_index, row in enumerate(confusion):
        for column_index, count in enumerate(row):
            true += [row_index] * int(count)
            predicted += [column_index] * int(count)
    return true, predicted


class WandbDashboard(L.Callback):
    """Logs the charts described in the module docstring to every ``WandbLogger`` (global rank 0)."""

    def __init__(self) -> None:
        self.val_history: list[tuple[int, dict[str, float]]] = []

    def on_fit_start(self, trainer: L.Trainer, pl_module: L.LightningModule) -> None:
        for logger in _wandb_loggers(trainer):
            logger.experiment.define_metric("epoch")
            logger.experiment.define_metric("val/*", step_metric="epoch")

    def on_validation_end(self, trainer: L.Trainer, pl_module: L.LightningModule) -> None:
        loggers = _wandb_loggers(trainer)
        if trainer.sanity_checking or not loggers:
            return
        metrics = {key: float(value) for key, value in trainer.callback_metrics.items() if key.startswith("val/")}
        self.val_history.append((trainer.current_epoch, metrics))
        import wandb

        epochs = [epoch for epoch, _ in self.val_history]
        charts = {}
        for metric in METRICS:
            names = [*pl_module.type_names, ANY_DEFECT]
            ys = [[_finite(values.get(f"val/{metric}/{name}")) for _, values in self.val_history] for name in names]
            charts[f"val/curves/{metric}"] = wandb.plot.line_series(
                xs=epochs,
                ys=ys,
                keys=[display_name(n) for n in names],
                title=f"validation {LABELS[metric]} per defect type and any defect",
                xname="epoch",
            )
        for logger in loggers:
            logger.experiment.log({**charts, "trainer/global_step": trainer.global_step})

    def on_test_end(self, trainer: L.Trainer, pl_module: L.LightningModule) -> None:
        results = getattr(pl_module, "test_results", None)
        loggers = _wandb_loggers(trainer)
        if results is None or not loggers:
            return
        import wandb

        names = [display_name(name) for name in results["types"]]
        charts = {}
        for metric in METRICS:
            rows = [[display_name(name), percent(entry[metric])] for name, entry in results["types"].items()]
            table = wandb.Table(columns=["type", LABELS[metric]], data=rows)
            charts[f"test/bars/{metric}"] = wandb.plot.bar(
                table, "type", LABELS[metric], title=f"test {LABELS[metric]} per defect type (%)"
            )
        classification = results.get("type_classification")
        if classification is not None:
            true, predicted = confusion_labels(classification["confusion"])
            if true:
                charts["test/confusion_matrix"] = wandb.plot.confusion_matrix(
                    y_true=true, preds=predicted, class_names=names, title="test type confusion (rows = true type)"
                )
        for logger in loggers:
            logger.experiment.log({**charts, "trainer/global_step": trainer.global_step})


def _finite(value: float | None) -> float | None:
    return None if value is None or math.isnan(value) else value
