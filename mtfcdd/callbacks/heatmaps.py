"""Fig. 2-style heatmap grids during validation (W&B + PNG, a fixed set of images) and after every test stage."""

from __future__ import annotations

from collections.abc import Sequence
from pathlib import Path

import lightning as L
import numpy as np
import torch
from lightning.pytorch.loggers import WandbLogger
from torch.utils.data import Dataset

from mtfcdd.core.defect_types import NORMAL_CLASS
from mtfcdd.viz.grids import figure_grid, figure_rows, save_png


def select_examples(type_indices: list[int], num_codes: int, per_type: int, normal: int) -> list[int]:
    """Dataset positions of the first ``per_type`` images of each of the ``num_codes`` defect types (in type order),
    then ``normal`` normal ones; deterministic, so every epoch shows the same images."""
    chosen: list[int] = []
    for wanted, quota in [*((k, per_type) for k in range(num_codes)), (-1, normal)]:
        chosen += [i for i, t in enumerate(type_indices) if t == wanted][:quota]
    return chosen


def row_title(type_index: int, category: str, codes: Sequence[str]) -> str:
    """A figure row's title: the true defect code (``type_index`` indexes ``codes``, the data module's vocabulary)
    or OK, and the category."""
    return f"{codes[type_index] if type_index >= 0 else NORMAL_CLASS} {category}"


class HeatmapFigures(L.Callback):
    """Writes ``heatmaps/val_epoch<NNN>.png`` every ``every_n_epochs`` validation epochs and ``heatmaps/test.png``
    after testing, under the trainer's ``default_root_dir`` (the Hydra run directory); logs each grid to W&B.

    The heatmaps are the inference pipeline's calibrated ones (per-type ``heat_min``/``heat_max``).
    """

    def __init__(self, per_type: int = 1, normal: int = 1, every_n_epochs: int = 1) -> None:
        if per_type < 0 or normal < 0 or every_n_epochs < 1:
            raise ValueError("callbacks.heatmaps: per_type and normal must be >= 0, every_n_epochs >= 1")
        self.per_type, self.normal, self.every_n_epochs = per_type, normal, every_n_epochs
        self.written: list[Path] = []

    def on_validation_end(self, trainer: L.Trainer, pl_module: L.LightningModule) -> None:
        if trainer.sanity_checking or (trainer.current_epoch + 1) % self.every_n_epochs:
            return
        self._figure(
            trainer, pl_module, trainer.datamodule.val_dataset, f"val_epoch{trainer.current_epoch:03d}", "val/heatmaps"
        )

    def on_test_end(self, trainer: L.Trainer, pl_module: L.LightningModule) -> None:
        self._figure(trainer, pl_module, trainer.datamodule.test_dataset, "test", "test/heatmaps")

    def _figure(self, trainer: L.Trainer, pl_module: L.LightningModule, dataset: Dataset, name: str, key: str) -> None:
        if not trainer.is_global_zero:
            return
        codes = trainer.datamodule.vocabulary.codes
        indices = select_examples([r.type_index for r in dataset.records], len(codes), self.per_type, self.normal)
        if not indices:
            return
        grid = render_grid(pl_module, dataset, indices, codes)
        path = save_png(grid, Path(trainer.default_root_dir) / "heatmaps" / f"{name}.png")
        self.written.append(path)
        for logger in trainer.loggers:
            if isinstance(logger, WandbLogger):
                logger.log_image(key=key, images=[grid], step=trainer.global_step, caption=[name])


@torch.no_grad()
def render_grid(pl_module: L.LightningModule, dataset: Dataset, indices: list[int], codes: Sequence[str]) -> np.ndarray:
    """The Fig. 2 grid of ``dataset[indices]`` through ``pl_module.pipeline``, channels named and coloured as
    ``pl_module.type_names``/``type_colours``; RGB uint8. ``codes``: the defect codes that the samples'
    ``type_index`` indexes (the data module's vocabulary)."""
    pipeline = pl_module.pipeline
    was_training = pipeline.training
    pipeline.eval()
    samples = [dataset[i] for i in indices]
    images = torch.stack([s["image"] for s in samples])
    outputs = pipeline(images.to(pl_module.device))
    pipeline.train(was_training)
    types = [int(s["type_index"]) for s in samples]
    titles = [row_title(t, s["category"], codes) for t, s in zip(types, samples)]
    masks = torch.stack([s["mask"] for s in samples])
    known = [bool(s.get("has_mask", True)) for s in samples]
    rows = figure_rows(images, outputs, titles, masks, types, known)
    return figure_grid(rows, pl_module.type_names, pl_module.type_colours)
