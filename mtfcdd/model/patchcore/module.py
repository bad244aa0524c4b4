"""LightningModule that fits a PatchCore memory bank in ``trainer.fit`` and evaluates like MultiTypeFCDD.

Fitting is one epoch over the normal training images in order (the data module's ``train_images: normal``): each
training batch adds its patch features to a bounded random sample per category; after the last batch (before the
epoch's validation) a greedy k-center coreset is taken per bank on randomly projected features and stored in the
network's ``memory_bank``. No optimizer, no gradients. Validation (calibration of the heat range and the F1
threshold), test and prediction are ``AnomalyModule``'s, on one ``anomaly`` channel (mode
``single``: no type metrics).
"""

from __future__ import annotations

import logging
import time
import zlib

import torch

from mtfcdd.core.defect_types import SINGLE_CHANNEL_NAME
from mtfcdd.model.base import AnomalyModule
from mtfcdd.model.patchcore.coreset import PatchReservoir, coreset_size, greedy_coreset, random_projection
from mtfcdd.model.pipeline import InferencePipeline

log = logging.getLogger("mtfcdd.patchcore")

BANKS = ("per_category", "shared")
"""``per_category``: one coreset per category, the bank is their union (a query's nearest row is searched over all of
them: the pipeline's input is the image alone); ``shared``: one coreset over every category's patches."""


class PatchCoreModule(AnomalyModule):
    """Fits a PatchCore memory bank in ``trainer.fit``; evaluates as every model does.

    Args:
        pipeline: an ``InferencePipeline`` around a ``PatchCoreNet``.
        coreset_ratio: share of the (sampled) patches of a bank kept as coreset, in (0, 1].
        bank: ``per_category`` or ``shared`` (see ``BANKS``).
        max_patches_per_category: patches sampled uniformly per category before the coreset (None: all); bounds the
            fitting memory to about 1.25 x this x feature depth x 4 bytes per category.
        projection_dim: random projection depth for the coreset's distances (>= the feature depth: none).
        seed: seed of the patch sampling, the projection and the coreset's first centre.
        protocol, per_category, channels_last: as ``AnomalyModule``.
    """

    def __init__(
        self,
        pipeline: InferencePipeline,
        coreset_ratio: float = 0.02,
        bank: str = "per_category",
        max_patches_per_category: int | None = None,
        projection_dim: int = 128,
        seed: int = 0,
        protocol: str = "typed",
        per_category: bool = False,
        channels_last: bool = True,
    ) -> None:
        if bank not in BANKS:
            raise ValueError(f"model.bank={bank!r}: expected one of {', '.join(BANKS)}")
        if not 0 < coreset_ratio <= 1:
            raise ValueError(f"model.coreset_ratio={coreset_ratio!r}: expected a number in (0, 1]")
        if max_patches_per_category is not None and max_patches_per_category < 1:
            raise ValueError(f"model.max_patches_per_category={max_patches_per_category!r}: expected >= 1 or null")
        super().__init__(
            pipeline,
            [SINGLE_CHANNEL_NAME],
            mode="single",
            protocol=protocol,
            per_category=per_category,
            channels_last=channels_last,
        )
        self.automatic_optimization = False
        self.coreset_ratio = coreset_ratio
        self.bank = bank
        self.max_patches_per_category = max_patches_per_category
        self.projection_dim = projection_dim
        self.seed = seed
        self._samples: dict[str, PatchReservoir] = {}
        self._images_seen = 0

    def training_step(self, batch: dict, batch_idx: int) -> None:
        if (batch["label"] > 0).any():
            raise RuntimeError(
                "PatchCore fits its memory bank on normal images only, but a training batch holds defective ones: "
                "set data.train_images=normal (conf/model/patchcore.yaml does)"
            )
        features = self.net.patch_features(self.pipeline.normalise(batch["image"]))
        rows = features.flatten(2).transpose(1, 2)  # [B, h*w, D]
        for category, patches in zip(batch["category"], rows):
            if category not in self._samples:
                self._samples[category] = PatchReservoir(
                    self.max_patches_per_category, seed=zlib.crc32(f"{self.seed}/{category}".encode())
                )
            self._samples[category].add(patches)
        self._images_seen += len(rows)

    def fit_memory_bank(self) -> bool:
        """Coreset(s) of the sampled patches -> ``net.memory_bank``; False (a no-op) when no patches are waiting."""
        if not self._samples:
            return False
        started = time.perf_counter()
        categories = sorted(self._samples)
        pools = [self._samples[c].features() for c in categories]
        if self.bank == "shared":
            pools = [torch.cat(pools)]
        generator = torch.Generator().manual_seed(self.seed)
        banks = []
        for pool in pools:
            projected = random_projection(pool, self.projection_dim, seed=self.seed).to(self.device)
            start = int(torch.randint(len(pool), (1,), generator=generator))
            banks.append(pool[greedy_coreset(projected, coreset_size(len(pool), self.coreset_ratio), start=start)])
        self.net.set_memory_bank(torch.cat(banks).to(self.device))
        sampled = sum(len(pool) for pool in pools)
        log.info(
            "PatchCore memory bank: %d rows x %d from %d sampled patches of %d normal images (%s, %d categories) "
            "in %.1f s",
            self.net.memory_bank.shape[0],
            self.net.feature_dim,
            sampled,
            self._images_seen,
            self.bank,
            len(categories),
            time.perf_counter() - started,
        )
        self._samples = {}
        return True

    def _fit_in_trainer(self) -> None:
        """Fit the bank and count it as the run's one optimisation step (``trainer.global_step`` 1): checkpoint
        callbacks save nothing at step 0, so the best checkpoint would otherwise never hold the fitted bank."""
        if self.fit_memory_bank():
            self.trainer.fit_loop.epoch_loop.manual_optimization.optim_step_progress.increment_completed()

    def on_validation_epoch_start(self) -> None:
        if not self.trainer.sanity_checking:
            self._fit_in_trainer()
        super().on_validation_epoch_start()

    def validation_step(self, batch: dict, batch_idx: int) -> None:
        if self.net.fitted:  # the sanity check runs before the bank exists
            super().validation_step(batch, batch_idx)

    def on_validation_epoch_end(self) -> None:
        if self.net.fitted:
            super().on_validation_epoch_end()

    def on_train_epoch_end(self) -> None:
        """One pass fits the bank: stop after the first epoch (whatever ``trainer.max_epochs`` says)."""
        expected = len(self.trainer.train_dataloader.dataset)
        if self._images_seen and self._images_seen < expected:
            log.warning(
                "PatchCore memory bank fitted on %d of %d normal training images (trainer.limit_train_batches)",
                self._images_seen,
                expected,
            )
        self._fit_in_trainer()
        self.trainer.should_stop = True

    def configure_optimizers(self) -> list:
        """No optimiser (an empty list: Lightning warns about None)."""
        return []
