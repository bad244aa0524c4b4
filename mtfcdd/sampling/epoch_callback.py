"""Set the balanced epoch's length from the training class sizes before the train loader is built."""

from __future__ import annotations

import math

import lightning as L
from lightning.pytorch.utilities.rank_zero import rank_zero_only

from mtfcdd.sampling.coupon import METHODS, BalancedEpoch, balanced_epoch


class BalancedEpochLength(L.Callback):
    """Compute E[T] (Eq. 4 exactly, or Eq. 5 by Monte Carlo) and set ``datamodule.epoch_draws = ceil(E[T])``.

    Runs in ``setup(stage="fit")``, which Lightning calls right after ``datamodule.setup("fit")`` and before it
    requests ``train_dataloader()``. Needs a datamodule with ``train_class_counts()`` (images per sampler class;
    empty classes are dropped), ``hparams.batch_size`` and a writable ``epoch_draws``. Every rank computes the same
    value (the integral is deterministic, the Monte Carlo seeded). Logs ``balanced_epoch/*`` to every logger.
    """

    def __init__(self, method: str = "exact", trials: int = 10000, seed: int = 0) -> None:
        if method not in METHODS:
            raise ValueError(f"BalancedEpochLength: method must be one of {', '.join(METHODS)}, got {method!r}")
        self.method = method
        self.trials = trials
        self.seed = seed
        self.result: BalancedEpoch | None = None

    def setup(self, trainer: L.Trainer, pl_module: L.LightningModule, stage: str) -> None:
        if stage != "fit":
            return
        datamodule = trainer.datamodule
        if (
            datamodule is None
            or not hasattr(datamodule, "train_class_counts")
            or "batch_size" not in datamodule.hparams
        ):
            raise TypeError(
                "BalancedEpochLength needs trainer.fit(datamodule=...) with a datamodule that has "
                f"train_class_counts() and hparams.batch_size (save_hyperparameters); got {type(datamodule).__name__}"
            )
        counts = [int(count) for count in datamodule.train_class_counts() if count > 0]
        self.result = balanced_epoch(counts, datamodule.hparams.batch_size, self.method, self.trials, self.seed)
        datamodule.epoch_draws = math.ceil(self.result.draws)
        summary = self.result.as_dict()
        method = summary.pop("method")
        metrics = {f"balanced_epoch/{key}": float(value) for key, value in summary.items()}
        for logger in trainer.loggers:
            logger.log_hyperparams({"balanced_epoch/method": method, **metrics})
            logger.log_metrics(metrics, step=0)
        self._print(datamodule.epoch_draws)

    @rank_zero_only
    def _print(self, epoch_draws: int) -> None:
        result = self.result
        stderr = f" +- {result.estimate.stderr:,.1f}" if result.estimate.stderr else ""
        print(
            f"balanced epoch ({result.estimate.method}): {result.total_images:,} images in {result.classes} classes -> "
            f"mu_T = {result.draws:,.2f}{stderr} draws ({epoch_draws:,} per epoch), "
            f"{result.batches:,.2f} batches of {result.batch_size}, = {result.standard_epochs:.2f} standard epochs"
        )
