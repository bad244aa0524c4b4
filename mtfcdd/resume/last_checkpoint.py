"""``last.ckpt`` that always holds the newest training state (epoch ends and the end of training)."""

from __future__ import annotations

from pathlib import Path

import lightning as L
from lightning.pytorch.callbacks import Checkpoint


class LastCheckpoint(Checkpoint):
    """Writes ``<dirpath>/<filename>`` (weights, optimiser, loops and callback states, through the trainer's checkpoint
    IO) at the end of every training epoch and at the end of training, unless it was already written at that step.

    Why: Lightning 2.6's ``ModelCheckpoint(save_last=True)`` rewrites ``last.ckpt`` at a validation only where it also
    writes a top-k checkpoint, so after a final epoch that did not improve the monitored metric ``last.ckpt`` held the
    weights of the last every-200-steps save (the 810-step demo tested its step-800 weights). Every rank calls it;
    the trainer writes on rank 0.

    A ``Checkpoint``, so that Lightning runs it after the ``ModelCheckpoint``
    callbacks listed before it: at an epoch end the best checkpoint is written first, and the ``last.ckpt`` written
    after it records that file (a run killed in between would otherwise resume without knowing of it and keep two
    best checkpoints).
    """

    def __init__(self, dirpath: str | Path, filename: str = "last.ckpt") -> None:
        self.path = Path(dirpath) / filename
        self._saved_step: int | None = None

    def on_train_epoch_end(self, trainer: L.Trainer, pl_module: L.LightningModule) -> None:
        self._save(trainer)

    def on_train_end(self, trainer: L.Trainer, pl_module: L.LightningModule) -> None:
        self._save(trainer)

    def _save(self, trainer: L.Trainer) -> None:
        if trainer.sanity_checking or trainer.fast_dev_run or self._saved_step == trainer.global_step:
            return
        trainer.save_checkpoint(self.path, weights_only=False)  # the full state: resume needs it
        self._saved_step = trainer.global_step
