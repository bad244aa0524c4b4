"""Lightning data module for Real-IAD: index -> train / validation / test datasets -> balanced and sequential loaders.

The validation set is held out of the training split by sample (all views of a sample on one side), stratified by
class; the test split is the JSON's ``test`` list. ``vocabulary`` holds the run's defect types (Real-IAD's, or the
subset ``defect_codes`` picks). ``epoch_draws`` (set by ``mtfcdd.sampling.epoch_callback.BalancedEpochLength``
before ``train_dataloader()``) is the length of one balanced epoch in draws, over the classes that ``balance``
samples: ``types`` (the M defect types + normal, each drawn with probability 1/(M+1); the paper: M = 8) or
``binary`` (normal vs any defect, 1/2 each, as FCDD balances).
"""

from __future__ import annotations

import logging
import os
from collections.abc import Mapping, Sequence
from numbers import Integral, Real

import lightning as L
import numpy as np
import torch
from lightning.pytorch.utilities.rank_zero import rank_zero_only
from torch.utils.data import DataLoader, Dataset

from mtfcdd.core.config import ConfigError, check_choice
from mtfcdd.core.defect_types import DEFECT_CODES, MODES, Vocabulary
from mtfcdd.data.dataset import RealIADDataset
from mtfcdd.data.realiad import RealIADFormatError, Record, check_index_args, load_splits
from mtfcdd.data.summary import format_summary_table, summary_rows
from mtfcdd.data.transforms import Augment, check_image_size, eval_transform, train_transform
from mtfcdd.resume.loader import ResumableLoader, SeededDraws
from mtfcdd.sampling.balance import class_index, num_sampler_classes, resolve_balance, sampler_classes
from mtfcdd.sampling.sampler import BalancedClassSampler, EvaluationShardSampler

log = logging.getLogger("mtfcdd.data")

TRAIN_IMAGES = ("balanced", "normal")
"""What the training loader serves (``data.train_images``): class-balanced draws, or the normal images once."""


def _check_int(name: str, value: object, minimum: int, allow_none: bool = False) -> None:
    if value is None and allow_none:
        return
    if isinstance(value, bool) or not isinstance(value, Integral) or value < minimum:
        expected = f"an integer >= {minimum}" + (" or null" if allow_none else "")
        raise ConfigError(f"data.{name}={value!r} is not valid; expected {expected}")


def _plain(value: object) -> object:
    """``value`` as plain Python (paths as str, mappings as dict, sequences as list, numpy scalars as numbers): what
    a checkpoint loaded with ``torch.load(weights_only=True)`` may hold."""
    if isinstance(value, os.PathLike):
        return os.fspath(value)
    if isinstance(value, np.generic):
        return value.item()
    if isinstance(value, Mapping):
        return {key: _plain(item) for key, item in value.items()}
    if isinstance(value, Sequence) and not isinstance(value, str):
        return [_plain(item) for item in value]
    return value


def split_by_sample(
    records: Sequence[Record], fraction: float, seed: int, num_types: int
) -> tuple[list[Record], list[Record]]:
    """(train, validation): about ``fraction`` of the samples of each class go to validation, all views together.

    A sample's class is its defect type (the lowest type index of its defective views) when any of its views is
    defective, else normal (``num_types``: the size of the run's vocabulary). Every class with at
    least 2 samples gets at least one validation sample and keeps at least one training sample; a class with a
    single sample stays in training. The choice depends only on ``seed`` and the records.
    """
    by_sample: dict[str, int] = {}
    for record in records:
        klass = class_index(record.type_index, num_types)
        by_sample[record.sample] = min(by_sample.get(record.sample, klass), klass)
    by_class: dict[int, list[str]] = {}
    for sample, klass in sorted(by_sample.items()):
        by_class.setdefault(klass, []).append(sample)
    held_out: set[str] = set()
    if fraction > 0:
        for klass, samples in sorted(by_class.items()):
            if len(samples) < 2:
                continue
            count = min(len(samples) - 1, max(1, round(fraction * len(samples))))
            rng = np.random.default_rng([seed, klass])
            held_out.update(samples[i] for i in rng.permutation(len(samples))[:count])
    train = [r for r in records if r.sample not in held_out]
    val = [r for r in records if r.sample in held_out]
    return train, val


def stratified_subset(records: Sequence[Record], max_images: int | None, seed: int, num_types: int) -> list[Record]:
    """At most ``max_images`` records, classes (sampler classes over ``num_types`` defect types) in proportion to
    their sizes (largest remainder), each class present at least once when ``max_images`` allows; deterministic in
    ``seed``; original order kept."""
    if max_images is None or max_images >= len(records):
        return list(records)
    classes = np.array([class_index(r.type_index, num_types) for r in records])
    present = np.unique(classes)
    sizes = np.array([(classes == c).sum() for c in present])
    base = np.ones_like(sizes) if max_images >= len(present) else np.zeros_like(sizes)
    capacity = sizes - base
    remaining = max_images - base.sum()
    shares = remaining * capacity / capacity.sum()
    quota = base + np.floor(shares).astype(int)
    leftover = max_images - quota.sum()
    quota[np.argsort(-(shares - np.floor(shares)), kind="stable")[:leftover]] += 1
    keep: list[int] = []
    for klass, count in zip(present, quota):
        members = np.flatnonzero(classes == klass)
        keep.extend(np.random.default_rng([seed, int(klass)]).permutation(members)[:count].tolist())
    return [records[i] for i in sorted(keep)]


@rank_zero_only
def _print_summary(table: str) -> None:
    print(f"Images per split and class:\n{table}")


class RealIADDataModule(L.LightningDataModule):
    """Real-IAD (any split set, resolution and category subset) as train / val / test / predict loaders.

    Args (the config's ``data.*`` keys), kept as plain values in ``hparams`` and so in every checkpoint; what is
    derived from them (``defect_codes`` checked, the ``vocabulary``, ``augment``, the resolved ``balance``, the
    loader options ``eval_batch_size``, ``persistent_workers``, ``pin_memory``, ``prefetch_factor``) are attributes:
        root, alpha, json_set, resolution, categories, defect_codes, on_missing: the index, see
            ``mtfcdd.data.realiad.load_split``; ``defect_codes`` (Real-IAD's codes, in channel order) are the
            run's defect types.
        type_colours: figure colour per code (``{AK: [r, g, b]}``) instead of the default, see
            ``mtfcdd.core.defect_types.Vocabulary.from_codes``; None: the defaults.
        mode: ``"multi"`` (one label per defect code) or ``"single"`` (one any-defect label).
        balance: the classes the training sampler draws uniformly: ``"types"`` (M + 1: defect types + normal),
            ``"binary"`` (2: normal, any defect) or ``"auto"`` (``AUTO_BALANCE[mode]``).
        image_size: network input side in pixels (images are served as RGB in [0, 1]; the inference pipeline
            normalises them).
        augment: training augmentation knobs, see ``mtfcdd.data.transforms.Augment`` (None: defaults).
        batch_size: training batch; eval_batch_size: val/test/predict batch (None: batch_size).
        num_workers, persistent_workers, pin_memory (True, False or "auto" = when CUDA is available),
            prefetch_factor: DataLoader options (persistent workers and prefetching only with workers).
        val_fraction: share of training samples held out for validation, in [0, 1).
        val_max_images, test_max_images: stratified subsets of at most that many images (None: all).
        sampler_seed: seed of the validation split, the subsets, the balanced sampler and the augmentation.
        summary_by_category: add per-category rows to the printed summary and ``summary_rows``.
        train_images: what ``train_dataloader`` serves: ``balanced`` (the class-balanced, augmented draws above) or
            ``normal`` (one pass in order over the normal training images, not augmented: fitting a memory bank).
    """

    def __init__(
        self,
        root: str | os.PathLike,
        alpha: float,
        mode: str = "multi",
        balance: str = "auto",
        json_set: str = "fuiad",
        resolution: str = "realiad_256",
        categories: Sequence[str] | None = None,
        defect_codes: Sequence[str] = DEFECT_CODES,
        image_size: int = 299,
        augment: Mapping[str, object] | None = None,
        batch_size: int = 32,
        eval_batch_size: int | None = None,
        num_workers: int = 2,
        persistent_workers: bool = True,
        pin_memory: bool | str = "auto",
        prefetch_factor: int = 2,
        val_fraction: float = 0.05,
        val_max_images: int | None = None,
        test_max_images: int | None = None,
        sampler_seed: int = 0,
        on_missing: str = "error",
        summary_by_category: bool = False,
        train_images: str = "balanced",
        type_colours: Mapping[str, Sequence[int]] | None = None,
    ) -> None:
        super().__init__()
        check_choice("mode", mode, MODES)
        self.defect_codes = check_index_args(
            json_set=json_set, alpha=alpha, resolution=resolution, defect_codes=defect_codes, on_missing=on_missing
        )
        self.vocabulary: Vocabulary = Vocabulary.from_codes(self.defect_codes, colours=type_colours)
        check_image_size(image_size)
        self.augment = Augment.from_mapping(augment)
        _check_int("batch_size", batch_size, 1)
        _check_int("eval_batch_size", eval_batch_size, 1, allow_none=True)
        _check_int("num_workers", num_workers, 0)
        _check_int("prefetch_factor", prefetch_factor, 1)
        _check_int("val_max_images", val_max_images, 1, allow_none=True)
        _check_int("test_max_images", test_max_images, 1, allow_none=True)
        _check_int("sampler_seed", sampler_seed, 0)
        if train_images not in TRAIN_IMAGES:
            raise ConfigError(
                f"data.train_images={train_images!r} is not valid; choose one of: {', '.join(TRAIN_IMAGES)}"
            )
        if pin_memory not in (True, False, "auto"):
            raise ConfigError(f"data.pin_memory={pin_memory!r} is not valid; choose one of: true, false, auto")
        if isinstance(val_fraction, bool) or not isinstance(val_fraction, Real) or not 0 <= val_fraction < 1:
            raise ConfigError(f"data.val_fraction={val_fraction!r} is not valid; expected a number in [0, 1)")
        # the arguments, which every checkpoint stores and loads with weights_only=True: plain values only; the
        # experiment's config is logged by mtfcdd.run.loggers, not here
        self.save_hyperparameters(logger=False)
        self.hparams.update({key: _plain(value) for key, value in self.hparams.items()})
        self.balance = resolve_balance(balance, mode)
        self.eval_batch_size = eval_batch_size or batch_size
        self.persistent_workers = bool(persistent_workers) and num_workers > 0
        self.pin_memory = torch.cuda.is_available() if pin_memory == "auto" else pin_memory
        self.prefetch_factor = prefetch_factor if num_workers > 0 else None
        self.epoch_draws: int | None = None
        self.summary_rows: list[dict[str, str | int]] | None = None
        self.train_dataset: RealIADDataset | None = None
        self.val_dataset: RealIADDataset | None = None
        self.test_dataset: RealIADDataset | None = None

    @property
    def num_types(self) -> int:
        """Heatmap channels: the number of defect types (mode multi) or 1 (mode single)."""
        return len(self.vocabulary) if self.hparams.mode == "multi" else 1

    @property
    def predict_dataset(self) -> RealIADDataset | None:
        """Prediction runs over the test images."""
        return self.test_dataset

    def split_records(self) -> tuple[list[Record], list[Record], list[Record]]:
        """(train, validation, test) records before the ``*_max_images`` subsets: the JSON's training split less
        the validation hold-out (``split_by_sample``), and its test split. Subclasses with their own split
        override this (``mtfcdd.data.folder.datamodule.FolderDataModule``)."""
        hp = self.hparams
        splits = load_splits(
            hp.root,
            json_set=hp.json_set,
            alpha=hp.alpha,
            resolution=hp.resolution,
            categories=hp.categories,
            defect_codes=self.defect_codes,
            on_missing=hp.on_missing,
        )
        train, val = split_by_sample(splits["train"], hp.val_fraction, hp.sampler_seed, len(self.vocabulary))
        return train, val, splits["test"]

    def setup(self, stage: str | None = None) -> None:
        """Index train, validation and test once (later calls, one per Lightning stage, reuse it)."""
        if self.train_dataset is not None:
            return
        hp = self.hparams
        train, val, test = self.split_records()
        num_types = len(self.vocabulary)
        if not train:
            raise RealIADFormatError(f"the training split under {hp.root} holds no images")
        val = stratified_subset(val, hp.val_max_images, hp.sampler_seed, num_types)
        test = stratified_subset(test, hp.test_max_images, hp.sampler_seed, num_types)
        evaluation = eval_transform(hp.image_size)
        training = train_transform(hp.image_size, self.augment, seed=hp.sampler_seed)
        options = {"num_types": num_types, "mode": hp.mode}
        self.train_dataset = RealIADDataset(train, training, **options)
        self.val_dataset = RealIADDataset(val, evaluation, with_masks=True, **options)
        self.test_dataset = RealIADDataset(test, evaluation, with_masks=True, **options)
        self.summary_rows = summary_rows(
            {"train": train, "val": val, "test": test}, self.vocabulary.codes, by_category=hp.summary_by_category
        )
        _print_summary(format_summary_table(self.summary_rows))

    def int8_calibration_images(self, count: int) -> list[torch.Tensor]:
        """``count`` raw training images [3, H, W] in [0, 1], evenly spaced over the training set, with the
        evaluation transform (what an inference engine sees): the calibration set of int8 engines."""
        records = self._require(self.train_dataset).records
        chosen = records[:: max(1, len(records) // count)][:count]
        dataset = RealIADDataset(
            chosen, self._require(self.test_dataset).transform, num_types=len(self.vocabulary), mode=self.hparams.mode
        )
        return [dataset[i]["image"] for i in range(len(dataset))]

    def _require(self, dataset: RealIADDataset | None) -> RealIADDataset:
        if dataset is None:
            raise RuntimeError("RealIADDataModule: call setup() before asking for a dataloader")
        return dataset

    def _loader(self, dataset: Dataset, loader: type[DataLoader] = DataLoader, **kwargs: object) -> DataLoader:
        return loader(
            dataset,
            num_workers=self.hparams.num_workers,
            persistent_workers=self.persistent_workers,
            pin_memory=self.pin_memory,
            prefetch_factor=self.prefetch_factor,
            # worker seeds come from the loader's own generator: creating an iterator draws nothing from the global
            # torch random state (which therefore evolves the same in a resumed run as in an uninterrupted one)
            generator=torch.Generator().manual_seed(self.hparams.sampler_seed),
            **kwargs,
        )

    def train_class_counts(self) -> list[int]:
        """Training images per sampler class (see ``sampler_classes``): M + 1 counts for ``balance="types"``
        (the M defect types of the vocabulary, then normal), 2 for ``"binary"`` (any defect, normal)."""
        dataset = self._require(self.train_dataset)
        classes = sampler_classes(dataset.records, self.balance, len(self.vocabulary))
        return np.bincount(classes, minlength=num_sampler_classes(self.balance, len(self.vocabulary))).tolist()

    def train_dataloader(self) -> ResumableLoader | DataLoader:
        """``train_images=normal``: the normal training images once, in order, as evaluated (no augmentation).

        Otherwise class-balanced draws: ``epoch_draws`` per epoch (the dataset size, with a warning, when unset).

        Resumable mid-epoch (``mtfcdd.resume.loader``); the augmentation of each draw is seeded from
        (``sampler_seed``, epoch, draw position), independent of the number of workers.
        """
        dataset = self._require(self.train_dataset)
        hp = self.hparams
        if hp.train_images == "normal":
            normal = [record for record in dataset.records if record.type_index < 0]
            if not normal:
                raise RealIADFormatError(
                    f"data.train_images=normal: the training split under {hp.root} holds no normal images"
                )
            options = {"num_types": dataset.num_types, "mode": hp.mode}
            return self._eval_loader(RealIADDataset(normal, eval_transform(hp.image_size), **options))
        draws = self.epoch_draws
        if draws is None:
            draws = len(dataset)
            log.warning(
                "epoch_draws is unset (no BalancedEpochLength callback): one epoch is %d class-balanced draws, "
                "the training set size, not a balanced epoch",
                draws,
            )
        sampler = BalancedClassSampler(
            class_of=sampler_classes(dataset.records, self.balance, len(self.vocabulary)),
            num_samples=draws,
            seed=hp.sampler_seed,
            draw_keys=True,
        )
        if self.trainer is not None:
            # loader workers start drawing before Lightning sets the epoch (the same count) on a resumed run
            sampler.set_epoch(self.trainer.fit_loop.epoch_progress.current.processed)
        return self._loader(
            SeededDraws(dataset, hp.sampler_seed), ResumableLoader, batch_size=hp.batch_size, sampler=sampler
        )

    def _eval_loader(self, dataset: RealIADDataset | None) -> DataLoader:
        """In order; under DDP each rank takes a disjoint share, every image exactly once."""
        dataset = self._require(dataset)
        return self._loader(dataset, batch_size=self.eval_batch_size, sampler=EvaluationShardSampler(len(dataset)))

    def val_dataloader(self) -> DataLoader:
        return self._eval_loader(self.val_dataset)

    def test_dataloader(self) -> DataLoader:
        return self._eval_loader(self.test_dataset)

    def predict_dataloader(self) -> DataLoader:
        return self._eval_loader(self.predict_dataset)
