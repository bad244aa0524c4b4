"""Fig. 2-style heatmap grids during validation (W&B + PNG, a fixed set of images) and after every test stage."""

from __future__ import annotations

from pathlib import Path

import lightning as L
import numpy as np
import torch
from lightning.pytorch.loggers import WandbLogger
from torch.utils.data import Dataset

from mtfcdd.data.realiad import DEFECT_CODES
from mtfcdd.viz import FigureRow, denormalise, figure_grid, save_png


def select_examples(type_indices: list[int], per_type: int, normal: int) -> list[int]:
    """Dataset positions of the first ``per_type`` images of each defect type (in type order), then ``normal`` normal
    ones; deterministic, so every epoch shows the same images."""
    chosen: list[int] = []
    for wanted, quota in [*((k, per_type) for k in range(len(DEFECT_CODES))), (-1, normal)]:
        chosen += [i for i, t in enumerate(type_indices) if t == wanted][:quota]
    return chosen


class HeatmapFigures(L.Callback):
    """Writes ``heatmaps/val_epoch<NNN>.png`` every ``every_n_epochs`` validation epochs and ``heatmaps/test.png``
    after testing, under the trainer's ``default_root_dir`` (the Hydra run directory); logs each grid to W&B.

    Heatmaps are normalised per type with the calibrated ``heat_min``/``heat_max`` buffers of the network.
    """

    def __init__(self, per_type: int = 1, normal: int = 1, every_n_epochs: int = 1) -> None:
        if per_type < 0 or normal < 0 or every_n_epochs < 1:
            raise ValueError("callbacks.heatmaps: per_type and normal must be >= 0, every_n_epochs >= 1")
        self.per_type, self.normal, self.every_n_epochs = per_type, normal, every_n_epochs
        self.written: list[Path] = []

    def on_validation_end(self, trainer: L.Trainer, pl_module: L.LightningModule) -> None:
        if trainer.sanity_checking or (trainer.current_epoch + 1) % self.every_n_epochs:
            return
        self._figure(trainer, pl_module, trainer.datamodule.val_dataset, f"val_epoch{trainer.current_epoch:03d}", "val/heatmaps")

    def on_test_end(self, trainer: L.Trainer, pl_module: L.LightningModule) -> None:
        self._figure(trainer, pl_module, trainer.datamodule.test_dataset, "test", "test/heatmaps")

    def _figure(self, trainer: L.Trainer, pl_module: L.LightningModule, dataset: Dataset, name: str, key: str) -> None:
        if not trainer.is_global_zero:
            return
        indices = select_examples([r.type_index for r in dataset.records], self.per_type, self.normal)
        if not indices:
            return
        grid = render_grid(pl_module, dataset, indices)
        path = save_png(grid, Path(trainer.default_root_dir) / "heatmaps" / f"{name}.png")
        self.written.append(path)
        for logger in trainer.loggers:
            if isinstance(logger, WandbLogger):
                logger.log_image(key=key, images=[grid], step=trainer.global_step, caption=[name])


@torch.no_grad()
def render_grid(pl_module: L.LightningModule, dataset: Dataset, indices: list[int]) -> np.ndarray:
    """The Fig. 2 grid of ``dataset[indices]`` through ``pl_module.net``; RGB uint8."""
    net = pl_module.net
    was_training = net.training
    net.eval()
    samples = [dataset[i] for i in indices]
    images = torch.stack([s["image"] for s in samples]).to(pl_module.device)
    heatmaps = net.normalise_heatmaps(net(images).heatmaps).cpu().numpy()
    net.train(was_training)
    rows = []
    for sample, heat in zip(samples, heatmaps):
        type_index = int(sample["type_index"])
        title = f"{DEFECT_CODES[type_index] if type_index >= 0 else 'OK'} {sample['category']}"
        rows.append(
            FigureRow(
                image=denormalise(sample["image"], net.pixel_mean, net.pixel_std),
                mask=sample["mask"].cpu().numpy().astype(bool),
                type_index=type_index,
                heatmaps=heat,
                title=title,
            )
        )
    return figure_grid(rows, pl_module.type_names)
